"""The offline planner: seeded priors, then multi-objective model-based search with Optuna.

1. Priors from the spec (the seed's rules): the first episodes take the preferred methods in
   order, GPTQ 4-bit first, then INT8 (accuracy-safe, fast on CPU), then AWQ / AutoRound.
2. After that, every measured candidate becomes a completed Optuna trial whose parameters are
   the candidate's features (weight bits, sparsity, structured, rank ratio, activation quant,
   recovery) and whose values are the objectives (accuracy up; latency, memory, size down, each
   relative to the baseline). Optuna's multi-objective TPE sampler proposes a feature point;
   the nearest untried candidate is chosen. Constraint violations are passed to TPE through its
   `constraints_func`, so infeasible regions are avoided, not just filtered afterwards.
"""

from __future__ import annotations

import logging
import math

from greenai_dagster.core.coordinator.base import CoordinatorState, Proposal
from greenai_dagster.core.coordinator.space import FEATURES, features
from greenai_dagster.core.pareto import DEFAULT_OBJECTIVES, satisfies

FEATURE_RANGES = {"weight_bits": (2.0, 16.0), "sparsity": (0.0, 0.9), "structured": (0.0, 1.0),
                  "rank_ratio": (0.05, 1.0), "act_quant": (0.0, 1.0), "recovery": (0.0, 1.0)}


def _distributions():
    from optuna.distributions import FloatDistribution

    return {name: FloatDistribution(low, high) for name, (low, high) in FEATURE_RANGES.items()}


def _distance(a: dict, b: dict) -> float:
    return math.sqrt(sum(((a[k] - b[k]) / (FEATURE_RANGES[k][1] - FEATURE_RANGES[k][0])) ** 2 for k in FEATURES))


def _constraint_violation(row: dict, constraints: dict) -> list[float]:
    """Optuna's convention: values <= 0 are feasible."""
    out = []
    for key, bound in constraints.items():
        kind, metric = key.split("_", 1)
        if metric in row and row[metric] is not None:
            out.append(bound - row[metric] if kind == "min" else row[metric] - bound)
    return out


class Planner:
    name = "planner"

    def __init__(self, seed: int = 0, prior_episodes: int = 2, objectives: dict[str, bool] = DEFAULT_OBJECTIVES):
        self.seed = seed
        self.prior_episodes = prior_episodes
        self.objectives = objectives

    def propose(self, state: CoordinatorState) -> Proposal | None:
        untried = state.untried()
        if not untried:
            return None
        if len(state.results) < self.prior_episodes:
            prior = self._prior(state, untried)
            if prior is not None:
                return prior
        return self._model_based(state, untried)

    def _prior(self, state: CoordinatorState, untried) -> Proposal | None:
        used = {m for r in state.results for m in (s["method"] for s in r["strategy"]["steps"])}
        for method in state.spec.preferred_methods:
            if method in used:
                continue
            for candidate in untried:
                if candidate.methods == [method]:
                    return Proposal(candidate, f"Prior from the spec: '{method}' is next in the preferred methods "
                                               f"{state.spec.preferred_methods} for a {state.spec.parameter_count} model.")
        return None

    def _model_based(self, state: CoordinatorState, untried) -> Proposal:
        import optuna
        from optuna.samplers import TPESampler
        from optuna.trial import create_trial

        optuna.logging.set_verbosity(logging.WARNING)
        names = list(self.objectives)
        directions = ["maximize" if self.objectives[n] else "minimize" for n in names]
        constraints = state.constraints or {}
        sampler = TPESampler(seed=self.seed + state.episode, n_startup_trials=1, multivariate=True,
                             constraints_func=(lambda t: t.user_attrs["violation"]) if constraints else None)
        study = optuna.create_study(directions=directions, sampler=sampler)
        distributions = _distributions()
        for row in state.results:
            from greenai_dagster.core.strategy import Strategy

            strategy = Strategy.from_json(row["strategy"])
            values = [row[n] / (state.baseline[n] or 1.0) for n in names]
            attrs = {"violation": _constraint_violation(row, constraints) or [0.0]} if constraints else {}
            study.add_trial(create_trial(params=features(strategy), distributions=distributions, values=values,
                                         user_attrs=attrs))
        trial = study.ask(distributions)
        target = {k: trial.params[k] for k in FEATURES}
        choice = min(untried, key=lambda c: _distance(features(c), target))
        feasible = sum(1 for r in state.results if satisfies(r, constraints))
        point = ", ".join(f"{k}={v:.2f}" for k, v in target.items())
        reasoning = (f"Multi-objective TPE over {len(state.results)} measured candidates ({feasible} feasible) "
                     f"suggested features [{point}]; the nearest untried candidate is {choice.label()}. "
                     f"Frontier so far: {', '.join(state.frontier_ids) or 'empty'}.")
        return Proposal(choice, reasoning)
