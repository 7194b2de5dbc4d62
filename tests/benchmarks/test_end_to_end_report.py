"""benchmarks/gpu/end_to_end_report.py on rows written through the results store's own API: who decided each
episode (an LLM episode the planner took over is counted as a fallback), evaluation's split of its seconds,
and the 10-episode extrapolation (from the rows, and from Dagster run records)."""

from __future__ import annotations

import json
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))

import end_to_end_report as report  # noqa: E402 - a script beside the others, not a package

NAME = "e2e-report-test"


def _row(strategy_id: str, episode: int, baseline: bool, load: float, compress: float, evaluate: float) -> dict:
    conditions = {"device": "cuda", "runtime": "cuda_w4" if not baseline else "cuda_compiled", "kernel": "tinygemm",
                  "energy_source": "nvml", "seconds": {"fidelity": 1.5, "accuracy": 2.0, "latency_probe": 3.5}}
    return {"candidate_key": f"{NAME}/{strategy_id}", "experiment": NAME, "episode": episode,
            "strategy_id": strategy_id, "is_baseline": baseline, "latency_ms": 4.0, "memory_gb": 0.3,
            "energy_j_per_token": 0.02, "kl_divergence": 0.0 if baseline else 0.1, "accuracy": 0.5,
            "load_time_s": load, "compression_time_s": compress, "eval_time_s": evaluate, "conditions": conditions}


def test_the_report_counts_fallbacks_splits_seconds_and_extrapolates(data_root, tmp_path):
    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.core.storage.store import ResultsStore

    store = ResultsStore(duckdb_path())
    store.create_experiment(NAME, "smollm2-135m-instruct", "generated_mc",
                            {"coordinator": "llm", "episodes": 3, "driver": "cli"}, str(data_root / "experiments"))
    store.write_result(_row("baseline", 0, True, 2.0, 0.0, 8.0))
    for episode, reasoning in ((1, "w4 first: smallest"), (2, "[planner fallback: E005] int8 next")):
        sid = f"ep{episode:03d}_s{episode}"
        store.add_strategy(f"{NAME}/{sid}", NAME, episode, {"strategy_id": sid, "steps": [], "reasoning": reasoning})
        store.set_strategy_status(f"{NAME}/{sid}", "completed")
        store.write_result(_row(sid, episode, False, 1.0, 10.0 * episode, 7.0))
    store.set_facts(NAME, {"coordinator_fallbacks": 1})

    out = tmp_path / "report.json"
    document = report.main([str(out), "--experiment", f"{NAME}::a", "--gpu", "NVIDIA H100", "--concurrent", "a b"])
    assert json.loads(out.read_text())["gpu"] == "NVIDIA H100"
    [e] = document["experiments"]
    assert e["decided_by"] == {"llm": 1, "planner_fallback": 1} and e["coordinator_fallbacks"] == 1
    assert "2 experiments (a, b) ran concurrently" in e["measurement_context"]     # written into the facts
    assert store.facts(NAME)["measurement_context"] == e["measurement_context"]
    candidate = next(r for r in e["rows"] if r["strategy_id"] == "ep002_s2")
    assert candidate["seconds"]["total"] == 28.0 and candidate["seconds"]["evaluate_latency_probe"] == 3.5
    assert candidate["runtime"] == "cuda_w4" and candidate["energy_source"] == "nvml"
    # baseline 10 s + 10 x the mean candidate's stages (18 and 28 s)
    assert e["extrapolated"]["from_rows"]["seconds"] == 10.0 + 10 * 23.0


def test_the_extrapolation_from_runs_adds_the_time_between_runs_per_episode():
    runs = [{"job": "setup", "status": "SUCCESS", "seconds": 20.0, "started": 0.0, "ended": 20.0},
            {"job": "candidate", "status": "SUCCESS", "seconds": 30.0, "started": 22.0, "ended": 52.0},
            {"job": "frontier", "status": "SUCCESS", "seconds": 4.0, "started": 52.0, "ended": 56.0},
            {"job": "candidate", "status": "SUCCESS", "seconds": 50.0, "started": 58.0, "ended": 108.0},
            {"job": "frontier", "status": "SUCCESS", "seconds": 6.0, "started": 108.0, "ended": 114.0}]
    estimate = report.extrapolate(runs, [], episodes=10)["from_runs"]
    # 114 s spanned, 110 s in runs: 2 s between runs per episode; 20 + 10 x (40 + 5 + 2)
    assert estimate["between_runs_per_episode_s"] == 2.0 and estimate["seconds"] == 20.0 + 10 * 47.0
