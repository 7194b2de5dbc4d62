"""Candidate-level assets, partitioned experiment x strategy (partitions.py): the compressed checkpoint and its
benchmark. Each candidate depends on its own experiment's baseline only (`SAME_EXPERIMENT`); the steps get the
store's candidate key `<experiment>/<strategy_id>` from `candidate_key_of`."""

import math

from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetDep, AssetExecutionContext, MaterializeResult,
    MetadataValue, asset, asset_check,
)

from greenai_dagster.assets._errors import core_step
from greenai_dagster.assets.experiment import _metrics_metadata, baseline
from greenai_dagster.core import pipeline
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.pipeline import experiment_of
from greenai_dagster.partitions import SAME_EXPERIMENT, candidate_key_of, candidate_key_of_run, candidates_partitions
from greenai_dagster.resources import GpuResource, ResultsStoreResource


@asset(partitions_def=candidates_partitions, group_name="candidates", pool="gpu",
       deps=[AssetDep(baseline, partition_mapping=SAME_EXPERIMENT)])
def compressed_variant(context: AssetExecutionContext, store: ResultsStoreResource, gpu: GpuResource) -> MaterializeResult:
    """The compressed checkpoint on disk, the strategy that made it, compression time and energy."""
    with core_step(context):
        results_store, key = store.get(), candidate_key_of(context.partition_key)
        exp = open_experiment(results_store, experiment_of(key))
        info = gpu.run(pipeline.compress_candidate, results_store, exp, key)
    strategy = info["strategy"]
    return MaterializeResult(metadata={
        "strategy_id": strategy["strategy_id"], "methods": MetadataValue.json(strategy["steps"]),
        "reasoning": MetadataValue.md(strategy.get("reasoning") or "-"),
        "compression_time_s": info["compression_time_s"], "compression_energy_kwh": info["compression_energy_kwh"],
        "size_gb": info["size_gb"], "checkpoint": MetadataValue.path(info["checkpoint_path"]),
    })


@asset(partitions_def=candidates_partitions, group_name="candidates", deps=[compressed_variant], pool="gpu")
def benchmark_result(context: AssetExecutionContext, store: ResultsStoreResource, gpu: GpuResource) -> MaterializeResult:
    """Fidelity to the baseline (KL, top-1, perplexity ratio), accuracy with its interval and flips, latency,
    memory, size, compression ratio, energy and CO2, and the quality gate's verdict; one DuckDB row."""
    with core_step(context):
        results_store, key = store.get(), candidate_key_of(context.partition_key)
        exp = open_experiment(results_store, experiment_of(key))
        row = gpu.run(pipeline.benchmark_candidate, results_store, exp, key)
    return MaterializeResult(metadata=_metrics_metadata(row))


def plausibility_problems(store, candidate_key: str) -> list[str]:
    """What makes a stored result physically impossible: any NaN or +-inf in any number column (read in SQL,
    where NULL, meaning 'not measured', is not NaN), a required figure missing, accuracy and top-1 agreement
    outside [0, 1], KL < 0, a size/latency/memory/perplexity that is not positive."""
    row = store.result(candidate_key)
    if row is None:
        return ["no result row"]
    problems = [f"{name} is not finite (NaN or inf)" for name in store.non_finite(candidate_key)]
    for name, values in (("task_accuracy", row.get("task_accuracy")), ("task_chance", row.get("task_chance"))):
        for task, value in (values or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{name}[{task}] is {value}")
    required = ("accuracy", "kl_divergence", "top1_agreement", "ppl_ratio", "model_size_gb", "latency_ms",
                "memory_gb", "perplexity")
    for name in required:
        if row.get(name) is None and not any(p.startswith(f"{name} ") for p in problems):
            problems.append(f"{name} is missing")
    if problems:
        return problems
    for name in ("accuracy", "top1_agreement"):
        if not 0.0 <= row[name] <= 1.0:
            problems.append(f"{name} {row[name]} outside [0, 1]")
    if row["kl_divergence"] < 0:
        problems.append(f"kl_divergence {row['kl_divergence']} is negative")
    for name in ("model_size_gb", "latency_ms", "memory_gb", "perplexity", "ppl_ratio"):
        if row[name] <= 0:
            problems.append(f"{name} is {row[name]}")
    return problems


@asset_check(asset=benchmark_result, blocking=True)
def benchmark_result_is_plausible(context, store: ResultsStoreResource) -> AssetCheckResult:
    """Figures must be physically possible: every number finite (no NaN/inf anywhere), accuracy and top-1
    agreement in [0, 1], KL >= 0, positive size/latency/memory/perplexity. The candidate is the run's: Dagster
    tags a multi-partitioned run with each dimension's key (`dagster/partition/experiment`, `.../strategy`)."""
    candidate_key = candidate_key_of_run(context.run.tags)
    if not candidate_key:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata={"problem": "no partition"})
    with core_step(context):
        problems = plausibility_problems(store.get(), candidate_key)
    return AssetCheckResult(passed=not problems, severity=AssetCheckSeverity.ERROR,
                            metadata={"problems": MetadataValue.json(problems)})
