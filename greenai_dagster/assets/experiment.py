"""Experiment-level assets: the model spec and the baseline (evaluated once, reused by every episode)."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from greenai_dagster.assets._errors import core_step
from greenai_dagster.core import pipeline
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.reporting import report
from greenai_dagster.partitions import experiments_partitions
from greenai_dagster.resources import GpuResource, ResultsStoreResource


@asset(partitions_def=experiments_partitions, group_name="experiment")
def model_spec(context: AssetExecutionContext, store: ResultsStoreResource, gpu: GpuResource) -> MaterializeResult:
    """Family, size, layer widths, memory needs and valid group sizes of the experiment's model, and the
    methods its architecture cannot take (with the reason; a config asking for one fails here, E005)."""
    with core_step(context):
        results_store = store.get()
        spec = pipeline.build_model_spec(results_store, open_experiment(results_store, context.partition_key),
                                         device=gpu.device_name())
    return MaterializeResult(metadata={
        "model": spec.model_name, "family": spec.model_family, "parameters": spec.parameter_count_exact,
        "size_gb": spec.model_size_gb, "min_vram_gb": spec.min_vram_gb, "recommended_vram_gb": spec.recommended_vram_gb,
        "valid_group_sizes": MetadataValue.json(spec.valid_group_sizes),
        "preferred_methods": MetadataValue.json(spec.preferred_methods),
        "architecture": spec.architecture, "linear_layer_types": MetadataValue.json(spec.linear_layer_types),
        "unsupported_methods": MetadataValue.json(spec.unsupported_methods),
    })


@asset(partitions_def=experiments_partitions, group_name="experiment", deps=[model_spec], pool="gpu")
def baseline(context: AssetExecutionContext, store: ResultsStoreResource, gpu: GpuResource) -> MaterializeResult:
    """The uncompressed model's metrics (computed once per experiment, then reused)."""
    with core_step(context):
        results_store = store.get()
        row = gpu.run(pipeline.evaluate_baseline, results_store, open_experiment(results_store, context.partition_key))
        facts = results_store.facts(context.partition_key)      # written by the step just run
    return MaterializeResult(metadata={**_metrics_metadata(row), "benchmark": facts.get("benchmark_note", ""),
                                       "frontier_objectives": MetadataValue.json(facts.get("objectives", []))})


def _metrics_metadata(row: dict) -> dict:
    meta = dict(report.metrics_summary(row))
    meta["checkpoint"] = MetadataValue.path(str(row["checkpoint_path"]))
    return meta
