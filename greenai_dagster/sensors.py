"""coordinator_sensor: drives every experiment created for the sensor, one candidate at a time.

Per tick and experiment: request spec + baseline once; wait while a candidate is in flight
(marking it failed if its run failed); request the frontier once a finished candidate is not
yet in it; otherwise ask `decide_next` (the same code `greenai run` uses) for the next strategy,
add its dynamic partition and request its run, or (after the full-set scoring of the final
frontier, where `eval.full_set_for_frontier` asks for it) end the experiment with its termination
reason. All store writes happen after the decision is complete, so a tick that raises leaves
the experiment as it was.
"""

from __future__ import annotations

import os

from dagster import (
    DagsterRunStatus, DefaultSensorStatus, RunRequest, RunsFilter, SensorEvaluationContext, SensorResult, SkipReason,
    sensor,
)

from greenai_dagster.core import pipeline
from greenai_dagster.core.decide import decide_or_fall_back
from greenai_dagster.instance import CANDIDATE_TAG, EXPERIMENT_TAG, SOURCE_TAG
from greenai_dagster.jobs import STAGE_JOBS
from greenai_dagster.observations import record_finish
from greenai_dagster.partitions import candidates_partitions, experiments_partitions
from greenai_dagster.resources import GpuResource, ResultsStoreResource

FAILED = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
FINISHED = FAILED | {DagsterRunStatus.SUCCESS}


def _latest_run_status(context: SensorEvaluationContext, run_key_tag: str):
    runs = context.instance.get_runs(filters=RunsFilter(tags={"greenai/run": run_key_tag}), limit=1)
    return runs[0].status if runs else None


def _step(context: SensorEvaluationContext, store, name: str, device: str = "cpu"):
    """One experiment's next action: (run requests, partitions to add, a note)."""
    tag = {EXPERIMENT_TAG: name, SOURCE_TAG: "sensor"}
    if store.baseline(name) is None:
        status = _latest_run_status(context, f"{name}:setup")
        if status in FAILED:
            store.finish_experiment(name, "error")
            return [], [], f"{name}: setup run failed; experiment ended (error)"
        if status is None:
            return ([RunRequest(job_name="setup", partition_key=name, run_key=f"{name}:setup",
                                tags={**tag, "greenai/run": f"{name}:setup"})],
                    [name], f"{name}: spec + baseline requested")
        return [], [], f"{name}: waiting for spec + baseline"

    for record in store.strategies(name):
        if record["status"] in ("done", "failed"):
            continue
        status = _latest_run_status(context, record["candidate_key"])
        if status in FAILED:
            store.set_strategy_status(record["candidate_key"], "failed", f"run {status.value}")
            return [], [], f"{record['candidate_key']}: run failed"
        return [], [], f"{name}: {record['candidate_key']} in flight"

    done = len(store.results(name))
    frontier = store.frontier(name)
    if done and (frontier is None or frontier["episodes_seen"] < done):
        run_key = f"{name}:frontier:{done}"
        if _latest_run_status(context, run_key) is None:
            return ([RunRequest(job_name="frontier", partition_key=name, run_key=run_key,
                                tags={**tag, "greenai/run": run_key})], [], f"{name}: frontier requested")
        return [], [], f"{name}: waiting for the frontier"

    config = pipeline.experiment_config(store, name)
    decision = decide_or_fall_back(store, name, config.make_coordinator())
    if decision.termination_reason:
        if pipeline.wants_full_set(config, device):   # last: the final frontier on the full set
            run_key = f"{name}:full_set"
            status = _latest_run_status(context, run_key)
            if status is None:
                return ([RunRequest(job_name="frontier_full_set", partition_key=name, run_key=run_key,
                                    tags={**tag, "greenai/run": run_key})],
                        [], f"{name}: full-set scoring of the frontier requested")
            if status not in FINISHED:
                return [], [], f"{name}: waiting for the full-set scoring"
        final = pipeline.finish_experiment(store, name, decision.termination_reason)
        record_finish(context.instance, name, final, pipeline.wants_full_set(config, device))
        return [], [], f"{name}: finished ({decision.termination_reason})"
    strategy = decision.proposal.strategy
    key = pipeline.candidate_key(name, strategy.strategy_id)
    store.add_strategy(key, name, decision.episode, strategy.to_json())
    request = RunRequest(job_name="candidate", partition_key=key, run_key=key,
                         tags={**tag, CANDIDATE_TAG: key, "greenai/run": key})
    return [request], [], f"{name}: episode {decision.episode} -> {strategy.strategy_id}"


@sensor(minimum_interval_seconds=int(os.environ.get("GREENAI_SENSOR_INTERVAL_S", "15")), default_status=DefaultSensorStatus.RUNNING,
        jobs=list(STAGE_JOBS.values()),
        description="Asks the coordinator for each sensor-driven experiment's next candidate and runs it.")
def coordinator_sensor(context: SensorEvaluationContext, store: ResultsStoreResource, gpu: GpuResource):
    results_store = store.get()
    requests, experiment_keys, candidate_keys, notes = [], [], [], []
    for name in results_store.active_experiments():
        if pipeline.experiment_config(results_store, name).driver != "sensor":
            continue  # `greenai run` drives its own experiments in-process
        runs, new_experiments, note = _step(context, results_store, name, gpu.device_name())
        requests += runs
        experiment_keys += new_experiments
        candidate_keys += [r.partition_key for r in runs if r.partition_key and "/" in r.partition_key]
        notes.append(note)
    if not requests and not notes:
        return SkipReason("no sensor-driven experiment is active")
    context.log.info("; ".join(notes))
    partition_requests = []
    if experiment_keys:
        partition_requests.append(experiments_partitions.build_add_request(experiment_keys))
    if candidate_keys:
        partition_requests.append(candidates_partitions.build_add_request(candidate_keys))
    return SensorResult(run_requests=requests, dynamic_partitions_requests=partition_requests)
