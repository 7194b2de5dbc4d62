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

from greenai_dagster.core.methods.mixed.levels import Unit, average_bits, level_bits


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


def evolve_at_budget(measure_kl: Callable[[dict[str, str]], float], unit_list: list[Unit], levels: list[str],
                     budget_bits: float, start: dict[str, str], generations: int = 100, offspring: int = 8,
                     mutations: int = 2, seed: int = 0,
                     progress: Callable[[str], None] | None = None,
                     checkpoint: Callable[[dict], None] | None = None,
                     screens: list[tuple[Callable[[dict[str, str]], float], int]] = ()) -> dict:
    """A (1 + lambda) level-switch search at one budget with measured KL as fitness (EvoPress's scheme,
    Sieberling et al. 2024): each child moves `mutations` random units one level up or down, is repaired
    into the budget (random units stepped down until it fits, then random units stepped up while they
    still fit, so no child wastes the budget), and replaces the parent only when its measured KL is lower.
    Starts from `start` (the knapsack solution), so the result is never worse than it on the search
    tokens; what it corrects is the additive table's blind spot, layers whose errors compound.
    Returns {allocation, kl, avg_bits, evaluations, screen_evaluations, history}; `checkpoint` receives the
    same dict every 10 generations, so a caller can save it and a killed search goes on from its best
    allocation.

    `screens` is EvoPress's multi-step selection: (cheaper fitness, how many children it keeps), applied in
    order before `measure_kl` judges the survivors against the parent. A screen on few tokens lets many
    children be tried, while the decision that moves the parent is taken on many tokens (a fitness on few
    tokens alone is fitted: 2,048 search tokens fell 10 % where held-out text fell 1 %)."""
    rng = np.random.default_rng(seed)
    order = sorted(levels, key=level_bits)
    rank = {lv: i for i, lv in enumerate(order)}
    names = [u.name for u in unit_list]
    if average_bits(start, unit_list) > budget_bits + 1e-9:
        raise ValueError(f"the start allocation has {average_bits(start, unit_list):.3f} bits, over {budget_bits}")

    def step(allocation: dict[str, str], unit: str, direction: int) -> bool:
        i = rank[allocation[unit]] + direction
        if 0 <= i < len(order):
            allocation[unit] = order[i]
            return True
        return False

    def child_of(parent: dict[str, str]) -> dict[str, str]:
        child = dict(parent)
        for unit in rng.choice(names, size=min(mutations, len(names)), replace=False):
            step(child, str(unit), int(rng.choice([-1, 1])))
        for _ in range(10 * len(names)):               # repair: down until it fits
            if average_bits(child, unit_list) <= budget_bits + 1e-9:
                break
            step(child, str(rng.choice(names)), -1)
        for unit in rng.permutation(names):             # fill: up while it still fits
            trial = dict(child)
            if step(trial, str(unit), 1) and average_bits(trial, unit_list) <= budget_bits + 1e-9:
                child = trial
        return child

    parent, parent_kl = dict(start), measure_kl(start)
    evaluations, screened, history = 1, 0, [parent_kl]
    for generation in range(generations):
        children = [child_of(parent) for _ in range(offspring)]
        for screen, keep in screens:
            ranked = sorted(range(len(children)), key=[screen(c) for c in children].__getitem__)
            screened += len(children)
            children = [children[i] for i in ranked[:keep]]
        scored = [(measure_kl(c), c) for c in children]
        evaluations += len(children)
        best_kl, best = min(scored, key=lambda s: s[0])
        if best_kl < parent_kl:
            parent, parent_kl = best, best_kl
        history.append(parent_kl)
        if (generation + 1) % 10 == 0:
            if progress:
                progress(f"budget {budget_bits:g}: generation {generation + 1}/{generations}, KL {parent_kl:.4f}")
            if checkpoint:
                checkpoint(_evolved(parent, parent_kl, unit_list, evaluations, screened, history))
    return _evolved(parent, parent_kl, unit_list, evaluations, screened, history)


def _evolved(parent: dict[str, str], kl: float, unit_list: list[Unit], evaluations: int, screened: int,
             history: list[float]) -> dict:
    return {"allocation": dict(parent), "kl": kl, "avg_bits": average_bits(parent, unit_list),
            "evaluations": evaluations, "screen_evaluations": screened, "history": list(history)}
