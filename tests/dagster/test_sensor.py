"""coordinator_sensor: drives sensor-owned experiments step by step, ignores CLI-driven ones."""

from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from greenai_dagster.core.reporting import report
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.store import RESULT_COLUMNS, ResultsStore
from greenai_dagster.resources import GpuResource, ResultsStoreResource
from greenai_dagster.sensors import coordinator_sensor


def write_setup(store, root, name: str, spec) -> None:
    """What a setup run writes: the model spec and the baseline's result row."""
    report.write_json(root / name / "model_spec.json", spec.to_json())
    baseline = {c: None for c in RESULT_COLUMNS}
    baseline.update(candidate_key=f"{name}/baseline", experiment=name, episode=0, strategy_id="baseline",
                    is_baseline=True, accuracy=0.5, latency_ms=30.0, memory_gb=0.5, model_size_gb=0.25,
                    task_accuracy={}, conditions={}, kl_divergence=0.01, ppl_ratio=1.01)
    store.write_result(baseline)


def tick(db, instance):
    context = build_sensor_context(instance=instance, resources={"store": ResultsStoreResource(path=str(db)),
                                                                 "gpu": GpuResource()})
    return coordinator_sensor(context)


def test_sensor_requests_setup_then_a_candidate(tmp_path, tiny_spec):
    db = tmp_path / "db.duckdb"
    store = ResultsStore(db)
    config = ExperimentConfig(model="tiny", name="ui_exp", output_dir=str(tmp_path), episodes=2, driver="sensor")
    store.create_experiment("ui_exp", "tiny", "d", config.model_dump(), str(tmp_path))
    instance = DagsterInstance.ephemeral()

    first = tick(db, instance)
    assert isinstance(first, SensorResult)
    assert [r.partition_key for r in first.run_requests] == ["ui_exp"]
    assert first.run_requests[0].job_name == "setup" and job_assets("setup") == {"model_spec", "baseline"}
    assert first.run_requests[0].tags["greenai/experiment"] == "ui_exp"
    assert first.dynamic_partitions_requests[0].partition_keys == ["ui_exp"]

    write_setup(store, tmp_path, "ui_exp", tiny_spec)   # what the setup run would have written

    second = tick(db, instance)
    [request] = second.run_requests
    # the candidate partition is (experiment, strategy); the store's candidate key rides on the greenai tag
    assert request.partition_key == "ui_exp|ep001_gptq_w4g64_act"
    assert request.partition_key.keys_by_dimension == {"experiment": "ui_exp", "strategy": "ep001_gptq_w4g64_act"}
    assert request.job_name == "candidate" and job_assets("candidate") == {"compressed_variant", "benchmark_result"}
    assert request.tags["greenai/candidate"] == "ui_exp/ep001_gptq_w4g64_act"
    assert request.tags["greenai/experiment"] == "ui_exp"
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in second.dynamic_partitions_requests] == [
        ("experiments", ["ui_exp"]), ("strategies", ["ep001_gptq_w4g64_act"])]
    assert store.strategy("ui_exp/ep001_gptq_w4g64_act")["status"] == "pending"

    # the daemon has not created that run here (no daemon in this test): the engine asks for the same
    # candidate again under the same run key, which the daemon de-duplicates; nothing new is decided
    third = tick(db, instance)
    assert [(r.run_key, r.job_name) for r in third.run_requests] == [("ui_exp/ep001_gptq_w4g64_act", "candidate")]
    assert len(store.strategies("ui_exp")) == 1

    for add in second.dynamic_partitions_requests:    # once the daemon has queued it:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    run = instance.create_run_for_job(defs_job("candidate"),
                                      tags={**request.tags, "dagster/partition": request.partition_key})
    fourth = tick(db, instance)   # in flight: nothing is requested
    assert run.status.value == "NOT_STARTED" and not fourth.run_requests
    assert len(store.strategies("ui_exp")) == 1
    instance.report_run_failed(run)
    fifth = tick(db, instance)    # its run failed: the candidate is recorded as failed, nothing requested yet
    assert not fifth.run_requests
    assert store.strategy("ui_exp/ep001_gptq_w4g64_act")["status"] == "failed"
    sixth = tick(db, instance)    # the next episode is decided
    [next_request] = sixth.run_requests
    assert next_request.job_name == "candidate" and next_request.partition_key.startswith("ui_exp|ep002_")
    assert [s["status"] for s in store.strategies("ui_exp")] == ["failed", "pending"]


def defs_job(name: str):
    from greenai_dagster.definitions import defs

    return defs.resolve_job_def(name)


def job_assets(name: str) -> set[str]:
    from greenai_dagster.definitions import defs

    job = defs.resolve_job_def(name)
    return {k.to_user_string() for k in job.asset_layer.selected_asset_keys}


