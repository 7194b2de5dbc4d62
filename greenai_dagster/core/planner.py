"""Next-strategy choice for the first slice: a fixed, ordered list following the seed's priors.

GPTQ 4-bit first (the usual best trade-off), INT8 for accuracy, then GPTQ 8-bit and group-size /
act-order variants. Candidates whose method is not allowed, that fail validation against the
spec, or that were already tried are skipped. The coordinator issue replaces this with a search.
"""

from __future__ import annotations

from greenai_dagster.core.errors import GreenAIError
from greenai_dagster.core.spec import ModelSpec
from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

FIXED_ORDER: list[tuple[list[Step], str]] = [
    ([Step("gptq", {"bits": 4, "group_size": 64})], "GPTQ 4-bit is the seed's first choice: ~4x smaller weights at a small accuracy cost."),
    ([Step("int8", {})], "INT8 dynamic quantization: int8 kernels on CPU, for speed and a conservative size cut."),
    ([Step("gptq", {"bits": 8, "group_size": 64})], "GPTQ 8-bit: near-lossless weights, ~2x smaller, to anchor the accuracy end."),
    ([Step("gptq", {"bits": 4, "group_size": 32})], "GPTQ 4-bit with smaller groups: more scales, better accuracy than g64."),
    ([Step("gptq", {"bits": 4, "group_size": 64, "act_order": True})], "GPTQ 4-bit with activation ordering."),
]


def next_strategy(spec: ModelSpec, episode: int, tried_labels: set[str],
                  allowed_methods: list[str] | None = None) -> Strategy | None:
    for steps, reasoning in FIXED_ORDER:
        if allowed_methods and any(s.method not in allowed_methods for s in steps):
            continue
        candidate = Strategy("pending", steps, reasoning)
        try:
            candidate = validate_strategy(candidate, spec)
        except GreenAIError:
            continue
        label = candidate.label()
        if label in tried_labels:
            continue
        candidate.strategy_id = f"ep{episode:03d}_{label}"
        return candidate
    return None
