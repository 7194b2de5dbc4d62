"""Sweeps: a YAML file of models x benchmarks -> validated experiments, a Dagster schedule per file whose
tick launches them through `launch_experiment`, `greenai sweep FILE --now` through `greenai run`'s path,
and `greenai analyze --sweep NAME` comparing the frontiers."""

from __future__ import annotations

import re
import textwrap
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, RunRequest, build_schedule_context

from greenai_dagster.cli import main
from greenai_dagster.core.errors import CompressionFailed, EvaluationError
from greenai_dagster.core.settings.sweep import EVAL_KEYS, experiment_name, is_member, load_sweep, load_sweeps
from greenai_dagster.core.storage.paths import duckdb_path
from greenai_dagster.core.storage.store import ResultsStore

from tests.conftest import REPO

FAST_EVAL = {"limit_per_task": 4, "batch_size": 4, "fidelity_tokens": 512, "prompt_len": 16, "new_tokens": 4,
             "latency_repeats": 2, "throughput_batch_size": 2, "full_set_for_frontier": False}
TICK = datetime(2026, 12, 2, 2, 0, tzinfo=timezone.utc)


def write(folder: Path, text: str, name: str = "sweep.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def sweep_file(folder: Path, name: str = "s", **fields) -> Path:
    data = {"name": name, "models": ["org/Model-A", "/x/model-b"], "benchmarks": ["bench_one", "/y/two.jsonl"],
            **fields}
    return write(folder, yaml.safe_dump(data), f"{name}.yaml")


# parsing and validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, where", [
    ({"models": []}, "models:"),
    ({"cron": "0 25 * * *"}, "cron:"),
    ({"cron": "every night"}, "cron:"),
    ({"episodes": 0}, "episodes:"),
    ({"constraints": {"fastest": 1.0}}, "constraints:"),
    ({"coordinator": "oracle"}, "coordinator:"),
    ({"objectives": ["beauty"]}, "objectives:"),
    ({"eval": {"fidelity_text": "/etc/hosts"}}, "eval:"),
    ({"eval": {"batch_size": 0}}, "eval.batch_size:"),
    ({"name": "Bad Name"}, "name:"),
    ({"models": ["a", "a"]}, "models:"),
    ({"gpus": 2}, "gpus:"),
])
def test_a_bad_field_is_e004_naming_it(tmp_path, fields, where):
    path = sweep_file(tmp_path, **fields)
    with pytest.raises(EvaluationError) as caught:
        load_sweep(path)
    assert str(caught.value).startswith("E004:")
    assert f"sweep file '{path}': {where}" in str(caught.value)


def test_an_unknown_method_is_e005_naming_methods(tmp_path):
    with pytest.raises(CompressionFailed, match=r"E005: sweep file '.*': methods: names unknown method\(s\) \['zip'\]"):
        load_sweep(sweep_file(tmp_path, methods=["gptq", "zip"]))


@pytest.mark.parametrize("text, message", [
    ("name: s\nmodels: [a\n", "is not valid YAML at line 3"),
    ("- a\n- b\n", "holds a YAML list, not a mapping"),
    ("", "holds a YAML NoneType, not a mapping"),
])
def test_a_file_that_is_no_sweep_says_why(tmp_path, text, message):
    with pytest.raises(EvaluationError, match=message):
        load_sweep(write(tmp_path, text))


def test_a_missing_file_and_clashing_names_are_refused(tmp_path):
    with pytest.raises(EvaluationError, match="not found"):
        load_sweep(tmp_path / "nope.yaml")
    with pytest.raises(EvaluationError, match=r"models/benchmarks: two combinations share .*s-model-bench"):
        load_sweep(sweep_file(tmp_path, models=["/a/model", "/b/model"], benchmarks=["bench"]))
    sweep_file(tmp_path / "two", name="night-1")
    sweep_file(tmp_path / "two", name="night_1")
    with pytest.raises(EvaluationError, match="both name the sweep"):
        load_sweeps(tmp_path / "two")


def test_the_sweeps_eval_keys_are_what_the_launchpad_carries():
    from greenai_dagster.jobs import EvalOverrides

    assert set(EVAL_KEYS) <= set(EvalOverrides.model_fields)


