"""AutoRound W2-W8: sign-gradient tuning of rounding and clipping, block by block.

The algorithm is Intel's auto-round library, driven through llm-compressor's AutoRoundModifier so
the result saves in the same compressed-tensors format as GPTQ and reloads with
`from_pretrained`. (auto-round's own exporters also write the AutoGPTQ / AutoAWQ formats; see
`core.export`.) torch.compile is on only where it pays (`compile_pays`).
"""

from __future__ import annotations

import math

from typing import Literal

from pydantic import Field

from greenai_dagster.core.methods.base import CompressionContext, MethodParams, MethodResult
from greenai_dagster.core.methods.gptq import GroupQuantizer
from greenai_dagster.core.methods.llmcompressor_oneshot import count_quantized, prepare, run_oneshot, weight_scheme


# auto-round compiles each decoder block before tuning it: about 7 s a block on an H100 whatever its size
# (SmolLM2-135M, 30 blocks: 206 of AutoRound's 249 s were compiling, 2026-12-06), while an eager iteration's
# cost grows with the width squared; below this hidden size the compile costs more than it saves
COMPILE_MIN_HIDDEN = 2048


def compile_pays(model, device: str) -> bool:
    """Whether auto-round should compile its blocks: on a GPU, for models at least COMPILE_MIN_HIDDEN wide
    (never on CPU, where a few iterations never repay the compile)."""
    hidden = getattr(model.config, "hidden_size", 0) or 0
    return device != "cpu" and hidden >= COMPILE_MIN_HIDDEN


class AutoRoundParams(MethodParams):
    bits: Literal[2, 3, 4, 5, 6, 8] = 4
    group_size: int = 64
    symmetric: bool = True
    iters: int = Field(50, ge=1, le=1000)
    num_calibration_samples: int = Field(32, ge=1, le=1024)
    calibration_seq_len: int = Field(128, ge=16, le=4096)
    batch_size: int = Field(8, ge=1)


class AutoRound(GroupQuantizer):
    name = "autoround"
    Params = AutoRoundParams

    def unsupported(self, model, spec):
        reason = super().unsupported(model, spec)
        if reason:
            return reason
        # auto-round keeps every integer-quantized layer whose widths are not multiples of 32 in 16 bit
        # (auto_round.compressors.layer_config_resolver): on such a model it would quantize nothing there
        odd = sorted({w for w in spec.linear_in_features + spec.linear_out_features if w % 32})
        if odd:
            where = spec.width_examples.get(str(odd[0]))
            return (f"auto-round quantizes only layers whose input and output widths are multiples of 32 and leaves "
                    f"the others in 16 bit; this model has widths {', '.join(map(str, odd))}"
                    + (f" (e.g. the input of {where})" if where else ""))
        return None

    def label(self, params):
        return f"autoround_w{params['bits']}g{params['group_size']}_i{params['iters']}"

    def features(self, params):
        return {"weight_bits": params["bits"], "group_log2": math.log2(params["group_size"]), "learned_rounding": 1.0}

    def apply(self, model, params: AutoRoundParams, ctx: CompressionContext) -> MethodResult:
        from llmcompressor.modifiers.autoround import AutoRoundModifier

        modifier = AutoRoundModifier(
            config_groups=weight_scheme(params.bits, params.group_size, params.symmetric), ignore=prepare(model),
            iters=params.iters, batch_size=min(params.batch_size, params.num_calibration_samples),
            enable_torch_compile=compile_pays(model, ctx.device),
        )
        run_oneshot(model, ctx, [modifier], params.num_calibration_samples, params.calibration_seq_len, "AutoRound")
        return MethodResult(model, {"quantized_linear_layers": count_quantized(model), "engine": "auto-round via llmcompressor"})
