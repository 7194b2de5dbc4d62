"""Partitions, and the one place where a Dagster candidate partition and the store's candidate key meet.

Experiment-level assets (spec, baseline, frontier) have one dynamic partition per experiment. Candidate assets
are partitioned two-dimensionally, `experiment` x `strategy` (`MultiPartitionsDefinition` over the same
experiments partitions and a dynamic set of strategy ids), so the lineage says what depends on what:
`MultiToSingleDimensionPartitionMapping("experiment")` makes candidate (E, s) depend on E's baseline only, and
E's frontier on the candidate partitions (E, *) only: E's row of the grid, whose cells for strategy ids E never
tried stay empty, and nothing of another experiment's (as `AllPartitionMapping` had it).

The results store, the engine (core/engine.py), the API and the files keep the candidate key
`<experiment>/<strategy_id>`; everything Dagster-facing converts here: `candidate_partition` (candidate key ->
partition key), `candidate_key_of` (partition key -> candidate key), `candidate_key_of_run` (a candidate run's
tags -> candidate key), `partition_requests` / `add_candidate_partitions` (register the dimensions' keys).

Dagster's multi-partition key is `<experiment>|<strategy_id>` (dimensions in name order), so neither part may
hold `|`, `,`, `[` or `]`: strategy ids are `ep<NNN>_<label>` with labels from [a-z0-9_.+] (core/methods), and
experiment names are checked when the experiment is configured (core/settings/config.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

from dagster import (
    AddDynamicPartitionsRequest, BetaWarning, DagsterInstance, DynamicPartitionsDefinition, MultiPartitionKey,
    MultiPartitionsDefinition, MultiToSingleDimensionPartitionMapping,
)

from greenai_dagster.core.errors import UnexpectedError

EXPERIMENT_DIM = "experiment"
STRATEGY_DIM = "strategy"

experiments_partitions = DynamicPartitionsDefinition(name="experiments")
strategies_partitions = DynamicPartitionsDefinition(name="strategies")
candidates_partitions = MultiPartitionsDefinition({EXPERIMENT_DIM: experiments_partitions,
                                                   STRATEGY_DIM: strategies_partitions})

# candidate (E, s) <- baseline E, and frontier E <- candidates (E, *): the experiment dimension is the link.
# Dagster marks the class beta; its behaviour here is pinned by tests/dagster/test_lineage.py, so the import-time
# warning (printed by every `dagster`/`greenai` command) is silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    SAME_EXPERIMENT = MultiToSingleDimensionPartitionMapping(partition_dimension_name=EXPERIMENT_DIM)

# characters Dagster reserves in a multi-partition key (`|` joins the dimensions; `,[]` in key lists)
RESERVED = set("|,[]")
PARTITION_TAG = "dagster/partition"


def _split(candidate_key: str) -> tuple[str, str]:
    experiment, sep, strategy_id = candidate_key.partition("/")
    if not sep or not experiment or not strategy_id:
        raise UnexpectedError(f"'{candidate_key}' is not a candidate key (<experiment>/<strategy_id>).")
    bad = sorted(RESERVED & set(candidate_key))
    if bad:
        raise UnexpectedError(f"candidate key '{candidate_key}' holds {', '.join(bad)}, which Dagster reserves in "
                              "partition keys.", "Use an experiment name without | , [ ].")
    return experiment, strategy_id


def candidate_partition(candidate_key: str) -> MultiPartitionKey:
    """The Dagster partition of candidate `<experiment>/<strategy_id>`."""
    experiment, strategy_id = _split(candidate_key)
    return MultiPartitionKey({EXPERIMENT_DIM: experiment, STRATEGY_DIM: strategy_id})


def candidate_key_of(partition_key: str) -> str:
    """The store's candidate key of a candidate partition (a MultiPartitionKey or its `E|s` string)."""
    key = candidates_partitions.get_partition_key_from_str(partition_key) if not isinstance(
        partition_key, MultiPartitionKey) else partition_key
    dims = key.keys_by_dimension
    return f"{dims[EXPERIMENT_DIM]}/{dims[STRATEGY_DIM]}"


def candidate_key_of_run(tags: Mapping[str, str]) -> str | None:
    """The candidate key of a candidate run, from the tags Dagster puts on a multi-partitioned run
    (`dagster/partition/experiment`, `dagster/partition/strategy`); None for a run without them."""
    experiment = tags.get(f"{PARTITION_TAG}/{EXPERIMENT_DIM}")
    strategy_id = tags.get(f"{PARTITION_TAG}/{STRATEGY_DIM}")
    if experiment and strategy_id:
        return f"{experiment}/{strategy_id}"
    return None


def partition_requests(experiments: Iterable[str] = (),
                       candidate_keys: Iterable[str] = ()) -> list[AddDynamicPartitionsRequest]:
    """What a sensor asks Dagster to add so these experiments' and candidates' partitions exist: one request
    per dynamic dimension, each key once (Dagster refuses a tick that adds a key twice)."""
    pairs = [_split(key) for key in candidate_keys]
    experiment_keys = list(dict.fromkeys([*experiments, *(e for e, _ in pairs)]))
    strategy_keys = list(dict.fromkeys(s for _, s in pairs))
    return [definition.build_add_request(keys) for definition, keys in
            ((experiments_partitions, experiment_keys), (strategies_partitions, strategy_keys)) if keys]


def add_candidate_partitions(instance: DagsterInstance, candidate_keys: Iterable[str]) -> None:
    """Register these candidates' partitions on the instance now (idempotent), as `greenai run` does."""
    for request in partition_requests(candidate_keys=candidate_keys):
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
