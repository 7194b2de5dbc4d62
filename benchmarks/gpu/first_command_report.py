"""After `greenai run` on a lent GPU (benchmarks/gpu/first_command.sh): where its time went.

    python benchmarks/gpu/first_command_report.py EXPERIMENT OUT.json

Reads the run's results store (every row: stage seconds, the runtime and kernel that measured latency
and memory, J/token and its source) and the Dagster instance (every run of the experiment with its
status and wall time, and each step's), and writes one JSON document; prints a short table.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


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
    """Every Dagster run of experiment `name` with its status and wall time, and each step's, oldest first."""
    from dagster import DagsterInstance, RunsFilter

    instance = DagsterInstance.get()
    runs = []
    for run in instance.get_runs(RunsFilter(tags={"greenai/experiment": name})):
        stats = instance.get_run_stats(run.run_id)
        steps = [{"step": s.step_key, "status": str(s.status), "seconds": round(s.end_time - s.start_time, 1)}
                 for s in instance.get_run_step_stats(run.run_id) if s.start_time and s.end_time]
        runs.append({"run_id": run.run_id, "job": run.job_name, "status": str(run.status),
                     "partition": run.tags.get("dagster/partition"), "run_key": run.tags.get("greenai/run"),
                     "seconds": round(stats.end_time - stats.start_time, 1) if stats.start_time and stats.end_time
                     else None, "started": stats.start_time, "steps": steps})
    runs.sort(key=lambda r: r["started"] or 0)
    return runs


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    rows, runs = result_rows(name), dagster_runs(name)
    document = {"experiment": name, "written": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "runs": runs}
    out.write_text(json.dumps(document, indent=2, default=str))
    print(f"{'strategy':34s} {'runtime':22s} {'ms/tok':>7s} {'GB':>6s} {'J/tok':>7s} {'load':>5s} {'compr':>6s} "
          f"{'eval':>6s} {'fid/acc/probe':>16s}")
    for r in rows:
        sec = r["eval_seconds"] or {}
        print(f"{str(r['strategy_id'])[:34]:34s} {str(r['runtime'])[:22]:22s} {r['latency_ms'] or 0:7.2f} "
              f"{r['memory_gb'] or 0:6.3f} {r['energy_j_per_token'] or 0:7.4f} {r['load_time_s'] or 0:5.1f} "
              f"{r['compression_time_s'] or 0:6.1f} {r['eval_time_s'] or 0:6.1f} "
              f"{sec.get('fidelity', 0)}/{sec.get('accuracy', 0)}/{sec.get('latency_probe', 0)}")
    for run in runs:
        print(f"run {run['job']:20s} {run['status']:20s} {run['seconds']} s  {run['run_key']}")


if __name__ == "__main__":
    main()
