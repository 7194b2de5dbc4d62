"""Dominance and the frontier, including ties, a single point and constraints."""

import pytest

from greenai_dagster.core.search.pareto import dominates, hypervolume, pareto_front, satisfies, summarise


def point(name, acc, lat, mem, size, kl=0.1):
    return {"candidate_key": name, "accuracy": acc, "latency_ms": lat, "memory_gb": mem, "model_size_gb": size,
            "kl_divergence": kl}


FOUR = {"accuracy": True, "latency_ms": False, "memory_gb": False, "model_size_gb": False}


def test_better_on_all_dominates():
    assert dominates(point("a", 0.9, 10, 1, 1), point("b", 0.8, 12, 2, 2))
    assert not dominates(point("b", 0.8, 12, 2, 2), point("a", 0.9, 10, 1, 1))


def test_identical_points_do_not_dominate_each_other_and_both_stay():
    a, b = point("a", 0.5, 10, 1, 1), point("b", 0.5, 10, 1, 1)
    assert not dominates(a, b) and not dominates(b, a)
    assert [p["candidate_key"] for p in pareto_front([a, b])] == ["a", "b"]


def test_tie_on_some_objectives_better_on_one_dominates():
    assert dominates(point("a", 0.5, 10, 1, 1), point("b", 0.5, 10, 1, 2))


def test_trade_off_keeps_both():
    fast, accurate = point("fast", 0.4, 5, 1, 1), point("accurate", 0.9, 20, 1, 1)
    assert {p["candidate_key"] for p in pareto_front([fast, accurate])} == {"fast", "accurate"}


def test_single_point_is_its_own_frontier():
    only = point("only", 0.1, 100, 5, 5)
    assert pareto_front([only]) == [only]
    assert pareto_front([]) == []


def test_frontier_drops_dominated():
    rows = [point("a", 0.9, 10, 1, 1), point("b", 0.8, 12, 2, 2), point("c", 0.95, 30, 1, 1)]
    assert [p["candidate_key"] for p in pareto_front(rows)] == ["a", "c"]


def test_constraints_filter_before_frontier():
    rows = [point("a", 0.9, 10, 1, 1), point("c", 0.95, 30, 1, 1)]
    assert satisfies(rows[0], {"max_latency_ms": 20}) and not satisfies(rows[1], {"max_latency_ms": 20})
    summary = summarise(rows, point("base", 1.0, 20, 2, 2), constraints={"max_latency_ms": 20})
    assert [m["candidate_key"] for m in summary.members] == ["a"]


def test_hypervolume_of_one_point_is_box_volume():
    base = point("base", 1.0, 10, 1, 1)
    # normalised: acc 0.5 (ref 0), latency 0.5, mem 0.5, size 0.5 (ref 2) -> 0.5 * 1.5^3
    hv = hypervolume([point("p", 0.5, 5, 0.5, 0.5)], base, FOUR)
    assert hv == pytest.approx(0.5 * 1.5 ** 3)
    assert hypervolume([point("p", 0.5, 5, 0.5, 0.5), point("q", 0.4, 6, 0.6, 0.6)], base, FOUR) == pytest.approx(hv)


def test_kl_is_used_on_its_own_scale_with_the_gate_bound_as_reference():
    base = point("base", 1.0, 10, 1, 1, kl=0.0)
    # KL 0.1 against the default gate bound 0.5 -> 0.4; the other four as above
    assert hypervolume([point("p", 0.5, 5, 0.5, 0.5, kl=0.1)], base) == pytest.approx(0.4 * 0.5 * 1.5 ** 3)
    # beyond the user's bound a point adds nothing
    assert hypervolume([point("p", 0.5, 5, 0.5, 0.5, kl=0.3)], base, constraints={"max_kl": 0.2}) == 0.0


def test_a_degraded_candidate_never_reaches_the_frontier():
    broken = dict(point("broken", 0.99, 1, 0.1, 0.1, kl=3.0), degraded=True, degraded_reason="kl_divergence 3 > 0.5")
    fine = point("fine", 0.5, 10, 1, 1, kl=0.05)
    summary = summarise([broken, fine], point("base", 0.5, 10, 1, 1, kl=0.0))
    assert [m["candidate_key"] for m in summary.members] == ["fine"]
    assert summary.excluded == [{"candidate_key": "broken", "strategy_id": None, "reason": "kl_divergence 3 > 0.5"}]
    assert all(v["candidate_key"] != "broken" for v in summary.best_per_objective.values())


def test_a_hypervolume_of_zero_names_the_member_and_the_axis_that_reach_the_reference():
    """Issue 28: a frontier of one member served by a slow fallback (2.5x the baseline's latency) has hypervolume
    0; the summary and its text name that member and `latency_ms`, so the 0 is not a mystery."""
    from greenai_dagster.core.reporting.frontier_text import hypervolume_text

    baseline = point("base", 0.5, 10, 1, 1)
    slow = {**point("exp/slow_w4", 0.5, 25, 0.5, 0.5), "strategy_id": "slow_w4"}
    summary = summarise([slow], baseline, FOUR)
    assert summary.hypervolume == 0.0 and summary.at_reference == {"slow_w4": ["latency_ms"]}
    assert "(slow_w4: latency_ms)" in hypervolume_text(summary)
    fast = {**point("exp/fast_w4", 0.5, 5, 0.5, 0.5), "strategy_id": "fast_w4"}
    summary = summarise([fast], baseline, FOUR)
    assert summary.hypervolume > 0 and summary.at_reference == {} and "It is 0" not in hypervolume_text(summary)
