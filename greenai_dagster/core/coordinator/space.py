"""The strategy search space: every candidate a coordinator may propose for a model, as data.

Built from the model spec (group sizes it admits) and the allowed methods. Each candidate also
gets a small numeric description (`features`) that model-based search uses to generalise from
measured candidates to unmeasured ones: weight bits, sparsity, structured or not, kept rank,
activation quantization, recovery fine-tuning.
"""

from __future__ import annotations

from greenai_dagster.core.errors import GreenAIError
from greenai_dagster.core.spec import ModelSpec
from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

FEATURES = ("weight_bits", "sparsity", "structured", "rank_ratio", "act_quant", "recovery")


def _templates(group: int, small_group: int) -> list[list[tuple[str, dict]]]:
    return [
        [("gptq", {"bits": 4, "group_size": group})],
        [("int8", {})],
        [("awq", {"bits": 4, "group_size": group})],
        [("gptq", {"bits": 8, "group_size": group})],
        [("autoround", {"bits": 4, "group_size": group, "iters": 50})],
        [("rtn", {"bits": 4, "group_size": group})],
        [("w8a8_smoothquant", {})],
        [("gptq", {"bits": 4, "group_size": small_group})],
        [("gptq", {"bits": 4, "group_size": group, "act_order": False})],
        [("rtn", {"bits": 8, "group_size": group})],
        [("rtn", {"bits": 3, "group_size": group})],
        [("autoround", {"bits": 3, "group_size": group, "iters": 50})],
        [("magnitude", {"sparsity": 0.3})],
        [("magnitude", {"sparsity": 0.5})],
        [("magnitude", {"sparsity": 0.5, "mask_structure": "2:4"})],
        [("sparsegpt", {"sparsity": 0.5})],
        [("sparsegpt", {"sparsity": 0.5, "mask_structure": "2:4"})],
        [("wanda", {"sparsity": 0.5})],
        [("wanda", {"sparsity": 0.5, "mask_structure": "2:4"})],
        [("structured", {"sparsity": 0.3})],
        [("structured", {"sparsity": 0.5})],
        [("asvd", {"param_ratio": 0.5})],
        [("asvd", {"param_ratio": 0.8})],
        [("magnitude", {"sparsity": 0.5}), ("lora", {"steps": 30})],
        [("structured", {"sparsity": 0.3}), ("gptq", {"bits": 4, "group_size": group})],
        [("sparsegpt", {"sparsity": 0.5, "mask_structure": "2:4"}), ("gptq", {"bits": 4, "group_size": group})],
        [("structured", {"sparsity": 0.3}), ("gptq", {"bits": 4, "group_size": group}), ("lora", {"steps": 30})],
        [("qlora", {"steps": 30})],
    ]


def features(strategy: Strategy) -> dict[str, float]:
    f = {"weight_bits": 16.0, "sparsity": 0.0, "structured": 0.0, "rank_ratio": 1.0, "act_quant": 0.0, "recovery": 0.0}
    for step in strategy.steps:
        p = step.params
        if step.method in ("gptq", "awq", "autoround", "rtn"):
            f["weight_bits"] = min(f["weight_bits"], float(p["bits"]))
        elif step.method in ("int8", "w8a8_smoothquant"):
            f["weight_bits"], f["act_quant"] = 8.0, 1.0
        elif step.method == "qlora":
            f["weight_bits"], f["recovery"] = 4.0, 1.0
        elif step.method in ("magnitude", "sparsegpt", "wanda"):
            f["sparsity"] = float(p["sparsity"])
        elif step.method == "structured":
            f["sparsity"], f["structured"] = float(p["sparsity"]), 1.0
        elif step.method == "asvd":
            f["rank_ratio"] = float(p["param_ratio"])
        elif step.method == "lora":
            f["recovery"] = 1.0
    return f


def search_space(spec: ModelSpec, allowed_methods: list[str] | None = None) -> list[Strategy]:
    """Valid candidates for this model, labels unique, in prior order (the seed's preferences first)."""
    sizes = spec.valid_group_sizes or [32]
    group = 64 if 64 in sizes else (128 if 128 in sizes else sizes[-1])
    small_group = min(sizes)
    seen, space = set(), []
    for template in _templates(group, small_group):
        if allowed_methods and any(m not in allowed_methods for m, _ in template):
            continue
        try:
            strategy = validate_strategy(Strategy("candidate", [Step(m, dict(p)) for m, p in template]), spec)
        except GreenAIError:
            continue
        label = strategy.label()
        if label not in seen:
            seen.add(label)
            strategy.strategy_id = label
            space.append(strategy)
    return space