# expansion -------------------------------------------------------------------------------------------------
def test_each_model_x_benchmark_is_one_experiment_with_a_deterministic_name(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, name="night", methods=["gptq", "int8"], constraints={"max_kl": 0.3},
                                  episodes=5, seed=7, coordinator="random", cron="30 1 * * mon-fri",
                                  eval={"limit_per_task": 3}))
    configs = sweep.experiments()
    assert [(c.model, c.dataset) for c in configs] == [
        ("org/Model-A", "bench_one"), ("org/Model-A", "/y/two.jsonl"),
        ("/x/model-b", "bench_one"), ("/x/model-b", "/y/two.jsonl")]
    assert [c.name for c in configs] == ["night-model-a-bench-one", "night-model-a-two",
                                         "night-model-b-bench-one", "night-model-b-two"]
    assert [c.name for c in load_sweep(sweep.path).experiments()] == [c.name for c in configs]   # again: same names
    for c in configs:
        assert (c.compression_methods, c.constraints, c.episodes, c.seed, c.coordinator, c.driver) == (
            ["gptq", "int8"], {"max_kl": 0.3}, 5, 7, "random", "cli")
        assert c.eval.limit_per_task == 3
    ticked = sweep.experiments(stamp="20261202-0130", driver="sensor", episodes=1)
    assert ticked[0].name == "night-model-a-bench-one-20261202-0130"
    assert {c.driver for c in ticked} == {"sensor"} and {c.episodes for c in ticked} == {1}
    assert is_member("night", ticked[0].name, "org/Model-A", "bench_one")
    assert is_member("night", "night-model-a-bench-one", "org/Model-A", "bench_one")
    assert not is_member("night", "night-model-a-bench-one-extra", "org/Model-A", "bench_one")
    assert not is_member("nigh", "night-model-a-bench-one", "org/Model-A", "bench_one")


# schedules -------------------------------------------------------------------------------------------------
def test_the_repositorys_example_sweep_is_a_stopped_schedule_in_the_definitions():
    from dagster import DefaultScheduleStatus

    from greenai_dagster.definitions import defs

    example = load_sweep(REPO / "sweeps" / "nightly-smollm2.yaml")
    schedule = defs.get_schedule_def("sweep_nightly_smollm2")
    assert schedule.cron_schedule == example.cron == "0 2 * * *"
    assert schedule.job_name == "launch_experiment" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED


def test_a_sweeps_folder_gives_one_schedule_per_file_with_a_cron(tmp_path, monkeypatch):
    from greenai_dagster.schedules import sweep_schedules

    sweep_file(tmp_path, name="nightly", cron="0 3 * * *")
    sweep_file(tmp_path, name="weekly-big", cron="0 4 * * sun")
    sweep_file(tmp_path, name="by-hand")          # no cron: `--now` only
    monkeypatch.setenv("GREENAI_SWEEPS_DIR", str(tmp_path))
    schedules = {s.name: s.cron_schedule for s in sweep_schedules()}
    assert schedules == {"sweep_nightly": "0 3 * * *", "sweep_weekly_big": "0 4 * * sun"}
    monkeypatch.setenv("GREENAI_SWEEPS_DIR", str(tmp_path / "typo"))
    with pytest.raises(EvaluationError, match="GREENAI_SWEEPS_DIR is '.*typo', which is not a folder"):
        sweep_schedules()


