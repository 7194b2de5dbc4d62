"""W4 weight-only checkpoints on CPU through PyTorch's int4 kernel (`_weight_int4pack_mm_for_cpu`).

Serves compressed-tensors `pack-quantized` 4-bit checkpoints with group scales (GPTQ with static
or no activation ordering, AWQ, AutoRound, RTN as this project saves them). At load the packed
integers are unpacked with compressed-tensors' own helper and repacked for the kernel: u = q + 8
in [0, 15], two per byte (`_convert_weight_to_int4pack_for_cpu`), with scales and zero points
interleaved as [K/group, N, 2] so that w = (u - 8) * scale + zero (zero = -zero_point * scale;
0 when symmetric). The kernel takes bfloat16 activations (its float32 path measured ~13x slower
than bfloat16 here), so each int4 linear casts its input to bfloat16 and its output back; the
rest of the model (embeddings, norms, attention, lm_head) stays float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from greenai_dagster.core.formats import compressed_tensors
from greenai_dagster.core.models.gguf_files import float_skeleton, load_state
from greenai_dagster.core.runtimes.base import Runtime, Session
from greenai_dagster.core.runtimes.torch_session import TorchSession

SUPPORTED_GROUPS = (32, 64, 128, 256)


def _quant_config(folder: Path) -> dict | None:
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    quant = config.get("quantization_config") or {}
    return quant if quant.get("quant_method") == "compressed-tensors" else None


def _w4_groups(quant: dict) -> list[dict]:
    return [g["weights"] for g in quant.get("config_groups", {}).values() if g.get("weights")]


class Int4Linear(torch.nn.Module):
    """y = x W^T (+ b) with W held as packed int4 + per-group scales and zero points."""

    def __init__(self, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int, in_features: int,
                 out_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size, self.scales_and_zeros)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y


def repack(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, group_size: int):
    """Signed 4-bit q [N, K] with scale [N, K/g] (and zero point) -> (packed uint8, scales_and_zeros)."""
    unsigned = (q.to(torch.int32) + 8).clamp(0, 15)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(unsigned, 1)
    scale = scale.float()
    zero = torch.zeros_like(scale) if zero_point is None else -zero_point.float() * scale
    scales_and_zeros = torch.stack([scale.t(), zero.t()], dim=-1).contiguous().to(torch.bfloat16)
    return packed, scales_and_zeros


class CpuInt4(Runtime):
    name = "torch-cpu-int4"
    kernel = "aten._weight_int4pack_mm_for_cpu (bf16 activations, int4 weights)"
    devices = ("cpu",)
    formats = (compressed_tensors.NAME,)

    def available(self, device: str) -> bool:
        return super().available(device) and hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")

    def serves(self, folder: Path, device: str) -> bool:
        quant = _quant_config(Path(folder))
        if not self.serves_format(folder) or not quant or quant.get("format") != "pack-quantized":
            return False
        groups = _w4_groups(quant)
        return bool(groups) and all(
            w.get("num_bits") == 4 and w.get("strategy") == "group" and w.get("group_size") in SUPPORTED_GROUPS
            and w.get("actorder") in (None, "static") and not w.get("dynamic") for w in groups)

    def load(self, folder: Path, device: str = "cpu"):
        from transformers import AutoTokenizer

        folder = Path(folder)
        group_size = _w4_groups(_quant_config(folder))[0]["group_size"]
        model = float_skeleton(folder)
        state = load_state(folder)
        packed_names = compressed_tensors.packed_linears(state)
        dense = {k: v for k, v in state.items() if not any(k.startswith(p + ".") for p in packed_names)}
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in dense.items()}, strict=False)
        if unexpected:
            raise ValueError(f"unexpected tensors in {folder}: {unexpected[:3]}")
        for name in packed_names:
            q = compressed_tensors.stored_integers(state, name, 4)
            shape = tuple(q.shape)
            scale = state[f"{name}.weight_scale"]
            zero_point = compressed_tensors.stored_zero_point(state.get(f"{name}.weight_zero_point"), shape[0],
                                                              scale.shape[-1])
            packed, sz = repack(q, scale, zero_point, group_size)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            bias = state.get(f"{name}.bias")   # the checkpoint's (the skeleton's own was never loaded)
            bias = bias.float() if bias is not None else None
            setattr(parent, child, Int4Linear(packed, sz, group_size, shape[1], shape[0], bias))
        still_missing = [k for k in missing if not any(k.startswith(p + ".") for p in packed_names)]
        if model.config.tie_word_embeddings:
            model.tie_weights()
            still_missing = [k for k in still_missing if k != "lm_head.weight"]
        if still_missing:
            raise ValueError(f"tensors missing from {folder}: {still_missing[:3]}")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model.eval(), tokenizer

    def open(self, folder: Path, device: str, threads: int = 0, trust_remote_code: bool = False) -> Session:
        return TorchSession(self.load(folder, "cpu")[0], "cpu")    # a Llama-style skeleton: no model code runs
