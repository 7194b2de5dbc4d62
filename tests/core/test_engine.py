"""One experiment engine (core/engine.py) executed by both drivers.

The acceptance test runs the same experiment twice on the tiny model with the offline planner: once as
a user does (`greenai run` in a subprocess, whose terminal output must carry no library noise), once
driven by `coordinator_sensor` ticks whose RunRequests are executed the way the daemon does (the named
job, the requested partition and tags). Both must decide the same strategies in the same order, end
with the same statuses and termination, score the same quality figures and the same frontier on the
quality columns (latency is measured, so it differs by noise and is left out of the comparison).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from greenai_dagster.core import engine
from greenai_dagster.core.engine import RunState
from greenai_dagster.core.reporting import report
from greenai_dagster.core.search.pareto import pareto_front
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.store import RESULT_COLUMNS, ResultsStore

from tests.conftest import REPO

ROOT = REPO
FAST_EVAL = {"limit_per_task": 4, "full_set_for_frontier": False, "batch_size": 4, "fidelity_tokens": 512,
             "prompt_len": 16, "new_tokens": 4, "latency_repeats": 2, "throughput_batch_size": 2}
QUALITY = {"kl_divergence": False, "model_size_gb": False, "accuracy": True}
LIBRARY_NOISE = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+ \| \w+ \| |\d+it/s\]|\d+%\|[█ ]|METRIC|Warning|WARNING")


# ---- the state machine on a hand-written store (no model runs) -------------------------------------------

def _row(name: str, sid: str, episode: int, kl: float = 0.01) -> dict:
    row = {c: None for c in RESULT_COLUMNS}
    row.update(candidate_key=f"{name}/{sid}", experiment=name, episode=episode, strategy_id=sid,
               is_baseline=episode == 0, accuracy=0.5, latency_ms=30.0 - episode, memory_gb=0.5, model_size_gb=0.25,
               task_accuracy={}, conditions={}, kl_divergence=0.0 if episode == 0 else kl, ppl_ratio=1.01,
               degraded=False)
    return row


@pytest.fixture()
def fresh(tmp_path, tiny_spec):
    store = ResultsStore(tmp_path / "db.duckdb")
    config = ExperimentConfig(model="tiny", name="e", output_dir=str(tmp_path), episodes=1,
                              eval={"full_set_for_frontier": True})
    store.create_experiment("e", "tiny", "d", config.model_dump(), str(tmp_path))
    return store, tmp_path, tiny_spec


def test_the_engine_walks_setup_candidate_frontier_full_set_finish(fresh):
    store, folder, spec = fresh
    runs: dict[str, RunState] = {}

    action = engine.next_action(store, "e", runs.get)
    assert (action.kind, action.job_name, action.partition_key, action.run_key) == ("setup", "setup", "e", "e:setup")
    runs["e:setup"] = RunState("in_flight")
    assert engine.next_action(store, "e", runs.get).kind == "wait"
    report.write_json(folder / "e" / "model_spec.json", spec.to_json())      # what the setup run writes
    store.write_result(_row("e", "baseline", 0))

    action = engine.next_action(store, "e", runs.get)
    assert action.kind == "candidate" and action.new and action.episode == 1
    assert action.partition_key == action.run_key == "e/ep001_gptq_w4g64_act" and action.job_name == "candidate"
    assert store.strategies("e") == []                   # deciding writes nothing; apply() commits to it
    engine.apply(store, action)
    assert [s["status"] for s in store.strategies("e")] == ["pending"]
    again = engine.next_action(store, "e", runs.get)     # decided, never launched: the same candidate again
    assert (again.kind, again.partition_key, again.new) == ("candidate", action.partition_key, False)
    runs[action.run_key] = RunState("in_flight")
    assert engine.next_action(store, "e", runs.get).kind == "wait"

    store.write_result(_row("e", "ep001_gptq_w4g64_act", 1))                 # what the candidate run writes
    store.set_strategy_status(action.partition_key, "done")
    runs[action.run_key] = RunState("success")
    frontier = engine.next_action(store, "e", runs.get)
    assert (frontier.kind, frontier.job_name, frontier.run_key) == ("frontier", "frontier", "e:frontier:1")
    store.write_frontier("e", [action.partition_key], 0.1, 1)

    full = engine.next_action(store, "e", runs.get)      # one episode asked for: the full set, then finish
    assert (full.kind, full.job_name, full.termination_reason) == ("full_set", "frontier_full_set",
                                                                    "max_episodes_reached")
    runs[full.run_key] = RunState("success")
    finish = engine.next_action(store, "e", runs.get)
    assert (finish.kind, finish.termination_reason, finish.job_name) == ("finish", "max_episodes_reached", None)
    final = engine.apply(store, finish)
    assert final["termination_reason"] == "max_episodes_reached"
    assert store.experiment("e")["status"] == "finished"


def test_a_failed_candidate_run_is_recorded_and_the_search_goes_on(fresh):
    store, folder, spec = fresh
    report.write_json(folder / "e" / "model_spec.json", spec.to_json())
    store.write_result(_row("e", "baseline", 0))
    first = engine.next_action(store, "e")
    engine.apply(store, first)
    failed = engine.next_action(store, "e", {first.run_key: RunState("failed", "E005: boom")}.get)
    assert (failed.kind, failed.error, failed.job_name) == ("fail", "E005: boom", None)
    engine.apply(store, failed)
    assert store.strategy(first.partition_key)["status"] == "failed"
    assert store.query(f"SELECT error FROM strategies WHERE candidate_key = '{first.partition_key}'"
                       ).iloc[0, 0] == "E005: boom"
    # one episode, spent on the failure: nothing to score, the experiment ends
    assert engine.next_action(store, "e").kind in ("full_set", "finish")


def test_a_failed_setup_ends_the_experiment_with_error(fresh):
    store, _, _ = fresh
    action = engine.next_action(store, "e", {"e:setup": RunState("failed", "E002: no model")}.get)
    assert (action.kind, action.termination_reason) == ("finish", "error")
    assert engine.apply(store, action) is None
    assert store.experiment("e")["termination_reason"] == "error"


def test_the_engine_does_not_import_dagster():
    code = ("import sys; import greenai_dagster.core.engine; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---- acceptance: `greenai run` and the sensor make the same experiment -----------------------------------

def _cli_run(data_root: Path, model: Path, benchmark: Path, name: str, episodes: int) -> subprocess.CompletedProcess:
    config = data_root / f"{name}.json"
    import json

    config.write_text(json.dumps({"eval": FAST_EVAL}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GREENAI_DATA": str(data_root),
           "DAGSTER_HOME": os.environ["DAGSTER_HOME"], "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "greenai_dagster.cli", "run", "-m", str(model), "-d", str(benchmark),
                           "-e", str(episodes), "-n", name, "-c", str(config), "-o", str(data_root / "experiments")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)


def _drive_with_the_sensor(store: ResultsStore, name: str) -> list:
    """Tick the sensor; execute each RunRequest as the daemon would (named job, partition, tags)."""
    from dagster import DagsterInstance, Definitions, build_sensor_context

    from greenai_dagster.definitions import ALL_ASSETS, ALL_CHECKS
    from greenai_dagster.jobs import STAGE_JOBS
    from greenai_dagster.resources import GpuResource, ResultsStoreResource
    from greenai_dagster.sensors import coordinator_sensor

    instance = DagsterInstance.get()
    resources = {"store": ResultsStoreResource(path=str(store.path)), "gpu": GpuResource(device="cpu")}
    stage_defs = Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=list(STAGE_JOBS.values()),
                             resources=resources)
    requested = []
    for _ in range(40):
        if store.experiment(name)["status"] != "active":
            return requested
        result = coordinator_sensor(build_sensor_context(instance=instance, resources=resources))
        if not hasattr(result, "run_requests"):
            continue
        for partitions in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(partitions.partitions_def_name, list(partitions.partition_keys))
        for request in result.run_requests:
            if request.tags["greenai/experiment"] != name:   # another test's sensor-driven experiment
                continue
            requested.append(request)
            stage_defs.resolve_job_def(request.job_name).execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
    raise AssertionError(f"the sensor did not finish {name} in 40 ticks")


def _quality(store: ResultsStore, name: str) -> dict:
    rows = store.results(name)
    front = {r["strategy_id"] for r in pareto_front([r for r in rows if not r["degraded"]], QUALITY)}
    return {r["strategy_id"]: (r["accuracy"], round(r["kl_divergence"], 6), round(r["model_size_gb"], 9),
                               r["degraded"], r["strategy_id"] in front) for r in rows}


def test_greenai_run_and_the_sensor_produce_the_same_experiment(data_root, tiny_model_dir, tiny_benchmark):
    from dagster import DagsterInstance, RunsFilter

    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.jobs import register_experiment

    out = _cli_run(data_root, tiny_model_dir, tiny_benchmark, "same_cli", 2)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Finished same_cli: 2 episodes, termination: max_episodes_reached" in out.stdout
    assert out.stdout.splitlines()[0].startswith("Experiment same_cli: model ")
    noise = [line for line in (out.stdout + out.stderr).splitlines() if LIBRARY_NOISE.search(line)]
    assert noise == []                     # no loguru lines, tqdm bars or library warnings on the terminal

    store = ResultsStore(duckdb_path())
    config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=2, name="same_ui",
                              output_dir=str(data_root / "experiments"), eval=FAST_EVAL, driver="sensor")
    assert register_experiment(store, config) == "same_ui"
    requests = _drive_with_the_sensor(store, "same_ui")

    cli, ui = store.experiment("same_cli"), store.experiment("same_ui")
    assert cli["termination_reason"] == ui["termination_reason"] == "max_episodes_reached"
    strategies = {name: [(s["episode"], s["strategy_id"], s["status"]) for s in store.strategies(name)]
                  for name in ("same_cli", "same_ui")}
    assert strategies["same_cli"] == strategies["same_ui"] and len(strategies["same_ui"]) == 2
    assert _quality(store, "same_cli") == _quality(store, "same_ui")
    assert any(on_front for *_, on_front in _quality(store, "same_ui").values())

    # the same runs: named jobs, partitions and run keys, in the same order
    instance = DagsterInstance.get()

    def runs_of(name: str) -> list[tuple]:
        runs = instance.get_runs(RunsFilter(tags={"greenai/experiment": name}))
        return [(r.job_name, r.tags["greenai/run"].replace(name, "X"), r.tags.get("dagster/partition", "")
                 .replace(name, "X")) for r in reversed(runs)]

    assert runs_of("same_cli") == runs_of("same_ui")
    assert [r.job_name for r in requests] == ["setup", "candidate", "frontier", "candidate", "frontier"]

    # where the library output went: one log file per CLI run, named on the run, holding GPTQ's metrics
    cli_runs = instance.get_runs(RunsFilter(tags={"greenai/experiment": "same_cli"}))
    logs = [Path(r.tags["greenai/log_file"]) for r in cli_runs]
    assert all(p.is_file() and p.parent == data_root / "experiments" / "same_cli" / "logs" for p in logs)
    assert any("METRIC" in p.read_text() for p in logs)


# ---- one class for evaluation settings ---------------------------------------------------------------------

def test_one_class_for_evaluation_settings_and_stored_configs_still_load():
    from greenai_dagster.core.settings import config as config_module
    from greenai_dagster.core.evaluation import evaluate
    from greenai_dagster.jobs import LAUNCHPAD_EVAL_FIELDS, EvalOverrides

    assert evaluate.EvalSettings is config_module.EvalSettings     # what the evaluators take is what is stored
    stored = {"model": "m", "dataset": "d", "eval": {"limit_per_task": 3, "batch_size": 8,
                                                     "perplexity_max_tokens": 2048, "full_set_for_frontier": None}}
    config = ExperimentConfig(**stored)                            # a config row written before the merge
    assert (config.eval.limit_per_task, config.eval.fidelity_tokens) == (3, 2048)
    settings = config.eval.settings()
    settings.limit_per_task = None                                 # the full-set pass lifts the proxy on a copy
    assert config.eval.limit_per_task == 3
    assert ExperimentConfig(**config.model_dump()) == config       # round-trips through the stored JSON
    fields = EvalOverrides.model_fields                            # the Launchpad's eval block: same names
    assert set(fields) == set(LAUNCHPAD_EVAL_FIELDS) <= set(evaluate.EvalSettings.model_fields)
    assert fields["limit_per_task"].description.endswith("(default 10)")
    assert EvalOverrides(limit_per_task=2).settings() == {"limit_per_task": 2}
