"""Round-to-nearest grouped weight quantization: the no-calibration reference GPTQ/AWQ/AutoRound must beat."""

from __future__ import annotations

import math

from typing import Literal

from greenai_dagster.core.methods.base import CompressionContext, MethodParams, MethodResult
from greenai_dagster.core.methods.gptq import GroupQuantizer
from greenai_dagster.core.methods.llmcompressor_oneshot import count_quantized, prepare, run_oneshot, weight_scheme


class RtnParams(MethodParams):
    bits: Literal[2, 3, 4, 8] = 4
    group_size: int = 64
    symmetric: bool = True


class Rtn(GroupQuantizer):
    name = "rtn"
    Params = RtnParams

    def label(self, params):
        return f"rtn_w{params['bits']}g{params['group_size']}"

    def features(self, params):
        return {"weight_bits": params["bits"], "group_log2": math.log2(params["group_size"])}

    def apply(self, model, params: RtnParams, ctx: CompressionContext) -> MethodResult:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        modifier = QuantizationModifier(config_groups=weight_scheme(params.bits, params.group_size, params.symmetric),
                                        ignore=prepare(model))
        run_oneshot(model, ctx, [modifier], 4, 64, "RTN", calibrate=False)   # weights only: no data needed
        return MethodResult(model, {"quantized_linear_layers": count_quantized(model), "engine": "llmcompressor QuantizationModifier"})
