"""Lineage that means something (issue 14): a candidate depends on its own experiment's baseline, and an
experiment's frontier on its own candidates, read from Dagster's asset graph and partition mappings with
real dynamic partitions on an ephemeral instance (two experiments that share strategy ids)."""

import pytest
from dagster import AssetKey, DagsterInstance, MultiToSingleDimensionPartitionMapping

from greenai_dagster.definitions import defs
from greenai_dagster.partitions import (add_candidate_partitions, candidate_key_of, candidate_key_of_run,
                                        candidate_partition, candidates_partitions, experiments_partitions,
                                        partition_requests)

CANDIDATES = {"A": ["A/ep001_gptq_w4g64_act", "A/ep002_int8_dynamic"],
              "B": ["B/ep001_gptq_w4g64_act", "B/ep002_awq_w4g64", "B/ep003_mixed_4.25b_knapsack"]}
BASELINE, VARIANT, BENCHMARK, FRONTIER = (AssetKey(k) for k in (
    "baseline", "compressed_variant", "benchmark_result", "pareto_frontier"))


@pytest.fixture(scope="module")
def instance():
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(experiments_partitions.name, list(CANDIDATES))
    add_candidate_partitions(instance, [k for keys in CANDIDATES.values() for k in keys])
    return instance


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


def subset(partitions_def, keys):
    return partitions_def.empty_subset().with_partition_keys(keys)


def test_the_graph_maps_candidates_and_frontier_by_experiment(graph):
    for child, parent in ((VARIANT, BASELINE), (FRONTIER, BENCHMARK)):
        mapping = graph.get_partition_mapping(child, parent)
        assert isinstance(mapping, MultiToSingleDimensionPartitionMapping), (child, parent)
        assert mapping.partition_dimension_name == "experiment"
    assert graph.get(VARIANT).partitions_def == graph.get(BENCHMARK).partitions_def == candidates_partitions
    assert {d.name for d in candidates_partitions.partitions_defs} == {"experiment", "strategy"}


def test_a_candidate_depends_on_its_own_experiments_baseline_only(graph, instance):
    mapping = graph.get_partition_mapping(VARIANT, BASELINE)
    for experiment, keys in CANDIDATES.items():
        for key in keys:
            result = mapping.get_upstream_mapped_partitions_result_for_partitions(
                subset(candidates_partitions, [candidate_partition(key)]), candidates_partitions,
                experiments_partitions, dynamic_partitions_store=instance)
            assert set(result.partitions_subset.get_partition_keys()) == {experiment}, key
            assert not list(result.required_but_nonexistent_subset.get_partition_keys())
    # and the other way: a new baseline of A makes A's candidates stale, none of B's
    downstream = mapping.get_downstream_partitions_for_partitions(
        subset(experiments_partitions, ["A"]), experiments_partitions, candidates_partitions,
        dynamic_partitions_store=instance)
    assert {candidate_key_of(k) for k in downstream.get_partition_keys()} >= set(CANDIDATES["A"])
    assert {candidates_partitions.get_partition_key_from_str(k).keys_by_dimension["experiment"]
            for k in downstream.get_partition_keys()} == {"A"}


def test_a_frontier_depends_on_its_own_experiments_candidates_only(graph, instance):
    mapping = graph.get_partition_mapping(FRONTIER, BENCHMARK)
    registered = {k for keys in CANDIDATES.values() for k in keys}
    strategies = set(instance.get_dynamic_partitions("strategies"))
    for experiment, keys in CANDIDATES.items():
        result = mapping.get_upstream_mapped_partitions_result_for_partitions(
            subset(experiments_partitions, [experiment]), experiments_partitions, candidates_partitions,
            dynamic_partitions_store=instance)
        upstream = {candidate_key_of(k) for k in result.partitions_subset.get_partition_keys()}
        # the experiment's row of the experiment x strategy grid: every strategy id, this experiment only
        assert upstream == {f"{experiment}/{s}" for s in strategies}
        assert upstream & registered == set(keys)          # exactly its own candidates, none of the other's
        assert not list(result.required_but_nonexistent_subset.get_partition_keys())
        for key in keys:   # and each of its candidates feeds its frontier only
            downstream = mapping.get_downstream_partitions_for_partitions(
                subset(candidates_partitions, [candidate_partition(key)]), candidates_partitions,
                experiments_partitions, dynamic_partitions_store=instance)
            assert set(downstream.get_partition_keys()) == {experiment}


