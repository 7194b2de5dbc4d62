"""Wall time of an 8-candidate sweep on 1 Celery worker vs 2, on this machine (issue 14's scale-out benchmark).

    python benchmarks/celery_workers.py [--candidates 8] [--workers 1,2]

The same path as tests/dagster/test_celery.py: Debian's redis-server on 127.0.0.1 as broker, `celery -A
dagster_celery.app worker` processes (solo pool, one task at a time each, 1 torch thread each), the
`candidate_sweep` job (greenai_dagster/celery_sweep.py) on Dagster's Celery executor. Each worker count
gets its own experiment over the same model, benchmark and 8 strategies (RTN 2/3/4/8 bits, INT8 dynamic,
magnitude 30/50 %, Wanda 50 %), its baseline measured before the clock starts. The model is the tests'
tiny Llama (2 layers, hidden 64, a 512-token BPE trained on the packaged corpus): the figures are the
orchestration and per-candidate fixed costs of the stack (process start-up, imports, model loading,
lm-eval, the runtime probe), not compute on a real model.

Where the time goes: per step, Dagster's STEP_START -> STEP_SUCCESS; per candidate, the stored
compression / load / evaluation seconds and how long its latency probe waited for the device's
exclusive slot (core/machine/device_slot.py: two workers on one machine must not measure each other).
Written to benchmarks/results/celery_workers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from greenai_dagster.celery_local import celery_workers, redis_broker

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
STRATEGIES = [("rtn", {"bits": 2}), ("rtn", {"bits": 3}), ("rtn", {"bits": 4}), ("rtn", {"bits": 8}),
              ("int8", {}), ("magnitude", {"sparsity": 0.3}), ("magnitude", {"sparsity": 0.5}),
              ("wanda", {"sparsity": 0.5})]
EVAL = {"limit_per_task": 4, "full_set_for_frontier": False, "batch_size": 4, "fidelity_tokens": 512,
        "prompt_len": 16, "new_tokens": 4, "latency_repeats": 2, "throughput_batch_size": 2}
ITEMS = [("2 + 2 =", ["4", "5"], 0), ("The sky is", ["green", "blue"], 1),
         ("Water freezes at zero degrees", ["Celsius", "Kelvin"], 0), ("The opposite of hot is", ["warm", "cold"], 1),
         ("A week has seven", ["days", "years"], 0), ("Python is a programming", ["snake", "language"], 1)]


def make_experiment(name: str, model_dir: Path, bench: Path, root: Path) -> list[str]:
    """Experiment, model spec, baseline, and the 8 registered candidates (the coordinator's part, by hand)."""
    from greenai_dagster.core import pipeline
    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.resources import open_store, resources_for

    config = ExperimentConfig(model=str(model_dir), dataset=str(bench), episodes=len(STRATEGIES), name=name,
                              output_dir=str(root / "experiments"), eval=EVAL)
    return pipeline.experiment_with_chosen_candidates(open_store(resources_for()), config, STRATEGIES,
                                                      "celery benchmark")


def run_sweep(name: str, broker: str) -> dict:
    from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

    from greenai_dagster.celery_sweep import candidate_sweep
    from greenai_dagster.resources import open_store, resources_for

    run_config = {"execution": {"config": {"broker": f"{broker}/0", "backend": f"{broker}/1"}},
                  "ops": {"pending_candidates": {"config": {"experiment": name}},
                          "sweep_frontier": {"config": {"experiment": name}}}}
    started = time.perf_counter()
    with execute_job(reconstructable(candidate_sweep), instance=DagsterInstance.get(), run_config=run_config) as result:
        wall = time.perf_counter() - started
        if not result.success:
            raise RuntimeError(f"the sweep {name} failed")
        done = result.output_for_node("compress_and_benchmark")
        starts, steps = {}, {}
        for entry in DagsterInstance.get().all_logs(result.run_id):   # event log entries carry the times
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif event.event_type == DagsterEventType.STEP_SUCCESS and event.step_key in starts:
                steps[event.step_key] = round(entry.timestamp - starts[event.step_key], 1)
    rows = {r["candidate_key"]: r for r in open_store(resources_for()).results(name)}
    candidates = []
    for d in done.values():
        row = rows[d["candidate_key"]]
        candidates.append({"candidate": d["candidate_key"].split("/", 1)[1], "worker": d["worker"],
                           "compression_s": round(row["compression_time_s"] or 0, 1),
                           "load_s": round(row.get("load_time_s") or 0, 1),
                           "evaluation_s": round(row["eval_time_s"] or 0, 1),
                           "probe_slot_wait_s": d["probe_slot_wait_s"]})
    step_total = sum(v for k, v in steps.items() if k.startswith("compress_and_benchmark"))
    return {"wall_s": round(wall, 1), "candidates": len(done), "step_s": steps,
            "candidate_steps_sum_s": round(step_total, 1), "per_candidate": candidates,
            "workers_used": sorted({d["worker"] for d in done.values()})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (scripts/setup.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="celery-bench-"))
    os.environ["GREENAI_DATA"] = str(work / "data")
    os.environ["DAGSTER_HOME"] = str(work / "data" / "dagster_home")
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True)
    (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import build_tiny_model    # the tests' tiny Llama, built the same way

    model_dir = build_tiny_model(work / "tiny-llama")
    bench = work / "tinymc.jsonl"
    bench.write_text("".join(json.dumps({"question": q, "choices": c, "gold": g}) + "\n" for q, c, g in ITEMS))

    runs = {}
    with redis_broker(work) as broker:
        for count in [int(w) for w in args.workers.split(",")]:
            name = f"celery_bench_{count}w"
            setup_started = time.perf_counter()
            make_experiment(name, model_dir, bench, work / "data")
            setup_s = time.perf_counter() - setup_started
            with celery_workers(count, broker, work, tag=f"-of-{count}"):
                runs[str(count)] = {"workers": count, "baseline_and_setup_s": round(setup_s, 1),
                                    **run_sweep(name, broker)}
            print(json.dumps({k: v for k, v in runs[str(count)].items() if k != "per_candidate"}), flush=True)
    result = {
        "what": "wall time of one candidate_sweep run (Dagster's Celery executor, redis broker) over 8 candidates "
                "of the tests' tiny Llama, on 1 vs 2 Celery workers (solo pool, 1 torch thread each)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "candidates": [f"{m} {o}" for m, o in STRATEGIES], "eval": EVAL, "runs": runs,
    }
    if "1" in runs and "2" in runs:
        result["speedup_2_vs_1"] = round(runs["1"]["wall_s"] / runs["2"]["wall_s"], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "celery_workers.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in result if k in ("speedup_2_vs_1",)}))


if __name__ == "__main__":
    main()
