"""Coordinators decide the next strategy: `planner` (offline, default), `llm` (OpenAI API), `random`."""

from __future__ import annotations

from greenai_dagster.core.search.coordinator.base import Coordinator, CoordinatorState, Proposal
from greenai_dagster.core.search.coordinator.llm import LlmCoordinator, LlmSettings
from greenai_dagster.core.search.coordinator.planner import Planner
from greenai_dagster.core.search.coordinator.random_search import RandomSearch


def make_coordinator(kind: str = "planner", seed: int = 0, llm: LlmSettings | None = None,
                     priors: list[dict] | None = None) -> Coordinator:
    if kind == "planner":
        return Planner(seed=seed, priors=priors)
    if kind == "random":
        return RandomSearch(seed=seed)
    if kind == "llm":
        return LlmCoordinator(llm)
    raise ValueError(f"unknown coordinator '{kind}' (planner, llm, random)")


__all__ = ["Coordinator", "CoordinatorState", "Proposal", "Planner", "RandomSearch", "LlmCoordinator", "LlmSettings",
           "make_coordinator"]
