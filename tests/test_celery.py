"""Several workers through Dagster's Celery executor (issue 14): redis-server on 127.0.0.1 as broker and
result backend, two Celery workers, four candidates of a tiny experiment. Both workers must do work
and every result must land in the store. In the default run (issue 14: the Celery test passes in CI): 5.0 min
on this 2-core machine beside another benchmark; scripts/setup.sh installs redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed (scripts/setup.sh installs it)")]

REPO = Path(__file__).resolve().parents[1]
FAST_EVAL = {"limit_per_task": 4, "full_set_for_frontier": False, "batch_size": 4, "fidelity_tokens": 512,
             "prompt_len": 16, "new_tokens": 4, "latency_repeats": 2, "throughput_batch_size": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        assert proc.poll() is None, f"{proc.args[:4]} exited: {path.read_text(errors='replace')[-2000:]}"
        assert time.time() < deadline, f"no '{text}' in {path}: {path.read_text(errors='replace')[-2000:]}"
        time.sleep(0.5)


@pytest.fixture()
def broker(tmp_path):
    """redis-server on a free 127.0.0.1 port, persistence off, in a temp dir; stopped afterwards."""
    port = _free_port()
    log = tmp_path / "redis.log"
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                             "--save", "", "--appendonly", "no", "--logfile", str(log)])
    _wait_for(log, "Ready to accept connections", proc, 30)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture()
def workers(broker, tmp_path, data_root):
    """Two Celery workers (solo pool: one task at a time each) reading the broker from a
    dagster_celery_config module, as `dagster-celery worker start -y` writes one."""
    conf = tmp_path / "celeryconf"
    conf.mkdir()
    (conf / "dagster_celery_config.py").write_text(f"broker_url = '{broker}/0'\nresult_backend = '{broker}/1'\n")
    procs = []
    for name in ("w1", "w2"):
        log = tmp_path / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{conf}", "GREENAI_WORKER_NAME": name,
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker", "-Q", "dagster", "--pool=solo",
             "--prefetch-multiplier=1", "-n", f"{name}@%h", "--loglevel=INFO", "-f", str(log)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        _wait_for(log, "ready.", proc, 120)
    yield broker
    for proc, _ in procs:
        proc.terminate()
    for proc, _ in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _tiny_experiment(name: str, tiny_model_dir, tiny_benchmark, data_root) -> list[str]:
    """Set up, baseline and four registered candidates (the coordinator's part, done here by hand)."""
    from greenai_dagster.core import pipeline
    from greenai_dagster.core.benchmarks import resolve_source
    from greenai_dagster.core.config import ExperimentConfig
    from greenai_dagster.core.methods import get_method
    from greenai_dagster.core.paths import duckdb_path
    from greenai_dagster.core.store import ResultsStore
    from greenai_dagster.core.strategy import Step, Strategy

    config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=4, name=name,
                              output_dir=str(data_root / "experiments"), eval=FAST_EVAL)
    config = config.model_copy(update={"benchmark_source": resolve_source(config.dataset, config.benchmark_source)})
    store = ResultsStore(duckdb_path())
    store.create_experiment(name, config.model, config.dataset, config.model_dump(), config.output_dir)
    pipeline.build_model_spec(store, name)
    pipeline.evaluate_baseline(store, name)
    keys = []
    choices = [("rtn", {"bits": 4}), ("rtn", {"bits": 8}), ("int8", {}), ("magnitude", {})]
    for episode, (method, overrides) in enumerate(choices, start=1):
        params = {**get_method(method).Params().model_dump(), **overrides}
        step = Step(method, params)
        strategy = Strategy(Strategy(strategy_id="", steps=[step]).label(), [step], reasoning="celery test")
        key = pipeline.candidate_key(name, strategy.strategy_id)
        store.add_strategy(key, name, episode, strategy.to_json())
        keys.append(key)
    return keys


def test_four_candidates_spread_over_two_celery_workers(workers, tiny_model_dir, tiny_benchmark, data_root):
    from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

    from greenai_dagster.celery_sweep import candidate_sweep
    from greenai_dagster.core.paths import duckdb_path
    from greenai_dagster.core.store import ResultsStore

    name = "celery_exp"
    keys = _tiny_experiment(name, tiny_model_dir, tiny_benchmark, data_root)
    assert len(set(keys)) == 4
    run_config = {"execution": {"config": {"broker": f"{workers}/0", "backend": f"{workers}/1"}},
                  "ops": {"pending_candidates": {"config": {"experiment": name}},
                          "sweep_frontier": {"config": {"experiment": name}}}}
    instance = DagsterInstance.get()
    with execute_job(reconstructable(candidate_sweep), instance=instance, run_config=run_config) as result:
        assert result.success
        done = result.output_for_node("compress_and_benchmark")
        frontier = result.output_for_node("sweep_frontier")
        engine_workers = {
            (e.event_specific_data.metadata.get("Celery worker").value)
            for e in result.all_events if e.event_type == DagsterEventType.ENGINE_EVENT
            and e.event_specific_data.metadata.get("Celery worker") is not None}
    assert sorted(d["candidate_key"] for d in done.values()) == sorted(keys)
    assert {d["worker"] for d in done.values()} == {"w1", "w2"}, done          # both workers did work
    assert len({d["pid"] for d in done.values()}) == 2 and os.getpid() not in {d["pid"] for d in done.values()}
    assert {w.split("@")[0] for w in engine_workers} == {"w1", "w2"}, engine_workers
    assert frontier["candidates"] == 4 and frontier["frontier"]
    store = ResultsStore(duckdb_path())
    rows = {r["candidate_key"]: r for r in store.results(name)}
    assert set(rows) == set(keys)                                              # every result landed
    assert all(r["latency_ms"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows.values())
    assert {s["candidate_key"]: s["status"] for s in store.strategies(name)} == dict.fromkeys(keys, "done")
