"""Int8 weight-only on CUDA: one byte per weight, read once per decoded token.

Not `aten._weight_int8pack_mm`: on an H100 it measured 7-12x slower than bf16 per matrix-vector
product. The weights are held as unsigned bytes u = q + 128, which is exactly the 8-bit layout of
`cuda_kernels.gemv_wq` (four values to an int32 word, offset 128, one scale per channel or group):
the decode step is the Triton launch list of `cuda_static.StaticDecoder.kernel_step`, as for bf16,
W4 and FP8, with no torch.compile (whose coordinate-descent tuning took most of a latency probe's
1-3 minutes on an H100, 2026-12-07). Prefill casts each weight to bf16 (u - 128, exact) and runs a
bf16 matmul. Activations stay bf16 (weight-only).

Serves the `int8` method's checkpoints (`torch_int8_dynamic`: per-channel int8 weights, saved as
torch quantized modules; on CPU their activations are also quantized, per token, at run time, here
they are not) and compressed-tensors 8-bit symmetric weight-only checkpoints (`pack-quantized` or
`int-quantized`, per channel or per group, e.g. GPTQ W8). `dequantize_int8_dynamic` (in
`core.formats.int8_dynamic`) is the float fallback an int8 checkpoint is loaded with on an accelerator.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from greenai_dagster.core.formats import compressed_tensors, int8_dynamic
from greenai_dagster.core.formats.int8_dynamic import dynamic_linears, int8_dynamic_record
from greenai_dagster.core.models.checkpoints import load_variant
from greenai_dagster.core.runtimes.cuda_compiled import (CudaRuntime, activation_args, load_state, quant_config,
                                                         skeleton, supported_folder, weight_args)
from greenai_dagster.core.runtimes.cuda_static import Record


class Int8Linear(torch.nn.Module):
    """y = x (q * s)^T (+ b): q int8 [N, K] held as bytes u = q + 128, s float32 [N, K/group] (group = K:
    per channel)."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.groups = scale.shape[1]
        self.register_buffer("u", (q.to(torch.int16) + 128).to(torch.uint8).contiguous())
        self.register_buffer("scale", scale.float().contiguous())
        self.register_buffer("scale_t", self.scale.t().contiguous())   # [groups, N]: the GEMV's group-major order
        self.register_buffer("bias", bias)

    def integers(self, dtype: torch.dtype) -> torch.Tensor:
        """q as `dtype` (u - 128: exact in bf16, whose 8-bit significand holds every integer up to 256)."""
        return self.u.to(dtype) - 128

    def gemv(self, x: torch.Tensor, residual: torch.Tensor | None = None, norm=None, silu: bool = False) -> torch.Tensor:
        """One token [K] -> [N] (+ residual): `cuda_kernels.gemv_wq` on the bytes viewed as int32 words."""
        from greenai_dagster.core.runtimes.cuda_kernels import gemv_wq

        return gemv_wq(x, self.u.view(torch.int32), self.scale_t, None, self.in_features // self.groups, 8,
                       self.bias, residual, norm, silu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            y = (F.linear(x, self.integers(x.dtype)).float() * self.scale.view(-1)).to(x.dtype)
        else:
            n, k, g = self.out_features, self.in_features, self.groups
            weight = (self.integers(torch.float32).view(n, g, k // g) * self.scale.unsqueeze(-1)).to(x.dtype).view(n, k)
            y = F.linear(x, weight)
        return y + self.bias if self.bias is not None else y


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (q [N, K], scale [N, 1] float32), scale = max|w| / 127."""
    scale = (weight.float().abs().amax(dim=1, keepdim=True) / 127.0).clamp(min=1e-8)
    return torch.round(weight.float() / scale).clamp(-128, 127).to(torch.int8), scale


def dequantize_record(record: Record) -> torch.Tensor:
    q, scale = record["q"].float(), record["scale"].float()
    n, k = q.shape
    return (q.view(n, scale.shape[1], -1) * scale.unsqueeze(-1)).view(n, k).to(torch.bfloat16)


class CudaInt8(CudaRuntime):
    name = "torch-cuda-int8-wo"
    kernel = ("int8 weight-only: Triton 8-bit GEMV (cuda_kernels.gemv_wq, bytes u = q + 128) in the CUDA-graph "
              "decode step, cast + bf16 matmul in prefill; bf16 activations and lm_head")
    formats = (int8_dynamic.NAME, compressed_tensors.NAME)

    def serves(self, folder: Path, device: str) -> bool:
        folder = Path(folder)
        if not self.serves_format(folder) or not supported_folder(folder):
            return False
        if int8_dynamic.detect(folder):
            return True
        quant = quant_config(folder)
        if not quant or quant.get("format") not in ("pack-quantized", "int-quantized"):
            return False
        weights = weight_args(quant)
        return bool(weights) and not activation_args(quant) and all(
            w.get("num_bits") == 8 and w.get("type", "int") == "int" and w.get("symmetric", True)
            and w.get("strategy") in ("channel", "group") and w.get("actorder") in (None, "static")
            and not w.get("dynamic") for w in weights)

    def build(self, record: Record) -> torch.nn.Module:
        return Int8Linear(record["q"], record["scale"], record.get("bias"))

    def quantize(self, weight: torch.Tensor, bias: torch.Tensor | None) -> Record:
        q, scale = quantize_int8(weight)
        record = {"q": q, "scale": scale}
        if bias is not None:
            record["bias"] = bias.to(torch.bfloat16)
        return record

    def record_reader(self, folder: Path, device: str):
        if int8_dynamic.detect(folder):
            return self._int8_dynamic_reader(folder, device)
        state = load_state(folder)
        names = {k[: -len(".weight_scale")] for k in state if k.endswith(".weight_scale")}
        model = skeleton(folder, device, names, state)

        def record_of(name: str) -> Record:
            if f"{name}.weight_packed" in state:
                q = compressed_tensors.stored_integers(state, name, 8, device)
            else:
                q = state[f"{name}.weight"].to(device)
            scale = state[f"{name}.weight_scale"].to(device=device, dtype=torch.float32)
            record = {"q": q.to(torch.int8), "scale": scale.reshape(q.shape[0], -1)}
            if f"{name}.bias" in state:
                record["bias"] = state[f"{name}.bias"].to(device=device, dtype=torch.bfloat16)
            return record

        return model, record_of

    def _int8_dynamic_reader(self, folder: Path, device: str):
        model = load_variant(folder, device="cpu")[0]
        linears = dynamic_linears(model)
        for module in model.modules():   # everything but the int8 linears goes to the GPU in bf16
            if module not in linears.values():
                module._apply(lambda t: t.to(device=device, dtype=torch.bfloat16) if t.is_floating_point()
                              else t.to(device), recurse=False)

        def record_of(name: str) -> Record:
            record = int8_dynamic_record(linears[name])
            return {k: v.to(device=device, dtype=torch.bfloat16 if k == "bias" else v.dtype) for k, v in record.items()}

        return model, record_of
