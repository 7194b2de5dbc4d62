"""The quality gate: a candidate whose distribution moved too far from the baseline's, or whose
accuracy is measurably worse, is `degraded`.

A degraded candidate stays in DuckDB and in every report with its reason, and never enters the
frontier, however small or fast it is: a user who picks off the frontier must not pick a broken
model. Bounds are constraints a user may set (`max_kl`, `max_ppl_ratio`, `max_accuracy_drop`); the
fidelity defaults were chosen from the measured grid of the default model (README, "Quality gate").

The accuracy rule hears the benchmark only where it can speak: when the baseline is above chance on
the scored items (else accuracy says nothing about a candidate), a candidate is degraded when its
paired McNemar test against the baseline (same items) says worse at a Bonferroni-corrected level,
ALPHA divided by the experiment's episode count (every candidate of an experiment is one more test),
and its accuracy drop (item-weighted, on the paired items) exceeds `max_accuracy_drop`. The default,
0.05, comes from the default model's full-set tables: on the BIG-bench set
(`benchmarks/results/fidelity_tau_bigbench.json`, 3,419 items) it marked sparsegpt_s50 (0.094 lost while
passing the fidelity bounds at KL 0.37), RTN W4 and Wanda 2:4, and kept GPTQ W4 (0.049), AWQ and W8; on
the default benchmark (`fidelity_tau.json`, generated_mc, 333 items) it marks GPTQ W4 (0.066 lost,
p = 0.0005), RTN W4 (0.099), AutoRound W4 (0.054) and W3 (0.075), all within the fidelity bounds, and
keeps AWQ W4 (more accurate than the baseline), W8, INT8 and magnitude 30 %. `tests/core/search/test_gate.py` pins
both tables' cases. On the search's proxy (10 items a task) the paired test has far less power: there the
rule marks only large losses.
"""

from __future__ import annotations

from greenai_dagster.core.evaluation.flips import ALPHA
from greenai_dagster.core.search.objectives import OBJECTIVES

DEFAULT_MAX_KL = 0.5          # nats/token
DEFAULT_MAX_PPL_RATIO = 2.0
DEFAULT_MAX_ACCURACY_DROP = 0.05   # accuracy points (0.05 = 5 points), baseline minus candidate

# constraint key -> (results column, default bound)
GATES = {"max_kl": ("kl_divergence", DEFAULT_MAX_KL), "max_ppl_ratio": ("ppl_ratio", DEFAULT_MAX_PPL_RATIO)}


def bounds(constraints: dict | None) -> dict[str, float]:
    """{column: bound} after the user's constraints override the defaults."""
    constraints = constraints or {}
    return {column: float(constraints.get(key, default)) for key, (column, default) in GATES.items()}


def known_constraints() -> list[str]:
    """Every constraint key a user may set: min_/max_ of an objective (a results column), and the gate's."""
    names = [f"{kind}_{name}" for name in OBJECTIVES for kind in ("min", "max")]
    return names + [key for key in (*GATES, "max_accuracy_drop") if key not in names]


def check_constraint_names(constraints: dict) -> dict:
    """`constraints` as given, or ValueError naming the first unknown key and the known ones (a typo such
    as `max_latency` would otherwise be stored and silently bound nothing)."""
    known = known_constraints()
    for key in constraints:
        if key not in known:
            raise ValueError(f"unknown constraint '{key}'; known: {', '.join(known)}")
    return constraints


def accuracy_reason(flips: dict | None, benchmark_discriminates: bool, max_drop: float, comparisons: int) -> str | None:
    """Why the candidate's accuracy is measurably worse than the baseline's beyond `max_drop`, or None.
    `flips`: `core.evaluation.flips.Flips.to_json()` of the candidate against the baseline on the same items."""
    if not benchmark_discriminates or not flips or not flips.get("items"):
        return None
    alpha = ALPHA / max(1, comparisons)
    drop = -float(flips["accuracy_delta"])
    if flips["p_value"] < alpha and drop > max_drop:
        return (f"accuracy {drop:.3f} below the baseline's on {flips['items']} paired items (McNemar p = "
                f"{flips['p_value']:.2g} < {alpha:.2g}, Bonferroni over {comparisons} candidates; allowed drop "
                f"{max_drop:g})")
    return None


def degraded_reason(row: dict, constraints: dict | None = None, benchmark_discriminates: bool = False,
                    comparisons: int = 1) -> str | None:
    """Why `row` is degraded, or None. A missing fidelity figure is not a pass: it is a reason."""
    reasons = []
    for column, bound in bounds(constraints).items():
        value = row.get(column)
        if value is None or value != value:
            reasons.append(f"{column} not measured")
        elif value > bound:
            reasons.append(f"{column} {value:.3g} > {bound:g}")
    max_drop = float((constraints or {}).get("max_accuracy_drop", DEFAULT_MAX_ACCURACY_DROP))
    accuracy = accuracy_reason(row.get("flips"), benchmark_discriminates, max_drop, comparisons)
    if accuracy:
        reasons.append(accuracy)
    return "; ".join(reasons) or None
