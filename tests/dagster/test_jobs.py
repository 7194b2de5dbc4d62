"""The launch job (jobs.py) as the Launchpad shows it: every config field documented, the choices enums that
the experiment accepts, a value outside an enum refused by the schema, and the chosen enums stored."""

from __future__ import annotations

import pytest

from greenai_dagster.core.search.objectives import OBJECTIVES


def op_config_fields() -> dict:
    from dagster._config import Noneable

    from greenai_dagster.jobs import launch_experiment

    schema = launch_experiment.run_config_schema.config_type
    config = schema.fields["ops"].config_type.fields["create_experiment"].config_type.fields["config"].config_type

    def inner(field):
        kind = field.config_type
        return kind.inner_type if isinstance(kind, Noneable) else kind

    return {name: (field, inner(field)) for name, field in config.fields.items()}


def test_every_launchpad_field_is_documented_and_the_choices_are_enums():
    fields = op_config_fields()
    for name, (field, kind) in fields.items():
        assert field.description and len(field.description) > 20, name
    for name, field in fields["eval"][1].fields.items():
        assert field.description, f"eval.{name}"
    # the settable things the issue listed: proxy items, full evaluation, benchmark source, objectives
    assert {"limit_per_task", "full_set_for_frontier"} <= set(fields["eval"][1].fields)
    assert {"benchmark_source", "objectives", "constraints", "coordinator"} <= set(fields)

    from greenai_dagster.core.settings.config import ExperimentConfig

    coordinator = fields["coordinator"][1]
    values = {v.config_value for v in coordinator.enum_values}
    assert values == {"planner", "llm", "random"}
    for value in values:                      # every choice the Launchpad offers is one the experiment accepts
        assert ExperimentConfig(coordinator=value).coordinator == value
    assert {v.config_value for v in fields["benchmark_source"][1].enum_values} == {"auto", "offline", "hub"}
    constraints = fields["constraints"][0].description
    for key in ("min_accuracy", "max_latency_ms", "max_memory_gb", "max_kl", "max_ppl_ratio"):
        assert key in constraints, key
    assert all(name in fields["objectives"][0].description for name in OBJECTIVES)


def test_a_coordinator_outside_the_enum_is_refused_by_the_launchpad_schema(data_root):
    from dagster import DagsterInvalidConfigError

    from greenai_dagster.jobs import launch_experiment
    from greenai_dagster.resources import resources_for

    with pytest.raises(DagsterInvalidConfigError, match="coordinator"):
        launch_experiment.execute_in_process(
            run_config={"ops": {"create_experiment": {"config": {"coordinator": "oracle"}}}}, resources=resources_for())


def test_the_launch_job_creates_the_experiment_with_the_chosen_enums(data_root, tiny_model_dir, tiny_benchmark):
    from dagster import DagsterInstance

    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.core.storage.store import ResultsStore
    from greenai_dagster.jobs import launch_experiment
    from greenai_dagster.resources import resources_for

    config = {"model": str(tiny_model_dir), "dataset": str(tiny_benchmark), "name": "launchpad_enums",
              "coordinator": "random", "benchmark_source": "offline", "episodes": 1,
              "objectives": ["kl_divergence", "latency_ms"], "constraints": {"max_latency_ms": 50.0},
              "eval": {"limit_per_task": 3, "full_set_for_frontier": True}}
    result = launch_experiment.execute_in_process(run_config={"ops": {"create_experiment": {"config": config}}},
                                                  instance=DagsterInstance.get(), resources=resources_for())
    assert result.success
    stored = ResultsStore(duckdb_path()).experiment("launchpad_enums")["config"]
    assert stored["coordinator"] == "random" and stored["benchmark_source"] == "offline"
    assert stored["objectives"] == ["kl_divergence", "latency_ms"] and stored["constraints"] == {"max_latency_ms": 50.0}
    assert stored["eval"]["limit_per_task"] == 3 and stored["eval"]["full_set_for_frontier"] is True