def test_sensor_targets_the_named_jobs_it_requests():
    # the daemon refuses RunRequests for a job the sensor does not target; named jobs, not __ASSET_JOB
    from greenai_dagster.definitions import defs

    sensor = defs.get_sensor_def("coordinator_sensor")
    assert {j.name for j in sensor.jobs} == {"setup", "candidate", "frontier", "frontier_full_set"}
    assert set().union(*(job_assets(j.name) for j in sensor.jobs)) == {
        "model_spec", "baseline", "compressed_variant", "benchmark_result", "pareto_frontier",
        "frontier_full_evaluation"}
    assert "benchmark_result_is_plausible" in {k.name for k in defs.resolve_job_def("candidate").asset_layer
                                               .asset_graph.asset_check_keys}


def test_sensor_scores_the_final_frontier_on_the_full_set_before_finishing(tmp_path, tiny_spec):
    db = tmp_path / "db.duckdb"
    store = ResultsStore(db)
    config = ExperimentConfig(model="tiny", name="full_exp", output_dir=str(tmp_path), episodes=1, driver="sensor",
                              eval={"full_set_for_frontier": True})
    store.create_experiment("full_exp", "tiny", "d", config.model_dump(), str(tmp_path))
    report.write_json(tmp_path / "full_exp" / "model_spec.json", tiny_spec.to_json())
    for episode, sid in ((0, "baseline"), (1, "int8_dynamic")):
        row = {c: None for c in RESULT_COLUMNS}
        row.update(candidate_key=f"full_exp/{sid}", experiment="full_exp", episode=episode, strategy_id=sid,
                   is_baseline=episode == 0, accuracy=0.5, latency_ms=30.0 - episode, memory_gb=0.5,
                   model_size_gb=0.25, task_accuracy={}, conditions={}, kl_divergence=0.01, ppl_ratio=1.01)
        store.write_result(row)
    store.add_strategy("full_exp/int8_dynamic", "full_exp", 1, {"strategy_id": "int8_dynamic", "steps": [],
                                                                 "methods": ["int8"]})
    store.set_strategy_status("full_exp/int8_dynamic", "done")
    store.write_frontier("full_exp", ["full_exp/int8_dynamic"], 0.1, 1)

    result = tick(db, DagsterInstance.ephemeral())   # max episodes reached: full set first, not finished yet
    [request] = result.run_requests
    assert request.partition_key == "full_exp" and request.run_key == "full_exp:full_set"
    assert request.job_name == "frontier_full_set" and job_assets("frontier_full_set") == {"frontier_full_evaluation"}
    assert store.experiment("full_exp")["status"] == "active"


def test_sensor_leaves_cli_experiments_alone(tmp_path):
    db = tmp_path / "db.duckdb"
    store = ResultsStore(db)
    config = ExperimentConfig(model="tiny", name="cli_exp", output_dir=str(tmp_path))
    store.create_experiment("cli_exp", "tiny", "d", config.model_dump(), str(tmp_path))
    assert isinstance(tick(db, DagsterInstance.ephemeral()), SkipReason)


def test_an_interrupted_run_is_requested_again_and_a_step_failure_is_not(tmp_path, tiny_spec):
    """A run whose process was killed (Dagster's failure reason UNEXPECTED_TERMINATION) is run again under a
    new Dagster run key, at most twice; a run whose steps failed is recorded as a failed candidate."""
    db = tmp_path / "db.duckdb"
    store = ResultsStore(db)
    config = ExperimentConfig(model="tiny", name="kill_exp", output_dir=str(tmp_path), episodes=3, driver="sensor")
    store.create_experiment("kill_exp", "tiny", "d", config.model_dump(), str(tmp_path))
    write_setup(store, tmp_path, "kill_exp", tiny_spec)
    instance = DagsterInstance.ephemeral()

    [request] = tick(db, instance).run_requests
    key = request.tags["greenai/run"]
    for add in tick(db, instance).dynamic_partitions_requests:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))

    def launch_and_fail(req, reason):
        run = instance.create_run_for_job(defs_job("candidate"),
                                          tags={**req.tags, "dagster/partition": req.partition_key,
                                                "dagster/failure_reason": reason})
        instance.report_run_failed(run)

    launch_and_fail(request, "UNEXPECTED_TERMINATION")
    [rerun] = tick(db, instance).run_requests
    assert rerun.run_key == f"{key}#rerun1" and rerun.tags["greenai/run"] == key
    assert rerun.partition_key == request.partition_key
    assert store.strategy(key)["status"] == "pending"
    launch_and_fail(rerun, "UNEXPECTED_TERMINATION")
    [second] = tick(db, instance).run_requests
    assert second.run_key == f"{key}#rerun2"
    launch_and_fail(second, "UNEXPECTED_TERMINATION")   # a third interruption: no more reruns
    assert not tick(db, instance).run_requests
    assert store.strategy(key)["status"] == "failed"
    assert "UNEXPECTED_TERMINATION" in store.strategies("kill_exp")[0]["error"]

    [next_request] = tick(db, instance).run_requests       # the next episode; its steps fail: recorded failed
    assert next_request.run_key == next_request.tags["greenai/run"]
    launch_and_fail(next_request, "STEP_FAILURE")
    assert not tick(db, instance).run_requests
    assert store.strategy(next_request.tags["greenai/run"])["status"] == "failed"
