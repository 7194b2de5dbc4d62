"""What every coordinator sees and returns.

A coordinator gets the same `CoordinatorState` whether it runs in the CLI, the Dagster sensor
or the replay benchmark: spec, baseline, every result so far (with its strategy), the current
frontier, constraints, allowed methods, remaining budget and episodes, and the candidates it may
pick from. It returns a `Proposal` (a strategy and its reasoning) or None when nothing is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from greenai_dagster.core.models.spec import ModelSpec
from greenai_dagster.core.search.objectives import directions as default_objectives
from greenai_dagster.core.search.pareto import feasible
from greenai_dagster.core.strategy import Strategy


@dataclass
class CoordinatorState:
    spec: ModelSpec
    baseline: dict
    results: list[dict]                 # rows with objectives + "strategy" (dict) + "strategy_id"
    frontier_ids: list[str]
    candidates: list[Strategy]          # the space; already-tried labels are filtered by the caller
    tried_labels: set[str] = field(default_factory=set)
    constraints: dict = field(default_factory=dict)
    allowed_methods: list[str] | None = None
    episode: int = 1
    episodes_left: int = 1
    budget_hours_left: float = 1.0
    objectives: dict[str, bool] = field(default_factory=default_objectives)   # {name: maximise}

    def feasible_results(self) -> list[dict]:
        """Measured rows that may join the frontier: not degraded, within the constraints."""
        return [r for r in self.results if feasible(r, self.constraints)]

    def untried(self) -> list[Strategy]:
        return [c for c in self.candidates if c.label() not in self.tried_labels]


@dataclass
class Proposal:
    strategy: Strategy
    reasoning: str


class Coordinator(Protocol):
    name: str

    def propose(self, state: CoordinatorState) -> Proposal | None:
        """The next strategy to try, or None when the space holds nothing untried."""
