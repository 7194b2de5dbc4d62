"""AWQ W4: activation-aware scaling (llm-compressor's AWQModifier, which took over AutoAWQ's
algorithm) followed by round-to-nearest group quantization of the scaled weights."""

from __future__ import annotations

import math

from contextlib import contextmanager
from typing import Literal

from pydantic import Field

from greenai_dagster.core.methods.base import CompressionContext, MethodParams, MethodResult
from greenai_dagster.core.methods.gptq import GroupQuantizer
from greenai_dagster.core.methods.llmcompressor_oneshot import (count_quantized, prepare, run_oneshot,
                                                                smoothing_problem, weight_scheme)


@contextmanager
def cpu_safe_intermediates_cache():
    """llm-compressor 0.14's AWQ pins cached activations unconditionally, which raises on a machine
    with no accelerator. Pinning only speeds up host-to-GPU copies, so on CPU it is skipped."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original


class AwqParams(MethodParams):
    bits: Literal[4] = 4
    group_size: int = 64
    symmetric: bool = False
    n_grid: int = Field(20, ge=2, le=100)
    num_calibration_samples: int = Field(64, ge=1, le=1024)
    calibration_seq_len: int = Field(128, ge=16, le=4096)


class Awq(GroupQuantizer):
    name = "awq"
    Params = AwqParams

    def unsupported(self, model, spec):
        return super().unsupported(model, spec) or smoothing_problem(model, "awq")

    def label(self, params):
        return f"awq_w{params['bits']}g{params['group_size']}"

    def features(self, params):
        return {"weight_bits": params["bits"], "group_log2": math.log2(params["group_size"]), "activation_aware": 1.0}

    def apply(self, model, params: AwqParams, ctx: CompressionContext) -> MethodResult:
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        scheme = weight_scheme(params.bits, params.group_size, params.symmetric)
        recipe = [AWQModifier(n_grid=params.n_grid, offload_device=None),
                  QuantizationModifier(config_groups=scheme, ignore=prepare(model))]
        with cpu_safe_intermediates_cache():
            run_oneshot(model, ctx, recipe, params.num_calibration_samples, params.calibration_seq_len, "AWQ")
        return MethodResult(model, {"quantized_linear_layers": count_quantized(model), "engine": "llmcompressor AWQModifier"})
