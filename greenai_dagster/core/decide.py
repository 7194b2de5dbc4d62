"""The one decision step shared by `greenai run` and the Dagster sensor.

`decide_next` first checks whether the experiment should stop (max_episodes_reached,
budget_exhausted, converged, constraints_met, error), and otherwise asks the coordinator for the
next strategy. It never returns a duplicate or an invalid strategy: proposals are validated
against the spec and the history before they are returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenai_dagster.core import pipeline
from greenai_dagster.core.errors import CompressionFailed, CoordinatorKeyMissing, NetworkError, QuotaExceeded
from greenai_dagster.core.experiment import Experiment
from greenai_dagster.core.search.coordinator import CoordinatorState, Proposal, make_coordinator
from greenai_dagster.core.search.coordinator.space import search_space
from greenai_dagster.core.search.pareto import DEFAULT_OBJECTIVES, feasible, pareto_front
from greenai_dagster.core.storage.store import ResultsStore
from greenai_dagster.core.strategy import Strategy, validate_strategy

MAX_CONSECUTIVE_FAILURES = 3


@dataclass
class Decision:
    proposal: Proposal | None = None
    termination_reason: str | None = None
    episode: int = 0
    note: str | None = None       # what happened on the way (a coordinator failure and its fallback)


def build_state(store: ResultsStore, exp: Experiment) -> CoordinatorState:
    name, config, spec = exp.name, exp.config, pipeline.required_spec(exp)
    strategies = store.strategies(name)
    by_key = {s["candidate_key"]: s["strategy"] for s in strategies}
    results = [dict(r, strategy=by_key[r["candidate_key"]]) for r in store.results(name) if r["candidate_key"] in by_key]
    frontier = store.frontier(name) or {"members": []}
    return CoordinatorState(
        spec=spec, baseline=store.baseline(name), results=results,
        frontier_ids=[k.split("/", 1)[1] for k in frontier["members"]],
        candidates=search_space(spec, config.compression_methods),
        tried_labels={Strategy.from_json(s["strategy"]).label() for s in strategies},
        constraints=config.constraints, allowed_methods=config.compression_methods,
        episode=len(strategies) + 1, episodes_left=config.episodes - len(strategies),
        budget_hours_left=config.budget - pipeline.elapsed_hours(exp),
        objectives=exp.objectives,
    )


def frontier_unchanged_for(results: list[dict], objectives: dict[str, bool] | None = None,
                           constraints: dict | None = None) -> int:
    """How many of the latest episodes left the frontier (of feasible rows) as it was."""
    objectives = objectives or DEFAULT_OBJECTIVES
    ok = [r if feasible(r, constraints) else None for r in results]
    streak = 0
    for k in range(len(results), 0, -1):
        before = {r["candidate_key"] for r in pareto_front([r for r in ok[:k - 1] if r], objectives)}
        after = {r["candidate_key"] for r in pareto_front([r for r in ok[:k] if r], objectives)}
        if after != before:
            break
        streak += 1
    return streak


def termination_reason(store: ResultsStore, exp: Experiment) -> str | None:
    name, config = exp.name, exp.config
    strategies = store.strategies(name)
    failures = 0
    for s in reversed(strategies):
        if s["status"] != "failed":
            break
        failures += 1
    if failures >= MAX_CONSECUTIVE_FAILURES:
        return "error"
    if len(strategies) >= config.episodes:
        return "max_episodes_reached"
    if pipeline.elapsed_hours(exp) >= config.budget:
        return "budget_exhausted"
    results = store.results(name)
    if config.constraints and config.stop_when_constraints_met and any(feasible(r, config.constraints) for r in results):
        return "constraints_met"
    unchanged = frontier_unchanged_for(results, exp.objectives, config.constraints)
    if len(results) > config.convergence_patience and unchanged >= config.convergence_patience:
        return "converged"
    return None


def decide_next(store: ResultsStore, exp: Experiment, coordinator) -> Decision:
    reason = termination_reason(store, exp)
    if reason:
        return Decision(termination_reason=reason)
    state = build_state(store, exp)
    proposal = coordinator.propose(state)
    if proposal is None:
        return Decision(termination_reason="converged")  # the search space holds nothing untried
    strategy = validate_strategy(proposal.strategy, state.spec)  # defence in depth: never run an invalid one
    label = strategy.label()
    if label in state.tried_labels:
        raise CompressionFailed(f"coordinator {coordinator.name} proposed '{label}', which was already tried.",
                                "Re-run to ask again, or use another coordinator (--coordinator planner).")
    strategy.strategy_id = f"ep{state.episode:03d}_{label}"
    strategy.reasoning = proposal.reasoning
    return Decision(Proposal(strategy, proposal.reasoning), episode=state.episode)


# how a coordinator fails once its own bounded retries are spent (core/search/coordinator/llm.py): no valid answer
# (E005), the endpoint failing or unreachable (E006), rate limits past the retries or quota (E008), key (E001)
COORDINATOR_FAILURES = (CompressionFailed, NetworkError, QuotaExceeded, CoordinatorKeyMissing)


def decide_or_fall_back(store: ResultsStore, exp: Experiment, coordinator) -> Decision:
    """`decide_next`, where a failing coordinator never ends in a traceback: the planner decides this
    episode if the config allows it (`coordinator_fallback: "planner"`), else the experiment ends with
    termination `error` and the failure recorded in its facts (`coordinator_error`)."""
    name, config = exp.name, exp.config
    try:
        return decide_next(store, exp, coordinator)
    except COORDINATOR_FAILURES as exc:
        if getattr(coordinator, "name", "") == "planner":
            raise
        error = exc
    if config.coordinator_fallback == "planner":
        decision = decide_next(store, exp, make_coordinator("planner", seed=config.seed))
        decision.note = f"the {coordinator.name} coordinator failed ({error}); the planner decided this episode"
        if decision.proposal is not None:
            decision.proposal.strategy.reasoning = f"[planner fallback: {error.code}] {decision.proposal.reasoning}"
        store.set_facts(name, {"coordinator_fallbacks": store.facts(name).get("coordinator_fallbacks", 0) + 1,
                               "coordinator_error": str(error)})
        return decision
    store.set_facts(name, {"coordinator_error": str(error)})
    return Decision(termination_reason="error",
                    note=f"the {coordinator.name} coordinator failed ({error}); the experiment ends (error)")

