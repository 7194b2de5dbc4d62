"""The quality gate: a candidate whose distribution moved too far from the baseline's is `degraded`.

A degraded candidate stays in DuckDB and in every report with its reason, and never enters the
frontier, however small or fast it is: a user who picks off the frontier must not pick a broken
model. Bounds are constraints a user may set (`max_kl`, `max_ppl_ratio`); the defaults were chosen
from the measured grid of the default model (README, "Quality gate").
"""

from __future__ import annotations

DEFAULT_MAX_KL = 0.5          # nats/token
DEFAULT_MAX_PPL_RATIO = 2.0

# constraint key -> (results column, default bound)
GATES = {"max_kl": ("kl_divergence", DEFAULT_MAX_KL), "max_ppl_ratio": ("ppl_ratio", DEFAULT_MAX_PPL_RATIO)}


def bounds(constraints: dict | None) -> dict[str, float]:
    """{column: bound} after the user's constraints override the defaults."""
    constraints = constraints or {}
    return {column: float(constraints.get(key, default)) for key, (column, default) in GATES.items()}


def degraded_reason(row: dict, constraints: dict | None = None) -> str | None:
    """Why `row` is degraded, or None. A missing fidelity figure is not a pass: it is a reason."""
    reasons = []
    for column, bound in bounds(constraints).items():
        value = row.get(column)
        if value is None or value != value:
            reasons.append(f"{column} not measured")
        elif value > bound:
            reasons.append(f"{column} {value:.3g} > {bound:g}")
    return "; ".join(reasons) or None
