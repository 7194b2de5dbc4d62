"""coordinator_sensor: the queued driver of the experiment state machine (core/engine.py).

Per tick and sensor-driven experiment it asks `engine.next_action` what is next, given the status of the
runs already requested (read from the instance by their `greenai/run` run key), and turns the answer into
a RunRequest for the same named job and partition key `greenai run` executes in-process: setup (spec +
baseline), candidate (partition experiment x strategy, partitions.py; the strategy id is added to the
`strategies` dimension with the request), frontier, the full-set
scoring of the final frontier; `finish` ends the experiment with its termination reason, `fail` records
a failed candidate run, `wait` waits for a run in flight. The engine's store writes (`engine.apply`) happen
after the decision is complete, so a tick that raises leaves the experiment as it was.
"""

from __future__ import annotations

import os

from dagster import (
    DagsterRunStatus, DefaultSensorStatus, RunRequest, RunsFilter, SensorEvaluationContext, SensorResult, SkipReason,
    sensor,
)

from greenai_dagster.core import engine, pipeline
from greenai_dagster.core.engine import RunState
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.gpu_pool import ensure_gpu_pool
from greenai_dagster.instance import CANDIDATE_TAG, EXPERIMENT_TAG, RUN_KEY_TAG, SOURCE_TAG
from greenai_dagster.jobs import STAGE_JOBS
from greenai_dagster.observations import record_finish
from greenai_dagster.partitions import candidate_partition, partition_requests
from greenai_dagster.resources import GpuResource, ResultsStoreResource

FAILED = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
FINISHED = FAILED | {DagsterRunStatus.SUCCESS}

# Dagster's tag for why a run failed. These reasons mean the run was interrupted (its process killed, its
# worker restarted, it never started), not that its steps failed: such a run is requested again, as
# `greenai run` resumes a killed run, at most MAX_RERUNS times per run key. Without this, a `dagster dev`
# stopped mid-candidate (on the lent H100, 2026-12-07) cost the experiment that episode, recorded as failed.
FAILURE_REASON_TAG = "dagster/failure_reason"
INTERRUPTED = {"UNEXPECTED_TERMINATION", "RUN_WORKER_RESTART", "START_TIMEOUT"}
MAX_RERUNS = 2


def _runs(context: SensorEvaluationContext, run_key: str) -> list:
    """The runs requested under the engine's `run_key`, newest first (a rerun carries the same tag)."""
    return list(context.instance.get_runs(filters=RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=MAX_RERUNS + 2))


def run_state(context: SensorEvaluationContext, run_key: str) -> RunState | None:
    """The engine's view of the latest run requested under `run_key` (None: never requested, or interrupted
    with reruns left, which the engine then requests again)."""
    runs = _runs(context, run_key)
    if not runs:
        return None
    status, reason = runs[0].status, runs[0].tags.get(FAILURE_REASON_TAG)
    if status == DagsterRunStatus.SUCCESS:
        return RunState("success")
    if status in FAILED:
        if status == DagsterRunStatus.FAILURE and reason in INTERRUPTED and len(runs) <= MAX_RERUNS:
            return None
        return RunState("failed", f"run {status.value}" + (f" ({reason})" if reason else ""))
    return RunState("in_flight")


def dagster_run_key(context: SensorEvaluationContext, run_key: str) -> str:
    """The RunRequest's run key: the engine's, with `#rerun<n>` for a rerun (the daemon drops a request
    whose run key it has seen)."""
    earlier = len(_runs(context, run_key))
    return run_key if not earlier else f"{run_key}#rerun{earlier}"


def _step(context: SensorEvaluationContext, store, name: str, device: str = "cpu"):
    """One experiment's next action: (run requests, experiment partitions to add, a note)."""
    action = engine.next_action(store, name, lambda key: run_state(context, key), device)
    if action.kind == "wait":
        return [], [], action.note
    final = engine.apply(store, action)
    if action.kind == "finish":
        if final is not None:
            config = open_experiment(store, name).config
            record_finish(context.instance, name, final, pipeline.wants_full_set(config, device))
        return [], [], action.note
    if action.kind == "fail":
        return [], [], action.note
    tags = {EXPERIMENT_TAG: name, SOURCE_TAG: "sensor", RUN_KEY_TAG: action.run_key}
    partition_key = action.partition_key
    if action.kind == "candidate":   # the engine's candidate key -> the (experiment, strategy) partition
        tags[CANDIDATE_TAG] = action.partition_key
        partition_key = candidate_partition(action.partition_key)
    request = RunRequest(job_name=action.job_name, partition_key=partition_key,
                         run_key=dagster_run_key(context, action.run_key), tags=tags)
    return [request], [name] if action.kind == "setup" else [], action.note


@sensor(minimum_interval_seconds=int(os.environ.get("GREENAI_SENSOR_INTERVAL_S", "15")), default_status=DefaultSensorStatus.RUNNING,
        jobs=list(STAGE_JOBS.values()),
        description="Asks the coordinator for each sensor-driven experiment's next candidate and runs it.")
def coordinator_sensor(context: SensorEvaluationContext, store: ResultsStoreResource, gpu: GpuResource):
    results_store = store.get()
    ensure_gpu_pool(context.instance, gpu.gpu_count())   # one GPU step per GPU (pool `gpu`)
    requests, experiment_keys, candidate_keys, notes = [], [], [], []
    for name in results_store.active_experiments():
        if open_experiment(results_store, name).config.driver != "sensor":
            continue  # `greenai run` drives its own experiments in-process
        runs, new_experiments, note = _step(context, results_store, name, gpu.device_name())
        requests += runs
        experiment_keys += new_experiments
        candidate_keys += [r.tags[CANDIDATE_TAG] for r in runs if CANDIDATE_TAG in r.tags]
        notes.append(note)
    if not requests and not notes:
        return SkipReason("no sensor-driven experiment is active")
    context.log.info("; ".join(notes))
    return SensorResult(run_requests=requests,
                        dynamic_partitions_requests=partition_requests(experiment_keys, candidate_keys))
