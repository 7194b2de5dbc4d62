"""Seeded, stratified item order: every prefix of the order is a stratified subset.

Benchmark items are written to disk in this order, so lm-eval's `limit=N` (its first N items of
a task) is the proxy subset used while searching, and the whole file is the full set used for
frontier members. One order serves every proxy size, and the proxy is a subset of the full set.
Across tasks the proxy is stratified by construction (the same N items from every task); within
a task the order keeps each stratum (for multiple choice: the position of the right answer) at
its share of the task, so a proxy does not, say, over-sample "Yes" answers.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def stratified_order(items: Sequence[T], stratum: Callable[[T], Hashable], seed: int) -> list[T]:
    """Shuffle `items` with `seed`, then interleave the strata so each prefix is proportional.

    At every step the next item comes from the stratum furthest below its share of the prefix
    (ties go to the larger stratum, then to the first seen), which is the largest-remainder
    apportionment applied to every prefix length.
    """
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    groups: dict[Hashable, list[T]] = defaultdict(list)
    for item in shuffled:
        groups[stratum(item)].append(item)
    keys = list(groups)
    total = len(shuffled)
    taken = {key: 0 for key in keys}
    ordered: list[T] = []
    for step in range(1, total + 1):
        open_keys = [k for k in keys if taken[k] < len(groups[k])]
        key = max(open_keys, key=lambda k: (len(groups[k]) * step / total - taken[k], len(groups[k]),
                                            -keys.index(k)))
        ordered.append(groups[key][taken[key]])
        taken[key] += 1
    return ordered
