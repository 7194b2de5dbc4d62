"""The frontier assets (assets/frontier.py) as the UI shows them: the experiment's status is its termination
reason once it ends, and the full-set asset says why it may never be materialized."""

from __future__ import annotations


def test_the_experiment_status_is_its_termination_reason_once_it_ends():
    from greenai_dagster.assets.frontier import experiment_status

    assert experiment_status({"termination_reason": "converged", "config": {"episodes": 5}}, 3) == "converged"
    running = experiment_status({"termination_reason": float("nan"), "config": {"episodes": 5}}, 3)
    assert running.startswith("running: 3 of 5 episodes done")


def test_the_full_set_asset_says_why_it_may_never_be_materialized():
    from greenai_dagster.assets.frontier import frontier_full_evaluation

    spec = frontier_full_evaluation.specs_by_key[frontier_full_evaluation.key]
    for text in (spec.description, spec.metadata["materialized_when"]):
        assert "--full-eval" in text and "full_set_for_frontier" in text and "on CPU off by default" in text
