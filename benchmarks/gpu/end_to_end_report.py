"""After runs on a lent GPU: where each experiment's time went, what each candidate measured, who decided.

    python benchmarks/gpu/end_to_end_report.py OUT.json --experiment NAME[:DAGSTER_HOME[:LABEL]] ... \
        [--gpu TEXT] [--ui-launch FILE] [--concurrent "a b c d"]

Reads the results store of GREENAI_DATA (every row's stage seconds with evaluation's split, the runtime and
kernel that measured latency and memory, J/token and its source, KL, accuracy, degraded / frontier; every
strategy with its status and who decided it) and each experiment's Dagster instance (DAGSTER_HOME given per
experiment, else the environment's: every run of the experiment with its status, wall time and steps), and
writes one JSON document; prints a short table. `end_to_end.sh run-e2e` writes `gpu_end_to_end.json`
(kept as benchmarks/results/gpu_end_to_end.json); `first_command_report.py` is this module on one experiment.

Who decided an episode: an `llm` experiment's episode the planner decided after the LLM failed carries the
reasoning prefix `[planner fallback: E00N]` (core/decide.py `decide_or_fall_back`, which also counts them
in the experiment's facts, `coordinator_fallbacks`); every other episode was decided by the configured
coordinator.

With `--concurrent`, the experiments ran side by side on one GPU: the note says so and is written into each
experiment's facts (`measurement_context`), so its timings are read as taken under contention (latency,
memory and energy probes still ran alone: they hold the device's exclusive slot, core/machine/device_slot.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

FALLBACK_PREFIX = "[planner fallback"
EXTRAPOLATE_TO = 10


def row_record(r: dict) -> dict:
    """One results row (baseline or candidate): its stage seconds, measurements and where they were taken."""
    c = r.get("conditions") or {}
    if isinstance(c, str):
        c = json.loads(c)
    seconds = c.get("seconds") or {}
    stages = [r.get("load_time_s"), r.get("compression_time_s"), r.get("eval_time_s")]
    return {
        "episode": r.get("episode"), "strategy_id": r.get("strategy_id"), "is_baseline": bool(r.get("is_baseline")),
        "methods": r.get("methods"),
        "seconds": {"load": r.get("load_time_s"), "compress": r.get("compression_time_s"),
                    "evaluate": r.get("eval_time_s"), "evaluate_fidelity": seconds.get("fidelity"),
                    "evaluate_accuracy": seconds.get("accuracy"), "evaluate_latency_probe": seconds.get("latency_probe"),
                    "full_set": r.get("full_eval_time_s"),
                    "total": round(sum(s for s in stages if s is not None), 1)},
        "device": c.get("device"), "runtime": c.get("runtime"), "kernel": c.get("kernel"),
        "runtime_fallback": c.get("runtime_fallback"), "latency_path": c.get("latency_path"),
        "quality_runtime": c.get("quality_runtime"),
        "latency_ms_per_token": r.get("latency_ms"), "prefill_ms": r.get("prefill_ms"),
        "throughput_tokens_per_s": r.get("throughput_tokens_per_s"),
        "memory_gb": r.get("memory_gb"), "memory_source": c.get("memory_source"), "model_size_gb": r.get("model_size_gb"),
        "energy_j_per_token": r.get("energy_j_per_token"), "energy_source": c.get("energy_source"),
        "energy_error": c.get("energy_error"), "energy_window": c.get("energy_window"),
        "probe_seconds": c.get("probe_seconds"),
        "kl_divergence": r.get("kl_divergence"), "kl_stderr": r.get("kl_stderr"), "top1_agreement": r.get("top1_agreement"),
        "ppl_ratio": r.get("ppl_ratio"), "accuracy": r.get("accuracy"), "accuracy_stderr": r.get("accuracy_stderr"),
        "accuracy_full": r.get("accuracy_full"),
        "degraded": r.get("degraded"), "degraded_reason": r.get("degraded_reason"), "is_pareto": r.get("is_pareto"),
        "load_average_1m": c.get("load_average_1m"), "device_slot_wait_s": c.get("device_slot_wait_s"),
        "gpu_peak_gb": c.get("gpu_peak_gb"), "gpu_start_gb": c.get("gpu_start_gb"),
    }


def decided_by(strategy: dict, coordinator: str) -> str:
    """`planner_fallback` where the planner stood in for a failed coordinator, else the configured coordinator."""
    reasoning = strategy.get("reasoning") or (strategy.get("strategy") or {}).get("reasoning") or ""
    return "planner_fallback" if reasoning.startswith(FALLBACK_PREFIX) else coordinator


def strategy_record(s: dict, coordinator: str) -> dict:
    body = s.get("strategy") or {}
    return {"episode": s.get("episode"), "strategy_id": s.get("strategy_id"), "status": s.get("status"),
            "error": s.get("error"), "decided_by": decided_by(s, coordinator),
            "steps": body.get("steps"), "reasoning": (s.get("reasoning") or body.get("reasoning") or "")[:400]}


def run_records(instance, name: str) -> list[dict]:
    """Every Dagster run tagged with the experiment: job, status, run key, wall seconds and each step's."""
    from dagster import RunsFilter

    runs = []
    for run in instance.get_runs(RunsFilter(tags={"greenai/experiment": name})):
        stats = instance.get_run_stats(run.run_id)
        steps = [{"step": s.step_key, "status": str(s.status), "seconds": round(s.end_time - s.start_time, 1)}
                 for s in instance.get_run_step_stats(run.run_id) if s.start_time and s.end_time]
        runs.append({"run_id": run.run_id, "job": run.job_name, "status": run.status.value,
                     "partition": run.tags.get("dagster/partition"), "run_key": run.tags.get("greenai/run"),
                     "source": run.tags.get("greenai/source"),
                     "seconds": round(stats.end_time - stats.start_time, 1) if stats.start_time and stats.end_time
                     else None, "started": stats.start_time, "ended": stats.end_time, "steps": steps})
    runs.sort(key=lambda r: r["started"] or 0)
    return runs


