"""Multi-objective Pareto frontier: dominance, the non-dominated set, hypervolume, best-per-objective.

Dominance is the textbook one and exact on ties: `a` dominates `b` when `a` is at least as good
on every objective and strictly better on at least one. Two identical points therefore do not
dominate each other, and both stay on the frontier. Hypervolume uses moocore (a maintained
implementation), on objectives normalised by the baseline so units do not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name -> True when larger is better
DEFAULT_OBJECTIVES: dict[str, bool] = {
    "accuracy": True,
    "latency_ms": False,
    "memory_gb": False,
    "model_size_gb": False,
}
# Reference point for hypervolume, in units of the baseline's value (accuracy: 0 = worthless).
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


def satisfies(row: dict, constraints: dict) -> bool:
    """Constraint filter: `min_<metric>` / `max_<metric>` keys (e.g. min_accuracy, max_latency_ms)."""
    for key, bound in (constraints or {}).items():
        if bound is None:
            continue
        kind, metric = key.split("_", 1)
        if metric not in row:
            continue
        if (kind == "min" and row[metric] < bound) or (kind == "max" and row[metric] > bound):
            return False
    return True


def hypervolume(rows: list[dict], baseline: dict, objectives: dict[str, bool] = DEFAULT_OBJECTIVES) -> float:
    """Hypervolume of `rows`, each objective divided by the baseline's value."""
    import moocore

    if not rows:
        return 0.0
    names = list(objectives)
    scale = np.array([baseline[n] if baseline[n] else 1.0 for n in names], dtype=float)
    points = np.array([[r[n] for n in names] for r in rows], dtype=float) / scale
    ref = [REFERENCE_RATIO[objectives[n]] for n in names]
    return float(moocore.hypervolume(points, ref=ref, maximise=[objectives[n] for n in names]))


@dataclass
class FrontierSummary:
    members: list[dict]
    hypervolume: float
    best_per_objective: dict


def summarise(rows: list[dict], baseline: dict, objectives: dict[str, bool] = DEFAULT_OBJECTIVES,
              constraints: dict | None = None) -> FrontierSummary:
    feasible = [r for r in rows if satisfies(r, constraints or {})]
    members = pareto_front(feasible, objectives)
    best = {}
    for name, maximise in objectives.items():
        if feasible:
            pick = max if maximise else min
            best[name] = pick(feasible, key=lambda r: r[name])
    return FrontierSummary(members, hypervolume(members, baseline, objectives), best)