def test_a_tick_launches_each_combination_through_launch_experiment(data_root, tmp_path, monkeypatch,
                                                                   tiny_model_dir, tiny_benchmark):
    """The tick's RunRequests are launch_experiment runs; executing one creates the experiment exactly as a
    UI launch does (sensor-driven, the sweep's settings, its partition added)."""
    from greenai_dagster.jobs import launch_experiment
    from greenai_dagster.partitions import experiments_partitions
    from greenai_dagster.resources import ResultsStoreResource
    from greenai_dagster.schedules import sweep_schedules

    second = tmp_path / "second.jsonl"
    second.write_text(tiny_benchmark.read_text())
    write(tmp_path / "sweeps", yaml.safe_dump({
        "name": "tick", "cron": "0 2 * * *", "models": [str(tiny_model_dir)], "methods": ["gptq", "int8"],
        "benchmarks": [str(tiny_benchmark), str(second)], "episodes": 2, "seed": 3, "eval": FAST_EVAL}))
    monkeypatch.setenv("GREENAI_SWEEPS_DIR", str(tmp_path / "sweeps"))
    [schedule] = sweep_schedules()
    requests = schedule(build_schedule_context(scheduled_execution_time=TICK))
    assert [type(r) for r in requests] == [RunRequest, RunRequest]
    names = ["tick-tiny-llama-tinymc-20261202-0200", "tick-tiny-llama-second-20261202-0200"]
    assert [r.run_key for r in requests] == names
    assert [r.tags["greenai/experiment"] for r in requests] == names and requests[0].tags["greenai/sweep"] == "tick"
    again = schedule(build_schedule_context(scheduled_execution_time=TICK))
    assert [r.run_key for r in again] == names                 # the same tick asks for the same runs (deduplicated)
    from dagster._config import process_config

    for request in requests:        # each run config is valid for the job's own config schema
        assert process_config(launch_experiment.run_config_schema.config_type, request.run_config).success

    store = ResultsStore(duckdb_path())
    instance = DagsterInstance.ephemeral()
    result = launch_experiment.execute_in_process(run_config=requests[0].run_config, instance=instance,
                                                  resources={"store": ResultsStoreResource()})
    assert result.success and result.output_for_node("create_experiment") == names[0]
    record = store.experiment(names[0])
    assert record["status"] == "active" and record["dataset"] == str(tiny_benchmark)
    config = record["config"]
    assert (config["driver"], config["seed"], config["episodes"], config["compression_methods"]) == (
        "sensor", 3, 2, ["gptq", "int8"])
    assert config["eval"]["limit_per_task"] == 4 and config["eval"]["fidelity_tokens"] == 512
    assert instance.has_dynamic_partition(experiments_partitions.name, names[0])
    assert names[0] in store.active_experiments()              # the coordinator sensor picks it up from here
    store.finish_experiment(names[0], "test_done")             # keep the session's sensor tests unaffected


