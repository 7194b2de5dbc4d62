"""Uniform random choice among untried candidates: the baseline every search must beat."""

from __future__ import annotations

import random

from greenai_dagster.core.search.coordinator.base import CoordinatorState, Proposal


class RandomSearch:
    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def propose(self, state: CoordinatorState) -> Proposal | None:
        untried = state.untried()
        if not untried:
            return None
        choice = self.rng.choice(untried)
        return Proposal(choice, "uniform random choice among untried candidates")
