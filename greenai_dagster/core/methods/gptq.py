"""GPTQ weight-only quantization (W4/W8, grouped, optional act order) via llm-compressor.

llm-compressor is the maintained successor of AutoGPTQ. Calibration runs on real text from
`core.data.corpus` (distinct token windows). Saved in the compressed-tensors format (packed ints +
scales), which reloads with plain `from_pretrained`.
"""

from __future__ import annotations

import math

from typing import Literal

from pydantic import Field

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionContext, CompressionMethod, MethodParams, MethodResult
from greenai_dagster.core.methods.llmcompressor_oneshot import (check_expert_scheme, count_quantized, expert_note,
                                                                group_quant_unsupported, prepare, run_oneshot,
                                                                weight_scheme)


class GptqParams(MethodParams):
    bits: Literal[2, 3, 4, 5, 6, 8] = 4   # 3-6 bits: the levels of a GPTQ mixed-precision allocation
    group_size: int = 64
    symmetric: bool = True
    act_order: bool = True  # llm-compressor's default ("static"); measured better on SmolLM2 (README)
    dampening_frac: float = Field(0.01, gt=0, lt=1)
    num_calibration_samples: int = Field(64, ge=1, le=1024)
    calibration_seq_len: int = Field(128, ge=16, le=4096)


def check_group_size(group_size: int, spec) -> None:
    """E005 naming a layer whose input width the group size does not divide."""
    if group_size <= 0:
        raise CompressionFailed(f"group_size {group_size} must be positive.", f"Use one of {spec.valid_group_sizes}.")
    bad = [w for w in spec.linear_in_features if w % group_size]
    if bad:
        layer = spec.width_examples.get(str(bad[0]), "a quantized layer")
        raise CompressionFailed(
            f"group size {group_size} does not divide the input width {bad[0]} of layer {layer} "
            f"(quantized layers' input widths: {', '.join(map(str, spec.linear_in_features))}).",
            f"Use one of {spec.valid_group_sizes}." if spec.valid_group_sizes else
            "No group size fits this model; use int8 or a pruning method.",
        )
    if group_size not in spec.valid_group_sizes and spec.valid_group_sizes:
        raise CompressionFailed(f"group size {group_size} is not offered for this model.",
                                f"Use one of {spec.valid_group_sizes}.")


class GroupQuantizer(CompressionMethod):
    """What GPTQ, AWQ, AutoRound and RTN share: a group size that fits every layer, symmetric experts."""

    family = "quantization"

    def unsupported(self, model, spec):
        return group_quant_unsupported(spec)

    def note(self, model, spec):
        return expert_note(spec)

    def check(self, params, spec):
        check_group_size(params.group_size, spec)
        check_expert_scheme(params.symmetric, spec, self.name)


class Gptq(GroupQuantizer):
    name = "gptq"
    Params = GptqParams

    def label(self, params):
        return f"gptq_w{params['bits']}g{params['group_size']}" + ("_act" if params.get("act_order") else "")

    def features(self, params):
        return {"weight_bits": params["bits"], "group_log2": math.log2(params["group_size"]), "error_feedback": 1.0,
                "act_order": float(params.get("act_order", True))}

    def apply(self, model, params: GptqParams, ctx: CompressionContext) -> MethodResult:
        from llmcompressor.modifiers.quantization import GPTQModifier

        modifier = GPTQModifier(
            config_groups=weight_scheme(params.bits, params.group_size, params.symmetric, params.act_order),
            ignore=prepare(model), dampening_frac=params.dampening_frac,
            actorder="static" if params.act_order else None,
        )
        run_oneshot(model, ctx, [modifier], params.num_calibration_samples, params.calibration_seq_len, "GPTQ")
        return MethodResult(model, {"quantized_linear_layers": count_quantized(model), "engine": "llmcompressor GPTQModifier"})
