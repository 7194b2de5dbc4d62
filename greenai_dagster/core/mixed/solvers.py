"""Choosing an allocation: exact knapsack on the additive table, NSGA-II on measured KL.

Knapsack (scipy's `milp`, HiGHS): one binary per (unit, level), exactly one level per unit, the
weight-weighted bits under the budget, minimising the summed sensitivities. Exact for the additive
model, milliseconds for hundreds of units; chosen over OR-Tools because scipy is already installed
and HiGHS solves this size instantly.

Evolutionary (optuna's NSGA-II): every unit's level is a categorical parameter; each trial is scored
by its measured KL (not the additive prediction, which misses interactions between layers) and its
average bits, so one search yields a whole size x KL front (EvoPress and ModelOpt's `auto_quantize`
search the same space; EvoPress also with KL as fitness). Uniform allocations (and, when given,
knapsack solutions) seed the first generation, so the front starts at least as good as both.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from greenai_dagster.core.mixed.levels import Unit, average_bits, level_bits


def knapsack(sens: dict[str, dict[str, float]], unit_list: list[Unit], levels: list[str],
             budget_bits: float) -> dict[str, str]:
    """The allocation with the smallest predicted KL whose average bits are <= budget_bits."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    n_u, n_l = len(unit_list), len(levels)
    cost = np.array([[sens[u.name][lv] for lv in levels] for u in unit_list], dtype=float).ravel()
    one_each = np.zeros((n_u, n_u * n_l))
    for i in range(n_u):
        one_each[i, i * n_l:(i + 1) * n_l] = 1.0
    params = np.array([u.params for u in unit_list], dtype=float)
    bits = np.array([level_bits(lv) for lv in levels], dtype=float)
    size_row = (params[:, None] * bits[None, :]).ravel() / params.sum()
    result = milp(cost, integrality=np.ones_like(cost), bounds=Bounds(0, 1),
                  constraints=[LinearConstraint(one_each, 1, 1), LinearConstraint(size_row[None, :], 0, budget_bits)])
    if result.x is None:
        cheapest = min(levels, key=level_bits)
        raise ValueError(f"no allocation fits {budget_bits} bits on average (the cheapest, all {cheapest}, "
                         f"needs {level_bits(cheapest)})")
    choice = result.x.reshape(n_u, n_l).argmax(1)
    return {u.name: levels[c] for u, c in zip(unit_list, choice)}


def evolutionary(measure_kl: Callable[[dict[str, str]], float], unit_list: list[Unit], levels: list[str],
                 trials: int, population: int = 16, seed: int = 0,
                 max_bits: float | None = None, seeds: list[dict[str, str]] = ()) -> list[dict]:
    """NSGA-II over allocations; returns every trial as {allocation, kl, avg_bits}. `max_bits` bounds
    the search to allocations at most that large (a trial constraint NSGA-II ranks feasible-first).
    The first generation is the uniform allocations plus `seeds` (e.g. knapsack solutions over a range
    of budgets): random allocations of dozens of units are far worse than either, and the measured KL
    then corrects what the additive table gets wrong."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for level in levels:
        if max_bits is None or level_bits(level) <= max_bits:
            study.enqueue_trial({u.name: level for u in unit_list})
    for seed_allocation in seeds:
        study.enqueue_trial(dict(seed_allocation))

    def objective(trial) -> tuple[float, float]:
        allocation = {u.name: trial.suggest_categorical(u.name, levels) for u in unit_list}
        bits = average_bits(allocation, unit_list)
        if max_bits is not None:
            trial.set_constraint("avg_bits", bits - max_bits)
        return measure_kl(allocation), bits

    study.optimize(objective, n_trials=trials)
    return [{"allocation": dict(t.params), "kl": t.values[0], "avg_bits": t.values[1]}
            for t in study.trials if t.values is not None]


def best_within(trials: list[dict], budget_bits: float) -> dict:
    """The trial with the lowest measured KL among those at most `budget_bits` on average."""
    fitting = [t for t in trials if t["avg_bits"] <= budget_bits + 1e-9]
    if not fitting:
        raise ValueError(f"no evaluated allocation fits {budget_bits} bits on average")
    return min(fitting, key=lambda t: t["kl"])