# greenai sweep FILE [--now] --------------------------------------------------------------------------------
def test_sweep_without_now_lists_the_experiments_and_starts_nothing(data_root, tmp_path, capsys, tiny_model_dir,
                                                                    tiny_benchmark):
    path = write(tmp_path, yaml.safe_dump({"name": "look", "models": [str(tiny_model_dir)],
                                           "benchmarks": [str(tiny_benchmark)], "cron": "0 1 * * *"}))
    assert main(["sweep", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Sweep look: 1 experiment(s); schedule: sweep_look (0 1 * * * UTC)" in out
    assert "look-tiny-llama-tinymc:" in out and "nothing started" in out
    assert ResultsStore(duckdb_path()).experiment("look-tiny-llama-tinymc") is None


def test_sweep_now_checks_every_combination_before_starting_any(data_root, tmp_path, capsys, tiny_model_dir,
                                                               tiny_benchmark):
    path = write(tmp_path, yaml.safe_dump({"name": "early", "benchmarks": [str(tiny_benchmark)],
                                           "models": [str(tiny_model_dir), str(tmp_path / "missing-model")]}))
    assert main(["sweep", str(path), "--now", "-e", "1"]) == 1
    assert capsys.readouterr().err.startswith("E002:")
    assert ResultsStore(duckdb_path()).experiment("early-tiny-llama-tinymc") is None   # the first never started


def test_a_bad_sweep_file_on_the_cli_is_e004_and_exit_1(data_root, tmp_path, capsys):
    assert main(["sweep", str(write(tmp_path, "name: x\nmodels: []\nbenchmarks: [b]\n")), "--now"]) == 1
    assert capsys.readouterr().err.startswith(f"E004: sweep file '{tmp_path / 'sweep.yaml'}': models:")


def test_sweep_now_goes_through_greenai_runs_path(data_root, tmp_path, capsys, tiny_model_dir, tiny_benchmark):
    """Fast: both experiments already finished, so `run_experiment` (greenai run's path) says so and runs
    nothing; the real runs are in the slow tests below."""
    second = tmp_path / "second.jsonl"
    second.write_text(tiny_benchmark.read_text())
    path = write(tmp_path, yaml.safe_dump({"name": "done", "models": [str(tiny_model_dir)],
                                           "benchmarks": [str(tiny_benchmark), str(second)]}))
    store = ResultsStore(duckdb_path())
    for config in load_sweep(path).experiments():
        store.create_experiment(config.name, config.model, config.dataset, config.model_dump(), config.output_dir)
        store.finish_experiment(config.name, "converged")
    assert main(["sweep", str(path), "--now"]) == 0
    out = capsys.readouterr().out
    assert "Experiment done-tiny-llama-tinymc already finished (converged)" in out
    assert "done-tiny-llama-second: converged" in out
    assert "Compare them: greenai analyze --sweep done" in out


def result_row(name: str, strategy_id: str, methods: str, **figures) -> dict:
    from greenai_dagster.core.storage.store import RESULT_COLUMNS

    row = {c: None for c in RESULT_COLUMNS}
    row.update(candidate_key=f"{name}/{strategy_id}", experiment=name, strategy_id=strategy_id, methods=methods,
               episode=figures.pop("episode", 1), is_baseline=strategy_id == "baseline", task_accuracy={},
               conditions={}, **{"degraded": False, **figures})
    return row


@pytest.fixture()
def hand_sweep(data_root):
    """Sweep `hand`: model ma (baseline 1.0 GB) and model mb (2.0 GB) on benchmark b1, figures chosen so the
    winners are known: in ma pruning has the lowest KL, quantization the smallest size; in mb a chain wins
    latency. An older tick of ma (no results) and two lookalike names must be ignored."""
    store = ResultsStore(duckdb_path())
    for name, model in [("hand-ma-b1-20260101-0000", "org/ma"), ("hand-ma-b1-extra", "org/ma"), ("handy-ma-b1", "org/ma"),
                        ("hand-ma-b1", "org/ma"), ("hand-mb-b1", "/m/mb")]:
        store.create_experiment(name, model, "b1", {"model": model}, str(data_root / "experiments"))
    common = {"accuracy": 0.6, "latency_ms": 20.0, "memory_gb": 1.0}
    rows = [
        result_row("hand-ma-b1", "baseline", "", episode=0, model_size_gb=1.0, kl_divergence=0.0, **common),
        result_row("hand-ma-b1", "q4", "gptq", model_size_gb=0.28, kl_divergence=0.05, accuracy=0.58,
                   latency_ms=10.0, memory_gb=0.3),
        result_row("hand-ma-b1", "p50", "magnitude", episode=2, model_size_gb=0.45, kl_divergence=0.02,
                   accuracy=0.62, latency_ms=12.0, memory_gb=0.5),
        result_row("hand-ma-b1", "i8", "int8", episode=3, model_size_gb=0.5, kl_divergence=0.03, accuracy=0.55,
                   latency_ms=14.0, memory_gb=0.6),
        result_row("hand-ma-b1", "r2", "rtn", episode=4, model_size_gb=0.2, kl_divergence=0.9, accuracy=0.3,
                   latency_ms=5.0, memory_gb=0.2, degraded=True, degraded_reason="kl 0.9 > 0.5"),
        result_row("hand-mb-b1", "baseline", "", episode=0, model_size_gb=2.0, kl_divergence=0.0, **common),
        result_row("hand-mb-b1", "q", "gptq", model_size_gb=0.5, kl_divergence=0.04, accuracy=0.5,
                   latency_ms=8.0, memory_gb=0.6),
        result_row("hand-mb-b1", "chain", "magnitude+gptq", episode=2, model_size_gb=0.4, kl_divergence=0.08,
                   accuracy=0.45, latency_ms=7.0, memory_gb=0.5),
    ]
    for row in rows:
        store.write_result(row)
    store.write_frontier("hand-ma-b1", ["hand-ma-b1/q4", "hand-ma-b1/p50"], 0.5, 4)
    store.write_frontier("hand-mb-b1", ["hand-mb-b1/q", "hand-mb-b1/chain"], 0.4, 2)
    return store


def test_analyze_sweep_says_which_family_wins_where(hand_sweep, tmp_path, capsys):
    page = tmp_path / "sweep.html"
    assert main(["analyze", "--sweep", "hand", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Sweep hand: 2 experiment(s)")
    assert "== hand-ma-b1\n" in out and "== hand-mb-b1\n" in out and "extra" not in out and "handy" not in out
    assert "0101" not in out                                       # the older tick of ma is not the newest
    ma = out[out.index("== hand-ma-b1"):out.index("== hand-mb-b1")]
    assert re.search(r"\n +q4 +quantization +0\.05 +0\.58 +10 +0\.28\n +p50 +pruning +0\.02 +0\.62 +12 +0\.45\n", ma)
    assert "r2" not in ma.split("best per objective")[0] and "i8" not in ma.split("best per objective")[0]
    assert ("best per objective: KL p50 (pruning); acc p50 (pruning); ms/tok q4 (quantization); "
            "mem GB q4 (quantization); size GB q4 (quantization)") in ma
    assert "lowest KL by size: size <=30% q4 (quantization, KL 0.05); size 30-50% p50 (pruning, KL 0.02)" in ma
    mb = out[out.index("== hand-mb-b1"):]
    assert "ms/tok chain (pruning+quantization)" in mb and "KL q (quantization)" in mb
    assert "lowest KL by size: size <=30% q (quantization, KL 0.04)" in mb
    tally = dict(re.findall(r"\n   (best [^\n]+?|lowest KL at [^\n]+?)  +([^\n]+)", out))
    assert tally == {"best KL": "pruning 1, quantization 1", "best acc": "pruning 1, quantization 1",
                     "best ms/tok": "pruning+quantization 1, quantization 1",
                     "best mem GB": "pruning+quantization 1, quantization 1",
                     "best size GB": "pruning+quantization 1, quantization 1",
                     "lowest KL at size <=30%": "quantization 2", "lowest KL at size 30-50%": "pruning 1"}
    scripts = ScriptCollector()
    scripts.feed(page.read_text())
    assert sum("Plotly.newPlot(" in s and len(s) < 1_000_000 for s in scripts.bodies) == 1   # one figure
    assert sum(len(s) > 1_000_000 for s in scripts.bodies) == 1      # plotly.js embedded once: opens offline
    assert page.stat().st_size < 6_000_000


def test_the_comparison_figure_puts_each_frontier_on_a_shared_relative_size_axis(hand_sweep):
    from greenai_dagster.core.reporting.analyze import experiment_wins, sweep_figure

    figure = sweep_figure("hand", [experiment_wins(hand_sweep, n) for n in ("hand-ma-b1", "hand-mb-b1")])
    traces = {(t.name, t.xaxis): t for t in figure.data}
    assert list(traces[("hand-ma-b1", "x")].x) == [0.28, 0.45]             # sizes / 1.0 GB, frontier only
    assert list(traces[("hand-ma-b1", "x")].y) == [0.05, 0.02]
    assert list(traces[("hand-mb-b1", "x2")].x) == [0.2, 0.25]             # sizes / 2.0 GB
    assert list(traces[("hand-mb-b1", "x2")].y) == [0.45, 0.5]             # accuracy panel
    assert list(traces[("hand-mb-b1", "x")].marker.symbol) == ["x", "circle"]   # a chain, then quantization


@pytest.fixture(scope="module")
def swept(data_root, tmp_path_factory, tiny_model_dir, tiny_benchmark):
    """`greenai sweep FILE --now -e 1`: the tiny model on two benchmarks, one episode each (real runs,
    about 70 s of CPU on the 2-core machine)."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("sweepnow")
    second = folder / "second.jsonl"
    second.write_text("".join(line + "\n" for line in reversed(tiny_benchmark.read_text().splitlines())))
    path = write(folder, yaml.safe_dump({"name": "now", "models": [str(tiny_model_dir)], "episodes": 3,
                                         "methods": ["int8"],
                                         "benchmarks": [str(tiny_benchmark), str(second)], "eval": FAST_EVAL}))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["sweep", str(path), "--now", "-e", "1", "-o", str(folder / "experiments")])
    return code, out.getvalue(), folder


@pytest.mark.slow
def test_sweep_now_runs_every_combination_as_greenai_run_would(swept):
    code, out, folder = swept
    assert code == 0, out
    store = ResultsStore(duckdb_path())
    for name in ("now-tiny-llama-tinymc", "now-tiny-llama-second"):
        record = store.experiment(name)
        assert record["status"] == "finished" and record["termination_reason"] == "max_episodes_reached"
        assert record["config"]["driver"] == "cli" and record["config"]["episodes"] == 1   # -e overrides the file
        assert len(store.results(name)) == 1 and store.baseline(name) is not None
        assert (folder / "experiments" / name / "final_results.json").exists()
        assert f"{name}: max_episodes_reached" in out
    assert "[Sweep] 1/2: now-tiny-llama-tinymc" in out and "[Sweep] 2/2: now-tiny-llama-second" in out


@pytest.mark.slow
def test_analyze_sweep_on_real_runs(swept, tmp_path, capsys):
    page = tmp_path / "sweep.html"
    assert main(["analyze", "--sweep", "now", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    store = ResultsStore(duckdb_path())
    assert out.startswith("Sweep now: 2 experiment(s)")
    for name in ("now-tiny-llama-tinymc", "now-tiny-llama-second"):
        [row] = store.results(name)
        assert f"== {name}" in out
        assert row["is_pareto"] and not row["degraded"]   # int8 on a tiny model stays within the gate
        line = next(line for line in out.splitlines() if line.strip().startswith(row["strategy_id"]))
        assert "quantization" in line and f"{row['kl_divergence']:.4g}" in line
    assert re.search(r"best KL +quantization 2\n", out)
    assert page.exists() and "now-tiny-llama-second" in page.read_text()


class ScriptCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.bodies: list[str] = []
        self._inside = False

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._inside = True
            self.bodies.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._inside = False

    def handle_data(self, data):
        if self._inside:
            self.bodies[-1] += data


def test_analyze_sweep_of_an_unknown_sweep_is_e004(data_root, capsys):
    ResultsStore(duckdb_path())
    assert main(["analyze", "--sweep", "never-ran"]) == 1
    assert capsys.readouterr().err.startswith("E004: no experiment of sweep 'never-ran'")


def test_experiment_names_are_the_slugs(tmp_path):
    assert experiment_name("s", "HuggingFaceTB/SmolLM2-135M", "bigbench_hard") == "s-smollm2-135m-bigbench-hard"
    assert experiment_name("s", "/m/tiny-llama", "/b/x.jsonl", "20260101-0000") == "s-tiny-llama-x-20260101-0000"
    assert experiment_name("s", "a b", "c") == "s-a-b-c"


def test_the_schedule_shows_in_the_webservers_graphql(data_root, tmp_path):
    """What the UI's Automation page reads: `schedulesOrError` from `dagster-webserver` on workspace.yaml,
    with GREENAI_SWEEPS_DIR pointing at a folder of two sweeps (23 s on the loaded 2-core machine)."""
    import httpx
    from tests.conftest import start_dagster, stop_process_group, wait_for_dagster

    sweep_file(tmp_path / "sweeps", name="nightly", cron="0 3 * * *")
    sweep_file(tmp_path / "sweeps", name="weekly", cron="15 4 * * sun")
    log_path = tmp_path / "webserver.log"
    with open(log_path, "w") as log:
        proc, url = start_dagster(["dagster_webserver"], log, {"GREENAI_SWEEPS_DIR": str(tmp_path / "sweeps")})
        try:
            wait_for_dagster(url, proc, log_path)
            query = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"""
            [repo] = httpx.post(f"{url}/graphql", json={"query": query}, timeout=60).json()["data"][
                "repositoriesOrError"]["nodes"]
            query = """query ($selector: RepositorySelector!) { schedulesOrError(repositorySelector: $selector) {
                ... on Schedules { results { name cronSchedule executionTimezone pipelineName
                                             scheduleState { status } } }
                ... on PythonError { message } } }"""
            selector = {"repositoryName": repo["name"], "repositoryLocationName": repo["location"]["name"]}
            answer = httpx.post(f"{url}/graphql", json={"query": query, "variables": {"selector": selector}},
                                timeout=60).json()["data"]["schedulesOrError"]
            schedules = {s["name"]: s for s in answer["results"]}
            assert set(schedules) == {"sweep_nightly", "sweep_weekly"}
            assert schedules["sweep_weekly"]["cronSchedule"] == "15 4 * * sun"
            assert schedules["sweep_nightly"]["pipelineName"] == "launch_experiment"
            assert schedules["sweep_nightly"]["executionTimezone"] == "UTC"
            assert schedules["sweep_nightly"]["scheduleState"]["status"] == "STOPPED"
        finally:
            stop_process_group(proc, timeout_s=30)


@pytest.mark.parametrize("cron", ["*/15 * * * *", "0 2 * * mon-fri", "0 0 1 jan *", "@daily", "0 2 * * 7",
                                  "5,35 1-3 * * *", "0 24 * * *", "* * * *", "0 0 0 * *", "0 0 * 13 *",
                                  "*/0 * * * *", "0 2 * * funday"])
def test_the_files_cron_check_agrees_with_dagsters(cron):
    """The core checks cron at load without importing Dagster; it must accept exactly what Dagster does."""
    from dagster._utils.schedules import is_valid_cron_string

    from greenai_dagster.core.settings.sweep import _cron_error

    assert (_cron_error(cron) is None) == is_valid_cron_string(cron)