def extrapolate(runs: list[dict], rows: list[dict], episodes: int = EXTRAPOLATE_TO) -> dict:
    """What an experiment of `episodes` episodes would take, from this one's measured runs.

    From the Dagster runs: setup (spec + baseline) + `episodes` x the mean episode (its candidate run and
    the frontier run after it) + the full-set scoring run if there was one; wall time between runs (the
    driver's own work: the coordinator's decision) is added per episode as measured (first run's start to
    last run's end, minus the runs). From the rows alone (no runs recorded): the baseline's stages + `episodes`
    x the mean candidate's load + compress + evaluate. The mean episode hides which strategies run: an
    AutoRound episode costs several GPTQ ones, so a longer experiment's mix decides the real figure."""
    done = [r for r in runs if r["seconds"] is not None and r["status"] == "SUCCESS"]
    by_job: dict[str, list[float]] = {}
    for r in done:
        by_job.setdefault(r["job"], []).append(r["seconds"])
    candidates = by_job.get("candidate", [])
    result: dict = {"episodes": episodes}
    if candidates:
        setup = sum(by_job.get("setup", []))
        frontier = statistics.mean(by_job["frontier"]) if by_job.get("frontier") else 0.0
        full_set = sum(by_job.get("frontier_full_set", []))
        ended = [r for r in runs if r["started"] is not None and r["ended"] is not None]
        span = max(r["ended"] for r in ended) - min(r["started"] for r in ended)
        between = max(span - sum(r["seconds"] for r in ended), 0.0)
        per_between = between / max(len(candidates), 1)
        per_episode = statistics.mean(candidates) + frontier + per_between
        result["from_runs"] = {
            "seconds": round(setup + episodes * per_episode + full_set, 1), "setup_s": round(setup, 1),
            "mean_candidate_run_s": round(statistics.mean(candidates), 1), "mean_frontier_run_s": round(frontier, 1),
            "between_runs_per_episode_s": round(per_between, 1), "full_set_s": round(full_set, 1),
            "episodes_measured": len(candidates),
            "how": f"setup + {episodes} x (mean candidate run + mean frontier run + wall time between runs per "
                   "episode) + full-set run, from this experiment's Dagster run wall times"}
    baseline = [r for r in rows if r["is_baseline"]]
    measured = [r for r in rows if not r["is_baseline"] and r["seconds"]["total"]]
    if measured:
        base = baseline[0]["seconds"]["total"] if baseline else 0.0
        mean = statistics.mean(r["seconds"]["total"] for r in measured)
        result["from_rows"] = {
            "seconds": round(base + episodes * mean, 1), "baseline_s": base, "mean_episode_stages_s": round(mean, 1),
            "episodes_measured": len(measured),
            "how": f"baseline's load + evaluate + {episodes} x the mean candidate's load + compress + evaluate, "
                   "from the results rows (no orchestration, no decision time)"}
    return result


def experiment_record(store, name: str, instance=None, label: str | None = None) -> dict:
    """Everything the report says about one experiment; `instance`: its Dagster instance (None: no runs)."""
    record = store.experiment(name)
    if record is None:
        return {"experiment": name, "label": label, "missing": "no such experiment in the results store"}
    config = record.get("config") or {}
    coordinator = config.get("coordinator", "planner")
    rows = [row_record(r) for r in store.results(name, include_baseline=True)]
    strategies = [strategy_record(s, coordinator) for s in store.strategies(name)]
    facts = store.facts(name)
    runs = run_records(instance, name) if instance is not None else []
    decided = {who: sum(s["decided_by"] == who for s in strategies) for who in {s["decided_by"] for s in strategies}}
    ended = [r for r in runs if r["started"] is not None and r["ended"] is not None]
    return {
        "experiment": name, "label": label, "model": record.get("model"), "dataset": record.get("dataset"),
        "coordinator": coordinator, "driver": config.get("driver"), "llm_model": config.get("llm_model")
        if coordinator == "llm" else None,
        "status": record.get("status"), "termination_reason": record.get("termination_reason"),
        "episodes_asked": config.get("episodes"), "episodes_recorded": len(strategies),
        "decided_by": decided, "coordinator_fallbacks": facts.get("coordinator_fallbacks", 0),
        "coordinator_error": facts.get("coordinator_error"), "measurement_context": facts.get("measurement_context"),
        "wall_s": round(max(r["ended"] for r in ended) - min(r["started"] for r in ended), 1) if ended else None,
        "rows": rows, "strategies": strategies, "runs": runs,
        "extrapolated": extrapolate(runs, rows),
    }