def test_the_asset_graph_agrees_through_its_own_partition_walk(graph, instance):
    from dagster._core.definitions.partitions.context import partition_loading_context

    with partition_loading_context(dynamic_partitions_store=instance):
        parents = graph.get_parent_partition_keys_for_child(candidate_partition("B/ep002_awq_w4g64"), BASELINE, VARIANT)
        assert set(parents.partitions_subset.get_partition_keys()) == {"B"}
        frontier_inputs = graph.get_parent_partition_keys_for_child("B", BENCHMARK, FRONTIER)
        keys = {candidate_key_of(k) for k in frontier_inputs.partitions_subset.get_partition_keys()}
        assert set(CANDIDATES["B"]) <= keys and not any(k.startswith("A/") for k in keys)


def test_candidate_keys_and_partitions_convert_both_ways():
    key = "B/ep003_mixed_4.25b_knapsack"
    partition = candidate_partition(key)
    assert partition == "B|ep003_mixed_4.25b_knapsack"
    assert partition.keys_by_dimension == {"experiment": "B", "strategy": "ep003_mixed_4.25b_knapsack"}
    assert candidate_key_of(partition) == candidate_key_of(str(partition)) == key
    tags = candidates_partitions.get_tags_for_partition_key(partition)   # what Dagster puts on the run
    assert tags["dagster/partition"] == str(partition) and candidate_key_of_run(tags) == key
    assert candidate_key_of_run({"dagster/partition": "B"}) is None
    with pytest.raises(Exception, match="E000"):
        candidate_partition("no_slash")
    with pytest.raises(Exception, match="reserves"):
        candidate_partition("a|b/ep001_int8_dynamic")


def test_one_tick_adds_each_key_once_per_dimension():
    requests = partition_requests(["C"], ["C/ep001_int8_dynamic", "A/ep001_int8_dynamic", "A/ep002_awq_w4g64"])
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in requests] == [
        ("experiments", ["C", "A"]), ("strategies", ["ep001_int8_dynamic", "ep002_awq_w4g64"])]
    assert partition_requests() == []


def test_every_search_space_label_is_a_valid_strategy_partition_key(tiny_spec):
    from greenai_dagster.core.search.coordinator.space import search_space

    labels = [s.label() for s in search_space(tiny_spec)]
    assert len(labels) > 20
    for label in labels:
        assert not set(label) & set("|,[]/") and "..." not in label, label
        assert candidate_key_of(candidate_partition(f"e/ep001_{label}")) == f"e/ep001_{label}"


@pytest.mark.parametrize("name", ["a|b", "a/b", "x,y", "run[1]", "a...b", "tab\there"])
def test_an_experiment_name_that_cannot_be_a_partition_key_is_refused(name):
    from greenai_dagster.core.settings.config import load_config
    from greenai_dagster.core.errors import EvaluationError

    with pytest.raises(EvaluationError, match="E004.*name"):
        load_config({"name": name})
    assert load_config({"name": "smollm2_bb-hard.v2"}).name == "smollm2_bb-hard.v2"


def test_a_sensor_candidate_request_resolves_as_the_daemon_does_it():
    """The daemon validates a RunRequest's partition against the instance plus the tick's own partition adds,
    then tags the run with each dimension (the plausibility check reads those tags)."""
    from dagster import RunRequest
    from dagster._core.errors import DagsterUnknownPartitionError

    key = "E1/ep001_int8_dynamic"
    request = RunRequest(job_name="candidate", partition_key=candidate_partition(key), run_key=key)
    job, instance = defs.resolve_job_def("candidate"), DagsterInstance.ephemeral()
    resolved = request.with_resolved_tags_and_config(job, partition_requests(["E1"], [key]), instance)
    assert candidate_key_of_run(resolved.tags) == key and resolved.tags["dagster/partition"] == "E1|ep001_int8_dynamic"
    with pytest.raises(DagsterUnknownPartitionError):   # without the strategy added, the daemon would refuse it
        request.with_resolved_tags_and_config(job, partition_requests(["E1"]), instance)
