"""The offline planner: seeded priors, a space-filling pick, then Bayesian optimisation of hypervolume.

1. Priors from the spec (the seed's rules): the first episodes take the preferred methods in
   order, GPTQ 4-bit first, then INT8 (accuracy-safe, fast on CPU), then AWQ / AutoRound.
2. One space-filling pick: the candidate least like anything measured.
3. Then (default, `sampler="gp"`): a Gaussian process per objective (scikit-learn) over the
   candidates' features, and the candidate with the largest optimistic hypervolume gain (moocore)
   runs next; see `_hypervolume_ucb`.
Alternative (`sampler="tpe"`, kept for comparison in benchmarks/search.py, where it measured
worse): every measured candidate becomes a completed Optuna trial whose parameters are
   the candidate's features (weight bits, sparsity, structured, rank ratio, activation quant,
   recovery) and whose values are the objectives (accuracy up; latency, memory, size down, each
   relative to the baseline). Optuna's multi-objective TPE sampler proposes a feature point;
   the nearest untried candidate is chosen. Constraint violations are passed to TPE through its
   `constraints_func`, so infeasible regions are avoided, not just filtered afterwards.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from greenai_dagster.core.methods import get_method
from greenai_dagster.core.search.coordinator.base import CoordinatorState, Proposal
from greenai_dagster.core.search.coordinator.space import FEATURES, features
from greenai_dagster.core.search.gate import DEFAULT_MAX_KL
from greenai_dagster.core.search.objectives import get
from greenai_dagster.core.search.pareto import DEFAULT_OBJECTIVES, hypervolume, pareto_front, satisfies
from greenai_dagster.core.strategy import Strategy

FEATURE_RANGES = {name: (0.0, 1.0) for name in FEATURES} | {
    "weight_bits": (2.0, 16.0), "group_log2": (5.0, 10.0), "sparsity": (0.0, 0.9), "rank_ratio": (0.05, 1.0)}


def _distributions():
    from optuna.distributions import FloatDistribution

    return {name: FloatDistribution(low, high) for name, (low, high) in FEATURE_RANGES.items()}


def _distance(a: dict, b: dict) -> float:
    return math.sqrt(sum(((a[k] - b[k]) / (FEATURE_RANGES[k][1] - FEATURE_RANGES[k][0])) ** 2 for k in FEATURES))


def _non_default_params(strategy) -> int:
    """How many step parameters differ from their method's defaults (0 = the method as its authors ship it)."""
    count = 0
    for step in strategy.steps:
        defaults = get_method(step.method).Params().model_dump()
        count += sum(1 for k, v in step.params.items() if defaults.get(k) != v)
    return count


