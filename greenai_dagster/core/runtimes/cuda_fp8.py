"""FP8 weights and activations on CUDA through `torch._scaled_mm` (Hopper's FP8 tensor cores).

Weights are float8 e4m3 with one scale per output channel; activations are quantized on the fly to
float8 e4m3 with one scale per token (row), and `_scaled_mm` applies both scales and writes bf16.
Serves compressed-tensors `float-quantized` checkpoints with 8-bit float weights per channel or per
tensor and dynamic (or no) activation quantization, as llm-compressor's FP8 / FP8_DYNAMIC schemes
save them: the saved float8 weights are used as they are. `quantize` builds the same representation
from a bf16 weight (scale = max|w| / 448 per output channel), for models quantized in memory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from greenai_dagster.core.formats import compressed_tensors
from greenai_dagster.core.runtimes.cuda_compiled import (CudaRuntime, activation_args, load_state, quant_config,
                                                         skeleton, supported_folder, weight_args)
from greenai_dagster.core.runtimes.cuda_static import Record

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


class Fp8Linear(torch.nn.Module):
    """y = (x_fp8 * s_x) (W_fp8 * s_w)^T (+ b): rowwise-scaled FP8 matmul, bf16 out."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight.contiguous())   # row-major [N, K]: the GEMV's layout
        self.register_buffer("scale", scale.float().reshape(1, -1).contiguous())   # [1, N] for _scaled_mm
        self.register_buffer("bias", bias)

    def gemv(self, x: torch.Tensor, residual: torch.Tensor | None = None, norm=None, silu: bool = False) -> torch.Tensor:
        """One token [K] -> [N] (+ residual): the decode step's matrix-vector kernel, the activation quantized
        to e4m3 per token inside it, as `forward` does (`norm`, `silu`: as `cuda_kernels.gemv_fp8`)."""
        from greenai_dagster.core.runtimes.cuda_kernels import gemv_fp8

        return gemv_fp8(x, self.weight, self.scale, self.bias, residual, norm, silu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.is_cuda and not torch.compiler.is_compiling():   # one Triton launch for the per-token scales
            from greenai_dagster.core.runtimes.cuda_kernels import quantize_rows_fp8

            x_fp8, x_scale = quantize_rows_fp8(flat)
        else:
            x_scale = flat.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
            x_fp8 = (flat.float() / x_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
        y = torch._scaled_mm(x_fp8, self.weight.t(), scale_a=x_scale, scale_b=self.scale, out_dtype=torch.bfloat16,
                             use_fast_accum=True)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel FP8 e4m3: (weight_fp8 [N, K], scale [N, 1] float32)."""
    scale = (weight.float().abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=1e-12)
    return (weight.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def dequantize_record(record: Record) -> torch.Tensor:
    return (record["weight"].float() * record["scale"].float()).to(torch.bfloat16)


class CudaFp8(CudaRuntime):
    name = "torch-cuda-fp8"
    kernel = ("FP8 e4m3 weights per channel, activations per token: Triton FP8 GEMV in the CUDA-graph decode step "
              "(cuda_kernels), torch._scaled_mm for prefill; bf16 lm_head")
    formats = (compressed_tensors.NAME,)

    def available(self, device: str) -> bool:
        """FP8 tensor cores: compute capability 8.9 (Ada) or 9.0 (Hopper) and later."""
        return (super().available(device) and hasattr(torch, "_scaled_mm")
                and torch.cuda.get_device_capability() >= (8, 9))

    def serves(self, folder: Path, device: str) -> bool:
        quant = quant_config(Path(folder))
        if not self.reads(folder) or not quant or quant.get("format") != "float-quantized":
            return False
        weights, acts = weight_args(quant), activation_args(quant)
        return bool(weights) and supported_folder(folder) and all(
            w.get("num_bits") == 8 and w.get("type") == "float" and w.get("strategy") in ("channel", "tensor")
            for w in weights) and all(a.get("dynamic") in (True, "local") for a in acts)

    def build(self, record: Record) -> torch.nn.Module:
        return Fp8Linear(record["weight"], record["scale"], record.get("bias"))

    def quantize(self, weight: torch.Tensor, bias: torch.Tensor | None) -> Record:
        weight_fp8, scale = quantize_fp8(weight)
        record = {"weight": weight_fp8, "scale": scale}
        if bias is not None:
            record["bias"] = bias.to(torch.bfloat16)
        return record

    def record_reader(self, folder: Path, device: str):
        state = load_state(folder)
        names = {k[: -len(".weight_scale")] for k in state if k.endswith(".weight_scale")}
        model = skeleton(folder, device, names, state)

        def record_of(name: str) -> Record:
            weight = state[f"{name}.weight"].to(device)
            scale = state[f"{name}.weight_scale"].to(device=device, dtype=torch.float32).reshape(-1, 1)
            record = {"weight": weight.to(FP8), "scale": scale.expand(weight.shape[0], 1).contiguous()}
            if f"{name}.bias" in state:
                record["bias"] = state[f"{name}.bias"].to(device=device, dtype=torch.bfloat16)
            return record

        return model, record_of
