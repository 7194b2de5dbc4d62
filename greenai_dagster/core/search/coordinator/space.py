"""The strategy search space: every candidate a coordinator may propose for a model, as data.

Built from the model spec (group sizes it admits) and the allowed methods. Each candidate also
gets a numeric description (`features`) that model-based search uses to generalise from measured
candidates to unmeasured ones. Each method owns the features of its steps (`features()` on the
method class); a chain combines them (the fewest weight bits, the smallest kept rank, every
flag any step sets). Every strategy of the space gets a distinct point (a test checks it).
"""

from __future__ import annotations

from greenai_dagster.core.errors import CompressionFailed, GreenAIError
from greenai_dagster.core.methods import REGISTRY, get_method
from greenai_dagster.core.models.spec import ModelSpec
from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

FEATURES = ("weight_bits", "group_log2", "act_order", "error_feedback", "activation_aware", "learned_rounding",
            "act_quant", "sparsity", "n_m", "structured", "rank_ratio", "recovery", "mixed")
DEFAULTS = {"weight_bits": 16.0, "group_log2": 10.0, "rank_ratio": 1.0}
KEEP_SMALLEST = ("weight_bits", "rank_ratio", "group_log2")


def _templates(group: int, small_group: int, moe: bool = False) -> list[list[tuple[str, dict]]]:
    awq = {"bits": 4, "group_size": group, **({"symmetric": True} if moe else {})}  # MoE experts reload symmetric only
    return [
        [("gptq", {"bits": 4, "group_size": group})],
        [("int8", {})],
        [("awq", awq)],
        [("gptq", {"bits": 8, "group_size": group})],
        [("autoround", {"bits": 4, "group_size": group, "iters": 50})],
        [("rtn", {"bits": 4, "group_size": group})],
        [("w8a8_smoothquant", {})],
        [("gptq", {"bits": 4, "group_size": small_group})],
        [("gptq", {"bits": 4, "group_size": group, "act_order": False})],
        [("rtn", {"bits": 8, "group_size": group})],
        [("rtn", {"bits": 3, "group_size": group})],
        [("mixed", {"budget_bits": 4.25})],
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
        [("gguf", {"quant_type": "Q4_K_M"})],
        [("gguf", {"quant_type": "Q8_0"})],
    ]


def features(strategy: Strategy) -> dict[str, float]:
    f = {name: DEFAULTS.get(name, 0.0) for name in FEATURES}
    for step in strategy.steps:
        for name, value in get_method(step.method).features(step.params).items():
            f[name] = min(f[name], float(value)) if name in KEEP_SMALLEST else max(f[name], float(value))
    return f


def search_space(spec: ModelSpec, allowed_methods: list[str] | None = None) -> list[Strategy]:
    """Valid candidates for this model, labels unique, in prior order (the seed's preferences first).
    Methods that cannot compress this architecture (`spec.unsupported_methods`) are left out."""
    sizes = spec.valid_group_sizes or [32]
    group = 64 if 64 in sizes else (128 if 128 in sizes else sizes[-1])
    small_group = min(sizes)
    seen, space = set(), []
    for template in _templates(group, small_group, bool(spec.expert_layout)):
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


def check_method_names(names: list[str] | None) -> None:
    """E005 for a `compression_methods` entry that names no registered method (before any work)."""
    unknown = [n for n in names or [] if n not in REGISTRY]
    if unknown:
        raise CompressionFailed(f"compression_methods names unknown method(s) {unknown}.",
                                f"Use names from: {', '.join(sorted(REGISTRY))} (or leave compression_methods unset "
                                "for all).")


def require_usable(spec: ModelSpec, names: list[str] | None) -> None:
    """E005 when `compression_methods` leaves nothing to try for this model, or names a method that no
    candidate can use (e.g. `lora` alone: it only follows another method in a chain); otherwise the run
    would evaluate the baseline and stop "converged" after 0 episodes."""
    if not names:
        return
    check_method_names(names)
    space = search_space(spec, names)
    unusable = [n for n in names if not any(n in c.methods for c in space)]
    if not space or unusable:
        methods = {m for c in search_space(spec) for m in c.methods}
        chained = sorted(n for n in unusable if n in methods)
        hint = (f" ({', '.join(chained)} only run(s) in chains with other methods: allow those too)" if chained
                else "")
        raise CompressionFailed(
            f"compression_methods {names} leave {'nothing' if not space else f'no candidate for {unusable}'} to try "
            f"on {spec.model_name}{hint}.",
            f"Methods this model can use alone or in chains: {', '.join(sorted(methods))}; start a new experiment "
            "(a new --name) with a usable list, or leave compression_methods unset.")
