"""Multi-objective Pareto frontier: dominance, the non-dominated set, hypervolume, best-per-objective.

Objectives come from `core.search.objectives` ({name: maximise}). Dominance is the textbook one and exact
on ties: `a` dominates `b` when `a` is at least as good on every objective and strictly better on
at least one; two identical points both stay. Only feasible rows compete: not degraded by the
quality gate (`core.search.gate`) and within the user's constraints. Hypervolume uses moocore (a
maintained implementation) on the scales `core.search.objectives` defines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from greenai_dagster.core.search import gate
from greenai_dagster.core.search.objectives import directions, get

DEFAULT_OBJECTIVES: dict[str, bool] = directions()
# Reference point for baseline-scaled objectives, in units of the baseline's value.
REFERENCE_RATIO = {True: 0.0, False: 2.0}


def dominates(a: dict, b: dict, objectives: dict[str, bool] = DEFAULT_OBJECTIVES) -> bool:
    better_somewhere = False
    for name, maximise in objectives.items():
        x, y = a[name], b[name]
        if (x < y) if maximise else (x > y):
            return False
        if x != y:
            better_somewhere = True
    return better_somewhere


def pareto_front(rows: list[dict], objectives: dict[str, bool] = DEFAULT_OBJECTIVES) -> list[dict]:
    """Rows not dominated by any other row (order preserved)."""
    return [r for r in rows if not any(dominates(o, r, objectives) for o in rows if o is not r)]


CONSTRAINT_ALIASES = {"kl": "kl_divergence"}


def satisfies(row: dict, constraints: dict) -> bool:
    """Constraint filter: `min_<metric>` / `max_<metric>` keys (e.g. min_accuracy, max_latency_ms, max_kl)."""
    for key, bound in (constraints or {}).items():
        if bound is None:
            continue
        kind, metric = key.split("_", 1)
        metric = CONSTRAINT_ALIASES.get(metric, metric)
        if row.get(metric) is None:
            continue
        if (kind == "min" and row[metric] < bound) or (kind == "max" and row[metric] > bound):
            return False
    return True


def _scaled(rows: list[dict], baseline: dict, objectives: dict[str, bool], constraints: dict | None):
    """Points and reference point on the objectives' hypervolume scales (see core.search.objectives)."""
    names = list(objectives)
    scale, ref = [], []
    for n in names:
        if get(n).scale == "absolute":
            scale.append(1.0)
            ref.append(gate.bounds(constraints).get(n, max(float(r[n]) for r in rows) * 2 or 1.0))
        else:
            scale.append(float(baseline[n]) if baseline.get(n) else 1.0)
            ref.append(REFERENCE_RATIO[objectives[n]])
    points = np.array([[float(r[n]) for n in names] for r in rows], dtype=float) / np.array(scale)
    return points, ref


def hypervolume(rows: list[dict], baseline: dict, objectives: dict[str, bool] = DEFAULT_OBJECTIVES,
                constraints: dict | None = None) -> float:
    """Hypervolume of `rows` on the objectives' scales; points beyond the reference add nothing."""
    import moocore

    if not rows:
        return 0.0
    points, ref = _scaled(rows, baseline, objectives, constraints)
    maximise = [objectives[n] for n in objectives]
    keep = [all((p > r) if mx else (p < r) for p, r, mx in zip(point, ref, maximise)) for point in points]
    if not any(keep):
        return 0.0
    return float(moocore.hypervolume(points[keep], ref=ref, maximise=maximise))


def at_reference(rows: list[dict], baseline: dict, objectives: dict[str, bool],
                 constraints: dict | None = None) -> dict[str, list[str]]:
    """{strategy_id: [objectives]} for rows that reach the reference point on those objectives: such a row adds
    no hypervolume, so a frontier of them has hypervolume 0 and this says which member and axis made it so."""
    if not rows:
        return {}
    points, ref = _scaled(rows, baseline, objectives, constraints)
    out = {}
    for row, point in zip(rows, points):
        axes = [n for n, p, r in zip(objectives, point, ref) if (p <= r if objectives[n] else p >= r)]
        if axes:
            out[row.get("strategy_id") or row.get("candidate_key", "?")] = axes
    return out


def feasible(row: dict, constraints: dict | None) -> bool:
    return not row.get("degraded") and satisfies(row, constraints or {})


@dataclass
class FrontierSummary:
    members: list[dict]
    hypervolume: float
    best_per_objective: dict
    objectives: dict[str, bool] = field(default_factory=lambda: dict(DEFAULT_OBJECTIVES))
    excluded: list[dict] = field(default_factory=list)   # rows kept off: degraded or infeasible, with reasons
    # member strategy_id -> the objectives on which it reaches the hypervolume's reference point (adds no volume)
    at_reference: dict[str, list[str]] = field(default_factory=dict)


def summarise(rows: list[dict], baseline: dict, objectives: dict[str, bool] | None = None,
              constraints: dict | None = None) -> FrontierSummary:
    objectives = objectives or DEFAULT_OBJECTIVES

    def unmeasured(r):   # an objective with no value (e.g. energy when codecarbon failed) cannot be ranked
        return [n for n in objectives if not isinstance(r.get(n), (int, float)) or r[n] != r[n]]

    def reason(r):
        if r.get("degraded"):
            return r.get("degraded_reason")
        if not satisfies(r, constraints or {}):
            return "violates constraints"
        return "not measured: " + ", ".join(unmeasured(r))

    ok = [r for r in rows if feasible(r, constraints) and not unmeasured(r)]
    excluded = [{"candidate_key": r["candidate_key"], "strategy_id": r.get("strategy_id"), "reason": reason(r)}
                for r in rows if r not in ok]
    members = pareto_front(ok, objectives)
    best = {}
    for name, maximise in objectives.items():
        if ok:
            pick = max if maximise else min
            best[name] = pick(ok, key=lambda r: r[name])
    return FrontierSummary(members, hypervolume(members, baseline, objectives, constraints), best, dict(objectives),
                           excluded, at_reference(members, baseline, objectives, constraints))
