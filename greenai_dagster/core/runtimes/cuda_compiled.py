"""CUDA runtimes' common part, and the bf16 baseline served the same way.

Every CUDA runtime is a `CudaRuntime`: it turns each decoder linear into a *record* (its weights in
the runtime's representation, out_features first) and each record into a module (`build`); the
static-cache decoder and the compiled, graph-captured decode step (`cuda_static`) are shared. A
record comes either from a checkpoint (`record_reader`, reading the saved tensors as they are, so
packed low-bit weights are never expanded to dense ones) or from an in-memory bf16 weight
(`quantize`, the same representation built by round-to-nearest), so the benchmark's 8B-shaped
model and a saved checkpoint go through one packing path.

`CudaCompiled` is the baseline: float checkpoints in bf16 through the same compiled path, so a
low-bit runtime's speed-up is measured against the baseline's best, not against eager PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from greenai_dagster.core.formats import hf
from greenai_dagster.core.runtimes.base import Runtime, Session
from greenai_dagster.core.runtimes.cuda_static import (DEFAULT_MAX_LEN, CompiledSession, Record, StaticDecoder,
                                                       install_linears, supported_config)


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def quant_config(folder: Path) -> dict | None:
    quant = read_config(folder).get("quantization_config") or {}
    return quant if quant.get("quant_method") == "compressed-tensors" else None


def weight_args(quant: dict) -> list[dict]:
    """The weight quantization arguments of every config group (llm-compressor's schemes)."""
    return [g["weights"] for g in quant.get("config_groups", {}).values() if g.get("weights")]


def activation_args(quant: dict) -> list[dict]:
    return [g["input_activations"] for g in quant.get("config_groups", {}).values() if g.get("input_activations")]


def supported_folder(folder: Path) -> bool:
    from transformers import AutoConfig

    try:
        return supported_config(AutoConfig.from_pretrained(Path(folder)))
    except (OSError, ValueError, KeyError):
        return False


class DenseLinear(torch.nn.Module):
    """y = x W^T (+ b) in bf16; the baseline's linears (fused where the decoder fuses them)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def gemv(self, x: torch.Tensor, residual: torch.Tensor | None = None, norm=None, silu: bool = False) -> torch.Tensor:
        """One token [K] -> [N] (+ residual): the decode step's matrix-vector kernel (`norm`, `silu`: the
        input's RMSNorm or SiLU-gating done inside it, `cuda_kernels.gemv_bf16`)."""
        from greenai_dagster.core.runtimes.cuda_kernels import gemv_bf16

        return gemv_bf16(x, self.weight, self.bias, residual, norm, silu)


def skeleton(folder: Path, device: str, quantized_names: set[str], state: dict[str, torch.Tensor]):
    """The transformers model built on the meta device, with every tensor of the checkpoint except the
    quantized linears' loaded onto `device` in bf16; the quantized linears are left for the runtime."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(Path(folder))
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    dense = {k: v.to(device=device, dtype=torch.bfloat16) for k, v in state.items()
             if not any(k.startswith(p + ".") for p in quantized_names)}
    missing, unexpected = model.load_state_dict(dense, strict=False, assign=True)
    if unexpected:
        raise ValueError(f"unexpected tensors in {folder}: {unexpected[:3]}")
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    embed = model.model.embed_tokens
    if getattr(embed, "embed_scale", None) is not None and embed.embed_scale.is_meta:   # Gemma's scale: not saved
        embed.embed_scale = torch.tensor(embed.scalar_embed_scale, device=device)
    missing = [k for k in missing if not any(k.startswith(p + ".") for p in quantized_names)
               and not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing:
        raise ValueError(f"tensors missing from {folder}: {missing[:3]}")
    return model.eval()


def load_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


class CudaRuntime(Runtime):
    """A CUDA runtime: a weight representation (`build`, `quantize`, `record_reader`) on the shared session."""

    devices = ("cuda",)
    max_len = DEFAULT_MAX_LEN

    def available(self, device: str) -> bool:
        return super().available(device) and torch.cuda.is_available()

    def reads(self, folder: Path) -> bool:
        """A folder this runtime can read at all: of a format it serves (never one with adapters), with its
        tensors in safetensors files."""
        return self.serves_format(folder) and any(Path(folder).glob("*.safetensors"))

    def build(self, record: Record) -> torch.nn.Module:
        raise NotImplementedError

    def quantize(self, weight: torch.Tensor, bias: torch.Tensor | None) -> Record:
        """This runtime's representation of one bf16 weight (round-to-nearest where it is low-bit)."""
        raise NotImplementedError

    def record_reader(self, folder: Path, device: str):
        """(model skeleton, name -> record) for a checkpoint this runtime serves."""
        raise NotImplementedError

    def convert(self, model) -> None:
        """Put an in-memory transformers model's decoder linears into this runtime's representation."""
        install_linears(model, self.dense_reader(model), self.build)

    def dense_reader(self, model) -> Callable[[str], Record]:
        """name -> record, quantizing the model's own bf16 linear of that name."""
        def record_of(name: str) -> Record:
            linear = model.get_submodule(name)
            return self.quantize(linear.weight.data, None if linear.bias is None else linear.bias.data)

        return record_of

    def session_for(self, model, device: str, max_len: int | None = None, compile_step: bool = True,
                    graph: bool = True, kernel_step: bool = True, batch: int = 1) -> CompiledSession:
        """A session over a model already converted (`convert`) or loaded (`load`); `kernel_step=False`
        compiles the decode step with torch.compile instead of running it as Triton launches. `batch` > 1
        decodes that many sequences of one prompt together (serving throughput; never the Triton step)."""
        return CompiledSession(StaticDecoder(model, max_len or self.max_len, device, batch), device, compile_step,
                               graph, kernel_step)

    def load(self, folder: Path, device: str):
        model, record_of = self.record_reader(Path(folder), device)
        install_linears(model, record_of, self.build)
        return model

    def open(self, folder: Path, device: str, threads: int = 0, trust_remote_code: bool = False,
             max_len: int | None = None, compile_step: bool = True, graph: bool = True,
             kernel_step: bool = True) -> Session:
        """Serves supported decoders only (`supported_folder`), rebuilt here: a model's own code never runs."""
        return self.session_for(self.load(folder, device), device, max_len, compile_step, graph, kernel_step)


class CudaCompiled(CudaRuntime):
    name = "torch-cuda-compiled"
    kernel = ("bf16: Triton GEMV + fused decode attention in one CUDA graph (cuda_kernels) for decode, cuBLAS + "
              "flash attention for prefill (a CUDA graph per recurring prompt length); static KV cache")
    formats = (hf.NAME,)

    def serves(self, folder: Path, device: str) -> bool:
        return self.reads(folder) and quant_config(folder) is None and supported_folder(folder)

    def build(self, record: Record) -> torch.nn.Module:
        return DenseLinear(record["weight"], record.get("bias"))

    def quantize(self, weight: torch.Tensor, bias: torch.Tensor | None) -> Record:
        record = {"weight": weight.to(torch.bfloat16)}
        if bias is not None:
            record["bias"] = bias.to(torch.bfloat16)
        return record

    def record_reader(self, folder: Path, device: str):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to(device).eval()
        return model, self.dense_reader(model)
