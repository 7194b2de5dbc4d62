"""The experiment's Pareto frontier over every candidate's benchmark result."""

from dagster import AllPartitionMapping, AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from greenai_dagster.api import links
from greenai_dagster.assets.candidates import benchmark_result
from greenai_dagster.core import pipeline, report
from greenai_dagster.partitions import experiments_partitions
from greenai_dagster.resources import GpuResource, ResultsStoreResource


@asset(partitions_def=experiments_partitions, group_name="frontier",
       deps=[AssetDep(benchmark_result, partition_mapping=AllPartitionMapping())])
def pareto_frontier(context: AssetExecutionContext, store: ResultsStoreResource) -> MaterializeResult:
    """Non-dominated set over the experiment's objectives (default: KL divergence, accuracy, latency, memory,
    size; core/objectives.py) among candidates that pass the quality gate; hypervolume, best per objective."""
    results_store = store.get()
    name = context.partition_key
    summary = pipeline.update_frontier(results_store, name)
    folder = pipeline.experiment_dir(results_store, name)
    chart_file = MetadataValue.path(str(folder / "pareto_visualization.html"))
    chart_url = links.chart_url(name)      # with GREENAI_API_URL: served by `greenai serve`, one click opens it
    served = {"pareto_api": MetadataValue.url(links.pareto_url(name))} if chart_url else {}
    return MaterializeResult(metadata={
        "frontier_size": len(summary.members), "hypervolume": summary.hypervolume,
        "objectives": MetadataValue.json({k: ("max" if v else "min") for k, v in summary.objectives.items()}),
        "benchmark": results_store.facts(name).get("benchmark_note", ""),
        "best_per_objective": MetadataValue.json({k: v["strategy_id"] for k, v in summary.best_per_objective.items()}),
        "frontier": MetadataValue.md(report.frontier_markdown(summary, results_store.baseline(name))),
        "chart": MetadataValue.url(chart_url) if chart_url else chart_file,
        "chart_file": chart_file,
        "pareto_frontier_json": MetadataValue.path(str(folder / "pareto_frontier.json")),
        **served,
    })


@asset(partitions_def=experiments_partitions, group_name="frontier", deps=[pareto_frontier], pool="gpu")
def frontier_full_evaluation(context: AssetExecutionContext, store: ResultsStoreResource,
                             gpu: GpuResource) -> MaterializeResult:
    """The baseline and each final frontier member scored on the benchmark's full set (the search used
    the stratified proxy); rows gain accuracy_full, and the frontier files show both figures."""
    rows = gpu.run(pipeline.evaluate_frontier_full_set, store.get(), context.partition_key)
    table = "| strategy | proxy accuracy | full-set accuracy | full-set time s |\n|---|---|---|---|\n" + "".join(
        f"| {r['strategy_id']} | {r['accuracy']:.3f} | {r['accuracy_full']:.3f} | {r['full_eval_time_s'] or 0:.0f} |\n"
        for r in rows)
    return MaterializeResult(metadata={"models": len(rows), "full_set": MetadataValue.md(table)})
