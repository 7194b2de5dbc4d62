"""GPTQ weight-only quantization (W4/W8, grouped, optional act order) via llm-compressor.

llm-compressor is the maintained successor of AutoGPTQ. Calibration runs on real text from
`core.corpus` (distinct token windows). Saved in the compressed-tensors format (packed ints +
scales), which reloads with plain `from_pretrained`.
"""

from __future__ import annotations

import math

from typing import Literal

from pydantic import Field

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionContext, CompressionMethod, MethodParams, MethodResult
from greenai_dagster.core.methods.llmcompressor_oneshot import count_quantized, run_oneshot, weight_scheme


class GptqParams(MethodParams):
    bits: Literal[4, 8] = 4
    group_size: int = 64
    symmetric: bool = True
    act_order: bool = True  # llm-compressor's default ("static"); measured better on SmolLM2 (README)
    dampening_frac: float = Field(0.01, gt=0, lt=1)
    num_calibration_samples: int = Field(64, ge=1, le=1024)
    calibration_seq_len: int = Field(128, ge=16, le=4096)


def check_group_size(group_size: int, spec) -> None:
    if group_size not in spec.valid_group_sizes:
        raise CompressionFailed(
            f"group size {group_size} does not divide every quantized layer's input width "
            f"({', '.join(map(str, spec.linear_in_features))}).",
            f"Use one of {spec.valid_group_sizes}.",
        )


class Gptq(CompressionMethod):
    name = "gptq"
    family = "quantization"
    Params = GptqParams

    def check(self, params, spec):
        check_group_size(params.group_size, spec)

    def label(self, params):
        return f"gptq_w{params['bits']}g{params['group_size']}" + ("_act" if params.get("act_order") else "")

    def features(self, params):
        return {"weight_bits": params["bits"], "group_log2": math.log2(params["group_size"]), "error_feedback": 1.0,
                "act_order": float(params.get("act_order", True))}

    def apply(self, model, params: GptqParams, ctx: CompressionContext) -> MethodResult:
        from llmcompressor.modifiers.quantization import GPTQModifier

        modifier = GPTQModifier(
            config_groups=weight_scheme(params.bits, params.group_size, params.symmetric, params.act_order),
            ignore=["lm_head"], dampening_frac=params.dampening_frac,
            actorder="static" if params.act_order else None,
        )
        run_oneshot(model, ctx, [modifier], params.num_calibration_samples, params.calibration_seq_len, "GPTQ")
        return MethodResult(model, {"quantized_linear_layers": count_quantized(model), "engine": "llmcompressor GPTQModifier"})