def open_instance(home: str | None):
    from dagster import DagsterInstance

    if home is None:
        return DagsterInstance.get()
    return DagsterInstance.from_config(home) if Path(home).is_dir() else None


def gpu_name(given: str | None) -> str | None:
    if given:
        return given.strip()
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def print_table(document: dict) -> None:
    print(f"{'experiment':14s} {'ep':>3s} {'strategy':30s} {'who':9s} {'runtime':18s} {'ms/tok':>7s} {'GB':>6s} "
          f"{'J/tok':>7s} {'KL':>7s} {'acc':>5s} {'load':>5s} {'compr':>6s} {'eval':>6s} {'fid/acc/probe':>15s}")
    for e in document["experiments"]:
        who = {s["strategy_id"]: s["decided_by"] for s in e.get("strategies", [])}
        for r in e.get("rows", []):
            s = r["seconds"]
            print(f"{str(e.get('label') or e['experiment'])[:14]:14s} {str(r['episode']):>3s} "
                  f"{str(r['strategy_id'])[:30]:30s} {who.get(r['strategy_id'], '-')[:9]:9s} "
                  f"{str(r['runtime'])[:18]:18s} {r['latency_ms_per_token'] or 0:7.2f} {r['memory_gb'] or 0:6.3f} "
                  f"{_num(r['energy_j_per_token'], 7, 4)} {r['kl_divergence'] or 0:7.4f} {r['accuracy'] or 0:5.3f} "
                  f"{s['load'] or 0:5.1f} {s['compress'] or 0:6.1f} {s['evaluate'] or 0:6.1f} "
                  f"{s['evaluate_fidelity']}/{s['evaluate_accuracy']}/{s['evaluate_latency_probe']}")
        runs = e.get("runs", [])
        print(f"  {e['experiment']}: {e.get('status')} ({e.get('termination_reason')}), {len(runs)} runs, wall "
              f"{e.get('wall_s')} s, decided {e.get('decided_by')}, 10 episodes ~ "
              f"{(e.get('extrapolated') or {}).get('from_runs', {}).get('seconds')} s")


def _num(value, width: int, digits: int) -> str:
    """A figure for the console table; "-" where there is none (a null is not 0)."""
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}s}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--experiment", action="append", required=True, help="NAME[:DAGSTER_HOME[:LABEL]]")
    parser.add_argument("--gpu", default=None, help="the GPU as nvidia-smi names it (default: asked now)")
    parser.add_argument("--ui-launch", type=Path, default=None, help="end_to_end_ui.py's JSON")
    parser.add_argument("--concurrent", default=None, help="labels of the experiments that ran at once on one GPU")
    args = parser.parse_args(argv)

    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.core.storage.store import ResultsStore

    store = ResultsStore(duckdb_path())
    gpu = gpu_name(args.gpu)
    together = (args.concurrent or "").split()
    note = None
    if len(together) > 1:
        note = (f"{len(together)} experiments ({', '.join(together)}) ran concurrently on one GPU ({gpu}), with "
                "greenai llm-server on the CPU beside them: stage times are taken under contention; latency, "
                "memory and energy probes held the device's exclusive slot (core/machine/device_slot.py)")
    experiments = []
    for spec in args.experiment:
        name, home, label = (spec.split(":") + [None, None])[:3]
        if note and store.experiment(name) is not None:
            store.set_facts(name, {"measurement_context": note})
        instance = open_instance(home or None)
        experiments.append(experiment_record(store, name, instance, label))
    ui = None
    if args.ui_launch is not None and args.ui_launch.exists():
        ui = json.loads(args.ui_launch.read_text())
    document = {"written": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": gpu, "concurrency": note,
                "extrapolation_episodes": EXTRAPOLATE_TO, "experiments": experiments, "ui_launch": ui}
    args.out.write_text(json.dumps(document, indent=2, default=str))
    print_table(document)
    if ui:
        print(f"UI launch: run {ui.get('launch_run_id')}, {len(ui.get('runs', {}))} runs, finished {ui.get('finished')} "
              f"({ui.get('termination_reason')})")
    return document


if __name__ == "__main__":
    main()
