"""Candidates of one experiment spread over Celery workers (dagster-celery): the several-machines path.

`candidate_sweep` fans out one step per registered, unfinished candidate of an experiment (Dagster's
dynamic outputs); each step compresses and benchmarks its candidate (`core.pipeline`, the same
functions the assets call), and a last step updates the frontier. Run with `celery_executor`, each
step is a Celery task that any worker listening on the broker's `dagster` queue picks up; the workers
need the same Dagster instance (Postgres across machines: deploy/dagster.yaml), the same data root
(`GREENAI_DATA` on shared storage) and this package. The latency probe inside each step still takes
its device's slot (`core.machine.device_slot`), so two workers on one machine do not measure each other.

    celery -A dagster_celery.app worker -Q dagster --pool=solo   # per worker, with a dagster_celery_config
    run config: execution: {config: {broker: redis://HOST:6379/0, backend: redis://HOST:6379/1}},
                ops: {pending_candidates: {config: {experiment: NAME}}}

Which worker did a step is on the step's output (`worker`, `pid`, `host`, `device`) and in Dagster's own
"Executing steps ... in celery worker" engine event (tests/dagster/test_celery.py).

Resources: the ops take the deployment's `store` and `gpu` (resources.resources_for), like the assets, so a
Celery sweep writes to the store a `cluster` deployment names (not a file path found again here) and each
step compresses and evaluates on the device the *worker's* `GpuResource` names: the job carries the
resources itself because each worker rebuilds the job from this module (`reconstructable`), and resolves
`auto` on its own machine. On a worker with several GPUs the step runs through `GpuResource.run`, which
claims one GPU no other step holds (core.machine.gpu_claim) for the whole candidate.

Through the engine: the candidates a sweep runs are the engine's own candidate actions
(`engine.candidate_actions`, the same list `next_action` takes one at a time), all fanned out at once;
each step does what a candidate action's run does (the pipeline pair the `candidate` job's assets call),
and the last step is the frontier action's work (`pipeline.update_frontier`). What a sweep does not take
from `next_action` is its serial pacing (`wait` while any candidate is in flight) and its decisions: a
sweep decides nothing, it runs what is already registered (pipeline.experiment_with_chosen_candidates, the
benchmarks). A candidate that failed before is not run again, as in `next_action`.
"""


import os
import re
import socket

from dagster import DynamicOut, DynamicOutput, OpExecutionContext, job, op
from dagster_celery import celery_executor

from greenai_dagster.core import engine, pipeline
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.storage.store import ResultsStore
from greenai_dagster.resources import GpuResource, ResultsStoreResource, resources_for


@op(out=DynamicOut(str), config_schema={"experiment": str})
def pending_candidates(context: OpExecutionContext, store: ResultsStoreResource):
    """One output per candidate of the experiment not yet done (a rerun resumes the rest)."""
    for action in engine.candidate_actions(store.get(), context.op_config["experiment"]):
        key = action.partition_key
        yield DynamicOutput(key, mapping_key=re.sub(r"[^A-Za-z0-9_]", "_", key))


def compress_then_benchmark(store: ResultsStore, key: str, device: str) -> dict:
    """The candidate's two pipeline steps on one device: called through `GpuResource.run`, so on a machine
    with several GPUs both run on the one GPU claimed for this call (a single claim for the whole candidate,
    rather than one per step as the two assets take, since a sweep step is one unit of work)."""
    exp = open_experiment(store, pipeline.experiment_of(key))
    pipeline.compress_candidate(store, exp, key, device=device)
    return pipeline.benchmark_candidate(store, exp, key, device=device)


@op
def compress_and_benchmark(context: OpExecutionContext, key: str, store: ResultsStoreResource,
                           gpu: GpuResource) -> dict:
    """Compress and evaluate one candidate wherever this step runs, on the device this worker's `gpu`
    resource names; returns where that was."""
    row = gpu.run(compress_then_benchmark, store.get(), key)
    where = {"candidate_key": key, "host": socket.gethostname(), "pid": os.getpid(),
             "worker": os.environ.get("GREENAI_WORKER_NAME", ""), "device": row["conditions"].get("device"),
             "latency_ms": row["latency_ms"],
             "probe_slot_wait_s": (row["conditions"].get("device_slot_wait_s") or {}).get("probe")}
    context.log.info(f"{key} done by {where['worker'] or where['host']} (pid {where['pid']}) on {where['device']}")
    return where


@op(config_schema={"experiment": str})
def sweep_frontier(context: OpExecutionContext, done: list[dict], store: ResultsStoreResource) -> dict:
    """The experiment's frontier over every result, once all candidates are in."""
    results_store = store.get()
    summary = pipeline.update_frontier(results_store, open_experiment(results_store, context.op_config["experiment"]))
    return {"candidates": len(done), "frontier": [m["candidate_key"] for m in summary.members]}


# resources on the job itself (Definitions keeps a job's own): a Celery worker rebuilds this job from the
# module, and its steps need the deployment's store and this worker's device there too
@job(executor_def=celery_executor, resource_defs=resources_for())
def candidate_sweep():
    sweep_frontier(pending_candidates().map(compress_and_benchmark).collect())