def _target_transform(name: str, baseline: dict):
    """What the GP models for an objective: its ratio to the baseline, or, for objectives used on an
    absolute scale (KL divergence, 0 for the baseline, spanning orders of magnitude), its logarithm."""
    if get(name).scale == "absolute":
        return (lambda v: np.log(max(float(v), 0.0) + 1e-4)), (lambda t: np.maximum(np.exp(t) - 1e-4, 0.0))
    scale = float(baseline.get(name) or 1.0)
    return (lambda v: float(v) / scale), (lambda t: np.maximum(t, 1e-6) * scale)


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

    def __init__(self, seed: int = 0, prior_episodes: int = 3, objectives: dict[str, bool] = DEFAULT_OBJECTIVES,
                 sampler: str = "gp", beta: float = 1.0, explore_episodes: int = 1, priors: list[dict] | None = None):
        self.seed = seed
        # rows of earlier experiments on the same family (core/search/coordinator/priors.py): with them the GP
        # has data from episode 1, so the hand-written first picks and the space-filling pick are skipped
        self.priors = list(priors or [])
        self.explore_episodes = explore_episodes
        self.sampler = sampler  # "gp": GP + hypervolume UCB (default); "tpe": Optuna's multi-objective TPE
        self.beta = beta
        self.prior_episodes = prior_episodes
        self.objectives = objectives

    def propose(self, state: CoordinatorState) -> Proposal | None:
        untried = state.untried()
        if not untried:
            return None
        if self.sampler == "gp" and self._priors_cover(state):
            return self._hypervolume_ucb(state, untried)
        if len(state.results) < self.prior_episodes:
            prior = self._prior(state, untried)
            if prior is not None:
                return prior
        if self.sampler == "tpe":
            return self._model_based(state, untried)
        if len(state.results) < self.prior_episodes + self.explore_episodes:
            return self._space_filling(state, untried)
        return self._hypervolume_ucb(state, untried)

    def _priors_cover(self, state: CoordinatorState) -> bool:
        """Prior rows replace the hand-written start only when they inform every objective: a prior
        without, say, KL (an experiment from before it was measured) would leave quality unmodelled and
        the first picks blind to it (measured: benchmarks/search.py --priors)."""
        objectives = state.objectives or self.objectives
        return bool(self.priors) and all(any(name in p["values"] for p in self.priors) for name in objectives)

    def _space_filling(self, state: CoordinatorState, untried) -> Proposal:
        """Initial design: the untried candidate farthest (in feature space) from everything measured,
        so the surrogate sees every corner of the space before it has to extrapolate."""
        measured = [features(Strategy.from_json(r["strategy"])) for r in state.results]
        choice = max(sorted(untried, key=lambda c: c.label()),
                     key=lambda c: min((_distance(features(c), m) for m in measured), default=0.0))
        return Proposal(choice, f"Space-filling initial design: {choice.label()} is the candidate least like anything "
                                f"measured so far, so the surrogate learns that region before it extrapolates.")

    def _hypervolume_ucb(self, state: CoordinatorState, untried) -> Proposal:
        """Bayesian optimisation over the finite candidate set: one Gaussian process per objective
        (scikit-learn) maps candidate features to objective/baseline; each untried candidate gets
        an optimistic point (mean + beta * std in the good direction) and the one whose point adds
        the most hypervolume to the current frontier (moocore) runs next. Unexplored regions have
        a large std, so the search explores them early; constraints rule out candidates whose
        optimistic point already violates them."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, RBF, WhiteKernel

        def encode(strategy) -> list[float]:
            f = features(strategy)
            return [(f[k] - FEATURE_RANGES[k][0]) / (FEATURE_RANGES[k][1] - FEATURE_RANGES[k][0]) for k in FEATURES]

        objectives = state.objectives or self.objectives
        names = list(objectives)
        measured = {Strategy.from_json(r["strategy"]).label() for r in state.results}
        priors = [p for p in self.priors if p["label"] not in measured]   # a measurement replaces its prior
        xc = np.array([encode(c) for c in untried])
        optimistic = np.zeros((len(untried), len(names)))
        spread = np.zeros(len(untried))
        passes_gate = np.ones(len(untried))

        for j, name in enumerate(names):
            forward, inverse = _target_transform(name, state.baseline)
            own = [(encode(Strategy.from_json(r["strategy"])), forward(r[name])) for r in state.results]
            scale = _target_transform(name, {name: 1.0})[0]   # prior values are ratios (or absolute) already
            borrowed = [(encode(Strategy.from_json(p["strategy"])), scale(p["values"][name]))
                        for p in priors if name in p["values"]]
            if not own + borrowed:   # nothing known yet for this objective: every candidate looks like the baseline
                optimistic[:, j] = float(state.baseline.get(name) or 0.0)
                spread += 1.0
                continue
            x = np.array([e for e, _ in own + borrowed])
            y = np.array([t for _, t in own + borrowed])
            kernel = ConstantKernel(1.0) * RBF(length_scale=0.5, length_scale_bounds=(0.05, 5.0)) + WhiteKernel(1e-3)
            gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gp.fit(x, y)
            mean, std = gp.predict(xc, return_std=True)
            optimistic[:, j] = inverse(mean + self.beta * std if objectives[name] else mean - self.beta * std)
            spread += std
            if name == "kl_divergence":   # the quality gate is known in advance: P(KL within it), per candidate
                from scipy.stats import norm

                bound = forward((state.constraints or {}).get("max_kl", DEFAULT_MAX_KL))
                passes_gate = norm.cdf((bound - mean) / np.maximum(std, 1e-9))
        # Degraded (or infeasible) rows never join the frontier; gate bounds are checked on the optimistic point.
        front = pareto_front(state.feasible_results(), objectives)
        base_hv = hypervolume(front, state.baseline, objectives, state.constraints)
        constraints = state.constraints or {}
        best, best_gain = None, -1.0
        for i, candidate in enumerate(untried):
            point = {n: optimistic[i, j] for j, n in enumerate(names)}
            point["candidate_key"] = candidate.label()
            if not satisfies(point, constraints):
                gain = 0.0
            else:
                gain = (hypervolume(pareto_front(front + [point], objectives), state.baseline, objectives,
                                    state.constraints) - base_hv) * passes_gate[i]
            tie = best is not None and abs(gain - best_gain) <= 1e-12
            if gain > best_gain + 1e-12 or (tie and (spread[i], best.label()) > (spread[untried.index(best)],
                                                                                  candidate.label())):
                best, best_gain = candidate, gain
        reasoning = (f"Gaussian-process surrogate over {len(state.results)} measured candidates"
                     + (f" and {len(priors)} prior rows of earlier experiments on this family" if priors else "")
                     + f"; {best.label()} has the "
                     f"largest optimistic hypervolume gain ({best_gain:.3f}, beta={self.beta}) over the current frontier "
                     f"({', '.join(state.frontier_ids) or 'empty'}).")
        return Proposal(best, reasoning)

    def _prior(self, state: CoordinatorState, untried) -> Proposal | None:
        used = {m for r in state.results for m in (s["method"] for s in r["strategy"]["steps"])}
        for method in state.spec.preferred_methods:
            if method in used:
                continue
            # canonical order (the method's default parameters first, then label), so the menu's order
            # never changes the pick
            for candidate in sorted(untried, key=lambda c: (_non_default_params(c), c.label())):
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
        constraints_func = (lambda t: t.user_attrs["violation"]) if constraints else None
        sampler = TPESampler(seed=self.seed + state.episode, n_startup_trials=1, multivariate=True,
                             constraints_func=constraints_func)
        study = optuna.create_study(directions=directions, sampler=sampler)
        distributions = _distributions()
        for row in state.results:
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
