"""After `greenai run` on a lent GPU (benchmarks/gpu/first_command.sh): where its time went.

    python benchmarks/gpu/first_command_report.py EXPERIMENT OUT.json

The end-to-end report (end_to_end_report.py) on this one experiment, with the Dagster instance of the
environment's DAGSTER_HOME: every row's stage seconds, the runtime and kernel that measured latency and
memory, J/token and its source; every run with its status, wall time and steps. `result_rows` and
`dagster_runs` are also what benchmarks/gpu/llama8b_pipeline.py reads an experiment with.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def result_rows(name: str) -> list[dict]:
    """Every stored row of experiment `name` (baseline first), reduced to where its time and memory went."""
    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.core.storage.store import ResultsStore

    store = ResultsStore(duckdb_path())
    rows = []
    for r in store.results(name, include_baseline=True):
        c = r.get("conditions") or {}
        rows.append({
            "strategy_id": r.get("strategy_id"), "status": r.get("status"), "degraded": r.get("degraded"),
            "is_pareto": r.get("is_pareto"), "kl_divergence": r.get("kl_divergence"), "accuracy": r.get("accuracy"),
            "ppl_ratio": r.get("ppl_ratio"), "latency_ms": r.get("latency_ms"), "prefill_ms": r.get("prefill_ms"),
            "memory_gb": r.get("memory_gb"), "model_size_gb": r.get("model_size_gb"),
            "energy_j_per_token": r.get("energy_j_per_token"), "energy_source": c.get("energy_source"),
            "runtime": c.get("runtime"), "kernel": c.get("kernel"), "device": c.get("device"),
            "runtime_fallback": c.get("runtime_fallback"), "quality_runtime": c.get("quality_runtime"),
            "load_time_s": r.get("load_time_s"), "compression_time_s": r.get("compression_time_s"),
            "eval_time_s": r.get("eval_time_s"), "eval_seconds": c.get("seconds"),
            "gpu_peak_gb": c.get("gpu_peak_gb"), "gpu_start_gb": c.get("gpu_start_gb"),
            "gpu_peak_source": c.get("gpu_peak_source"),
            "memory_source": c.get("memory_source"), "checkpoint_path": r.get("checkpoint_path"),
            "co2_grams": r.get("co2_grams"), "conditions_energy_error": c.get("energy_error"),
        })
    return rows


def dagster_runs(name: str) -> list[dict]:
    """Every Dagster run of experiment `name` (the environment's DAGSTER_HOME), oldest first."""
    from dagster import DagsterInstance

    return run_records(DagsterInstance.get(), name)


from end_to_end_report import main, run_records  # noqa: E402 - a sibling script, not a package

if __name__ == "__main__":
    main([sys.argv[2], "--experiment", sys.argv[1]])
