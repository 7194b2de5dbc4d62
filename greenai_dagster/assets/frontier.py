"""The experiment's Pareto frontier over every candidate's benchmark result."""

from dagster import AllPartitionMapping, AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from greenai_dagster.assets.candidates import benchmark_result
from greenai_dagster.core import pipeline
from greenai_dagster.partitions import experiments_partitions
from greenai_dagster.resources import ResultsStoreResource


@asset(partitions_def=experiments_partitions, group_name="frontier",
       deps=[AssetDep(benchmark_result, partition_mapping=AllPartitionMapping())])
def pareto_frontier(context: AssetExecutionContext, store: ResultsStoreResource) -> MaterializeResult:
    """Non-dominated set (accuracy max; latency, memory, size min), hypervolume, best per objective."""
    results_store = store.get()
    summary = pipeline.update_frontier(results_store, context.partition_key)
    folder = pipeline.experiment_dir(results_store, context.partition_key)
    table = "| strategy | accuracy | latency ms/token | memory GiB | size GiB | ratio |\n|---|---|---|---|---|---|\n" + "".join(
        f"| {m['strategy_id']} | {m['accuracy']:.3f} | {m['latency_ms']:.1f} | {m['memory_gb']:.3f} | "
        f"{m['model_size_gb']:.3f} | {m['compression_ratio']:.2f} |\n" for m in summary.members)
    return MaterializeResult(metadata={
        "frontier_size": len(summary.members), "hypervolume": summary.hypervolume,
        "frontier": MetadataValue.md(table),
        "chart": MetadataValue.path(str(folder / "pareto_visualization.html")),
        "pareto_frontier_json": MetadataValue.path(str(folder / "pareto_frontier.json")),
    })
