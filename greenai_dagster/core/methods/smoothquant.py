"""W8A8 with SmoothQuant: migrate activation outliers into the weights (llm-compressor's
SmoothQuantModifier), then GPTQ int8 weights per channel + dynamic int8 activations per token.

This is the fix for plain INT8 dynamic quantization's loss on models with activation outliers.
Saved as compressed-tensors int8; on CPU the reloaded model runs with dequantized weights
(there is no int8 GEMM path for it in transformers on CPU), so it shrinks size, not CPU latency.
"""

from __future__ import annotations

from pydantic import Field

from greenai_dagster.core.methods.base import (PER_CHANNEL_LOG2, CompressionContext, CompressionMethod, MethodParams,
                                               MethodResult, needs_linears)
from greenai_dagster.core.methods.llmcompressor_oneshot import count_quantized, prepare, run_oneshot, smoothing_problem


class SmoothQuantParams(MethodParams):
    bits: int = Field(8, ge=8, le=8)
    smoothing_strength: float = Field(0.5, ge=0.0, le=1.0)
    num_calibration_samples: int = Field(64, ge=1, le=1024)
    calibration_seq_len: int = Field(128, ge=16, le=4096)


class SmoothQuantW8A8(CompressionMethod):
    name = "w8a8_smoothquant"
    family = "quantization"
    Params = SmoothQuantParams

    def unsupported(self, model, spec):
        if needs_linears(spec):
            return needs_linears(spec)
        if spec.expert_layout:
            return ("transformers reloads quantized experts into its fused expert tensors only from packed int4/int8 "
                    "weight-only checkpoints, not from W8A8's int8 weight format")
        return smoothing_problem(model, "smoothquant")

    def label(self, params):
        return f"w8a8_sq{params['smoothing_strength']:g}"

    def features(self, params):
        return {"weight_bits": 8.0, "group_log2": PER_CHANNEL_LOG2, "act_quant": 1.0, "activation_aware": 1.0}

    def apply(self, model, params: SmoothQuantParams, ctx: CompressionContext) -> MethodResult:
        from llmcompressor.modifiers.quantization import GPTQModifier
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

        recipe = [SmoothQuantModifier(smoothing_strength=params.smoothing_strength),
                  GPTQModifier(targets=["Linear"], scheme="W8A8", ignore=prepare(model))]
        run_oneshot(model, ctx, recipe, params.num_calibration_samples, params.calibration_seq_len, "SmoothQuant W8A8")
        return MethodResult(model, {"quantized_linear_layers": count_quantized(model), "engine": "llmcompressor SmoothQuant + GPTQ W8A8"})
