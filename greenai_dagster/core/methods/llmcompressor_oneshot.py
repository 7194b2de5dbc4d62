"""Shared door to llm-compressor's `oneshot`: calibration data from our corpus, errors as E005.

GPTQ, AWQ, AutoRound, SmoothQuant W8A8, SparseGPT and Wanda are all llm-compressor modifiers;
each method file only builds its modifier list. The model is changed in place, and its
`save_pretrained` writes the compressed-tensors format (packed ints, bitmask / 2:4 sparsity).
"""

from __future__ import annotations

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionContext


def calibration_dataset(ctx: CompressionContext, num_samples: int, seq_len: int):
    from datasets import Dataset

    chunks = ctx.calibration(num_samples, seq_len)
    return Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * len(c) for c in chunks]})


def weight_scheme(bits: int, group_size: int, symmetric: bool = True, act_order: bool = False):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, strategy="group",
                               group_size=group_size, actorder="static" if act_order else None)
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}


def run_oneshot(model, ctx: CompressionContext, recipe: list, num_samples: int, seq_len: int, what: str) -> None:
    from llmcompressor import oneshot

    try:
        oneshot(model=model, tokenizer=ctx.tokenizer, recipe=recipe,
                dataset=calibration_dataset(ctx, num_samples, seq_len),
                num_calibration_samples=num_samples, max_seq_length=seq_len, pipeline="sequential")
    except Exception as exc:  # noqa: BLE001 - any library failure is the seed's E005
        raise CompressionFailed(f"{what} failed in llm-compressor: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def count_quantized(model) -> int:
    return sum(1 for m in model.modules() if getattr(m, "quantization_scheme", None) is not None)
