"""The experiment's Pareto frontier over its own candidates' benchmark results (`SAME_EXPERIMENT`: frontier E
depends on the candidate partitions (E, *) only, partitions.py)."""

from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from greenai_dagster.api import links
from greenai_dagster.assets._errors import core_step
from greenai_dagster.assets.candidates import benchmark_result
from greenai_dagster.core import pipeline
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.reporting import frontier_text
from greenai_dagster.partitions import SAME_EXPERIMENT, experiments_partitions
from greenai_dagster.resources import GpuResource, ResultsStoreResource


@asset(partitions_def=experiments_partitions, group_name="frontier",
       deps=[AssetDep(benchmark_result, partition_mapping=SAME_EXPERIMENT)])
def pareto_frontier(context: AssetExecutionContext, store: ResultsStoreResource) -> MaterializeResult:
    """Non-dominated set over the experiment's objectives (default: KL divergence, accuracy, latency, memory,
    size; core/search/objectives.py) among candidates that pass the quality gate; hypervolume (explained), best per
    objective, the experiment's status (the termination reason once it ends: also recorded as an observation)."""
    with core_step(context):
        results_store = store.get()
        name = context.partition_key
        exp = open_experiment(results_store, name)
        summary = pipeline.update_frontier(results_store, exp)
        experiment = results_store.experiment(name) or {}
        folder = exp.folder
        chart_file = MetadataValue.path(str(folder / "pareto_visualization.html"))
        chart_url = links.chart_url(name)      # with GREENAI_API_URL: served by `greenai serve`, one click opens it
        served = {"pareto_api": MetadataValue.url(links.pareto_url(name))} if chart_url else {}
        return MaterializeResult(metadata={
            "frontier_size": len(summary.members), "hypervolume": round(summary.hypervolume, 4),
            "hypervolume_explained": frontier_text.hypervolume_text(summary),
            "termination_reason": experiment_status(experiment, len(results_store.results(name))),
            "objectives": MetadataValue.json({k: ("max" if v else "min") for k, v in summary.objectives.items()}),
            "benchmark": exp.facts.get("benchmark_note", ""),
            "best_per_objective": MetadataValue.json(frontier_text.best_per_objective(summary)),
            "frontier": MetadataValue.md(frontier_text.frontier_markdown(summary, results_store.baseline(name))),
            "chart": MetadataValue.url(chart_url) if chart_url else chart_file,
            "chart_file": chart_file,
            "pareto_frontier_json": MetadataValue.path(str(folder / "pareto_frontier.json")),
            **served,
        })


def experiment_status(experiment: dict, episodes_done: int) -> str:
    """The termination reason of a finished experiment; for one still running, how far it is."""
    if isinstance(experiment.get("termination_reason"), str):
        return experiment["termination_reason"]
    episodes = (experiment.get("config") or {}).get("episodes", "?")
    return f"running: {episodes_done} of {episodes} episodes done (the reason is recorded when it ends)"


@asset(partitions_def=experiments_partitions, group_name="frontier", deps=[pareto_frontier], pool="gpu",
       description="The baseline and each final frontier member scored on the benchmark's full set (the search "
                   "used the stratified proxy); rows gain accuracy_full, and the frontier files show both figures. "
                   "Never materialized? " + frontier_text.FULL_SET_WHEN,
       metadata={"materialized_when": frontier_text.FULL_SET_WHEN})
def frontier_full_evaluation(context: AssetExecutionContext, store: ResultsStoreResource,
                             gpu: GpuResource) -> MaterializeResult:
    with core_step(context):
        results_store = store.get()
        rows = gpu.run(pipeline.evaluate_frontier_full_set, results_store,
                       open_experiment(results_store, context.partition_key))
    table = "| strategy | proxy accuracy | full-set accuracy | full-set time s |\n|---|---|---|---|\n" + "".join(
        f"| {r['strategy_id']} | {r['accuracy']:.3f} | {r['accuracy_full']:.3f} | {r['full_eval_time_s'] or 0:.0f} |\n"
        for r in rows)
    return MaterializeResult(metadata={"models": len(rows), "full_set": MetadataValue.md(table)})
