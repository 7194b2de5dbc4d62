"""Candidates of one experiment spread over Celery workers (dagster-celery): the several-machines path.

`candidate_sweep` fans out one step per registered, unfinished candidate of an experiment (Dagster's
dynamic outputs); each step compresses and benchmarks its candidate (`core.pipeline`, the same
functions the assets call), and a last step updates the frontier. Run with `celery_executor`, each
step is a Celery task that any worker listening on the broker's `dagster` queue picks up; the workers
need the same Dagster instance (Postgres across machines: deploy/dagster.yaml), the same data root
(`GREENAI_DATA` on shared storage) and this package. The latency probe inside each step still takes
its device's slot (`core.device_slot`), so two workers on one machine do not measure each other.

    celery -A dagster_celery.app worker -Q dagster --pool=solo   # per worker, with a dagster_celery_config
    run config: execution: {config: {broker: redis://HOST:6379/0, backend: redis://HOST:6379/1}},
                ops: {pending_candidates: {config: {experiment: NAME}}}

Which worker did a step is on the step's output (`worker`, `pid`, `host`) and in Dagster's own
"Executing steps ... in celery worker" engine event (tests/test_celery.py).
"""


import os
import re
import socket

from dagster import DynamicOut, DynamicOutput, OpExecutionContext, job, op
from dagster_celery import celery_executor

from greenai_dagster.core import pipeline
from greenai_dagster.core.paths import duckdb_path
from greenai_dagster.core.store import ResultsStore


@op(out=DynamicOut(str), config_schema={"experiment": str})
def pending_candidates(context: OpExecutionContext):
    """One output per candidate of the experiment not yet done (a rerun resumes the rest)."""
    name = context.op_config["experiment"]
    for record in ResultsStore(duckdb_path()).strategies(name):
        if record["status"] != "done":
            key = record["candidate_key"]
            yield DynamicOutput(key, mapping_key=re.sub(r"[^A-Za-z0-9_]", "_", key))


@op
def compress_and_benchmark(context: OpExecutionContext, key: str) -> dict:
    """Compress and evaluate one candidate wherever this step runs; returns where that was."""
    store = ResultsStore(duckdb_path())
    pipeline.compress_candidate(store, key)
    row = pipeline.benchmark_candidate(store, key)
    where = {"candidate_key": key, "host": socket.gethostname(), "pid": os.getpid(),
             "worker": os.environ.get("GREENAI_WORKER_NAME", ""), "latency_ms": row["latency_ms"],
             "probe_slot_wait_s": (row["conditions"].get("device_slot_wait_s") or {}).get("probe")}
    context.log.info(f"{key} done by {where['worker'] or where['host']} (pid {where['pid']})")
    return where


@op(config_schema={"experiment": str})
def sweep_frontier(context: OpExecutionContext, done: list[dict]) -> dict:
    """The experiment's frontier over every result, once all candidates are in."""
    summary = pipeline.update_frontier(ResultsStore(duckdb_path()), context.op_config["experiment"])
    return {"candidates": len(done), "frontier": [m["candidate_key"] for m in summary.members]}


@job(executor_def=celery_executor)
def candidate_sweep():
    sweep_frontier(pending_candidates().map(compress_and_benchmark).collect())
