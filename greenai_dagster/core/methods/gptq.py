"""GPTQ weight-only quantization (W4/W8, grouped) through llm-compressor's `oneshot`.

llm-compressor is the maintained successor of AutoGPTQ. Calibration runs on real text from
`core.corpus` (distinct token windows). The quantized model saves in the compressed-tensors
format (packed int4/int8 weights + scales) and reloads with plain `from_pretrained`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionContext, CompressionMethod, MethodParams, MethodResult


class GptqParams(MethodParams):
    bits: Literal[4, 8] = 4
    group_size: int = 64
    symmetric: bool = True
    act_order: bool = False
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


def calibration_dataset(ctx: CompressionContext, num_samples: int, seq_len: int):
    from datasets import Dataset

    chunks = ctx.calibration(num_samples, seq_len)
    return Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * len(c) for c in chunks]})


class Gptq(CompressionMethod):
    name = "gptq"
    family = "quantization"
    Params = GptqParams

    def check(self, params, spec):
        check_group_size(params.group_size, spec)

    def label(self, params):
        return f"gptq_w{params['bits']}g{params['group_size']}" + ("_act" if params.get("act_order") else "")

    def apply(self, model, params: GptqParams, ctx: CompressionContext) -> MethodResult:
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import GPTQModifier

        weights = QuantizationArgs(
            num_bits=params.bits, type="int", symmetric=params.symmetric,
            strategy="group", group_size=params.group_size,
            actorder="static" if params.act_order else None,
        )
        modifier = GPTQModifier(
            config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)},
            ignore=["lm_head"],
            dampening_frac=params.dampening_frac,
            actorder=None if not params.act_order else "static",
        )
        dataset = calibration_dataset(ctx, params.num_calibration_samples, params.calibration_seq_len)
        try:
            oneshot(
                model=model, tokenizer=ctx.tokenizer, dataset=dataset, recipe=modifier,
                num_calibration_samples=params.num_calibration_samples,
                max_seq_length=params.calibration_seq_len,
                pipeline="sequential",
            )
        except Exception as exc:  # noqa: BLE001 - any library failure is the seed's E005
            raise CompressionFailed(f"GPTQ failed in llm-compressor: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
        quantized = sum(1 for m in model.modules() if hasattr(m, "quantization_scheme"))
        return MethodResult(model, {"quantized_linear_layers": quantized, "engine": "llmcompressor.oneshot"})
