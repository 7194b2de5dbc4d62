"""Issue 13, "Found on main": each raw traceback or silent wrong value a new user met, now a clear E00N
or an honest null. Every test here failed (traceback, wrong code, or 0.0) before the fix."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenai_dagster.core.errors import (CompressionFailed, CoordinatorKeyMissing, DiskFull, EvaluationError,
                                         GreenAIError, NetworkError)

ROOT = Path(__file__).resolve().parent.parent


def cli(argv, capsys):
    from greenai_dagster.cli import main

    code = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Traceback" not in out.out
    return code, out


# ---- config files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content", ['[1, 2]', '"model"', '42', 'null', '{"eval": [1]}', b"\xff\xfe{"])
def test_a_config_file_that_is_valid_json_but_not_an_object_is_e004(content, tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out = cli(["run", "-c", str(path), "--show-spec"], capsys)
    assert code == 1 and out.err.startswith("E004:") and ("c.json" in out.err or "eval" in out.err), out.err


def test_a_config_path_that_is_a_directory_is_e004(tmp_path, capsys):
    code, out = cli(["run", "-c", str(tmp_path), "--show-spec"], capsys)
    assert code == 1 and out.err.startswith("E004:") and "is a directory" in out.err


# ---- greenai analyze on damaged folders -----------------------------------------------------------

def _experiment_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "exp"
    (folder / "episode_001").mkdir(parents=True)
    (folder / "model_spec.json").write_text(json.dumps({"model_name": "m", "model_family": "llama",
                                                        "parameter_count": "1M", "model_size_gb": 0.1}))
    (folder / "pareto_frontier.json").write_text(json.dumps({"solutions": [], "hypervolume": 0.0}))
    return folder


@pytest.mark.parametrize("damage", [
    ("pareto_frontier.json", "{not json"), ("model_spec.json", "[1, 2, 3]"), ("final_results.json", '"x"'),
    ("episode_001/results.json", "{\"accuracy\": "), ("episode_001/strategy.json", "\x00\x01"),
    ("pareto_frontier.json", "{}"), ("model_spec.json", '{"model_name": "m"}'),
    ("final_results.json", '{"episodes_completed": 1}')])
@pytest.mark.parametrize("fmt", ["summary", "detailed"])
def test_analyze_names_the_damaged_file_instead_of_a_traceback(damage, fmt, tmp_path, capsys):
    folder = _experiment_folder(tmp_path)
    (folder / damage[0]).write_text(damage[1])
    code, out = cli(["analyze", str(folder), "--format", fmt], capsys)      # never a traceback (cli checks)
    syntax = damage[1] in ("{not json", "{\"accuracy\": ", "\x00\x01") or not damage[1].startswith("{")
    if syntax:                      # not JSON, or JSON that is not an object: E004 naming the file
        assert code == 1 and out.err.startswith("E004:") and damage[0].split("/")[-1] in out.err, out.err
    else:                           # an object missing fields: described as far as it goes, or E004
        assert code == 0 or out.err.startswith("E004:"), out.err


def test_analyze_of_a_file_is_e004(tmp_path, capsys):
    (tmp_path / "f.txt").write_text("x")
    code, out = cli(["analyze", str(tmp_path / "f.txt")], capsys)
    assert code == 1 and out.err.startswith("E004:")


# ---- the LLM endpoint misbehaving -----------------------------------------------------------------

def _completion(choices):
    return (200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": choices}, {})


NO_CONTENT = [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}]


@pytest.mark.parametrize("name, answers, error, code", [
    ("400", [(400, {"error": {"message": "max_tokens is too large"}}, {})], NetworkError, "E006"),
    ("401", [(401, {"error": {"message": "bad key"}}, {})], CoordinatorKeyMissing, "E001"),
    ("403", [(403, {"error": {"message": "forbidden"}}, {})], CoordinatorKeyMissing, "E001"),
    ("404", [(404, {"error": {"message": "no such model"}}, {})], NetworkError, "E006"),
    ("500", [(500, "internal error", {})], NetworkError, "E006"),
    ("502", [(502, {"error": {"message": "bad gateway"}}, {})], NetworkError, "E006"),
    ("503", [(503, {"error": {"message": "overloaded"}}, {})], NetworkError, "E006"),
    ("empty choices", [_completion([])] * 3, NetworkError, "E006"),        # not retried as "invalid answers"
    ("null choices", [_completion(None)] * 3, NetworkError, "E006"),
    ("not json", [(200, "<html>a proxy login page</html>", {})], NetworkError, "E006"),
    ("no content x3", [_completion(NO_CONTENT)] * 3, CompressionFailed, "E005"),
])
def test_llm_endpoint_failures_are_clear_codes(name, answers, error, code, tiny_spec, data_root):
    from test_coordinator import FakeChatServer, state_for

    from greenai_dagster.core.search.coordinator import LlmCoordinator, LlmSettings

    with FakeChatServer(answers) as url:
        with pytest.raises(GreenAIError) as err:
            LlmCoordinator(LlmSettings(model=f"m-{name}", base_url=url, api_key="k"),
                           sleep=lambda _: None).propose(state_for(tiny_spec))
    assert isinstance(err.value, error) and err.value.code == code, str(err.value)
    assert "Remedy:" in str(err.value) and "coordinator.api_key" not in str(err.value)


# ---- DuckDB locked, damaged, or not a file --------------------------------------------------------

def test_a_locked_duckdb_is_e007_naming_the_holder(tmp_path):
    from greenai_dagster.core.storage.store import ResultsStore

    path = tmp_path / "r.duckdb"
    ResultsStore(path).create_experiment("e", "m", "d", {}, str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); "
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        with pytest.raises(DiskFull) as err:
            ResultsStore(path, lock_timeout_s=0.5).create_experiment("e2", "m", "d", {}, str(tmp_path))
        assert time.perf_counter() - started < 5
    finally:
        holder.kill()
        holder.wait()
    assert err.value.code == "E007" and "locked" in str(err.value) and f"PID {holder.pid}" in str(err.value)
    assert ResultsStore(path).experiment("e") is not None            # nothing lost, usable again


def test_a_damaged_or_misplaced_duckdb_is_e007(tmp_path, capsys):
    from greenai_dagster.core.storage.store import ResultsStore

    garbage = tmp_path / "g.duckdb"
    garbage.write_bytes(b"\x13" * 8192)
    for path in (garbage, tmp_path):
        with pytest.raises(DiskFull) as err:
            ResultsStore(path).experiment("e")
        assert err.value.code == "E007"
    code, out = cli(["query", "SELECT 1", "--db", str(garbage)], capsys)
    assert code == 1 and out.err.startswith("E007:") and "not a DuckDB database" in out.err


# ---- cluster deployment without its shared store --------------------------------------------------

def test_cluster_mode_without_the_shared_duckdb_is_a_clear_error_not_a_keyerror(monkeypatch, data_root):
    """The definitions load without GREENAI_SHARED_DUCKDB (so the UI can say what is wrong); every use of
    the store, at run time, is the E007 naming the variable."""
    import os

    from greenai_dagster.resources import open_store, resources_for

    monkeypatch.delenv("GREENAI_SHARED_DUCKDB", raising=False)
    with pytest.raises(DiskFull, match="GREENAI_SHARED_DUCKDB"):
        open_store(resources_for("cluster"))
    with pytest.raises(DiskFull, match="'local' or 'cluster'"):
        resources_for("clustr")
    monkeypatch.setenv("GREENAI_SHARED_DUCKDB", str(data_root / "shared.duckdb"))
    assert open_store(resources_for("cluster")).path == data_root / "shared.duckdb"   # resolved when used
    env = {k: v for k, v in os.environ.items() if k != "GREENAI_SHARED_DUCKDB"}
    env["GREENAI_DEPLOYMENT"] = "cluster"
    proc = subprocess.run([sys.executable, "-c", "import greenai_dagster.definitions"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "greenai_dagster.cli", "run", "-e", "1", "-n", "cluster_unset"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("E007: GREENAI_DEPLOYMENT=cluster needs GREENAI_SHARED_DUCKDB")
    assert "KeyError" not in proc.stderr and "Traceback" not in proc.stderr


# ---- compression_methods that leave nothing to search ---------------------------------------------

def test_unknown_method_names_are_e005_at_validation(tmp_path):
    from greenai_dagster.core.settings.config import load_config

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"compression_methods": ["gptq", "magic"]}))
    with pytest.raises(CompressionFailed) as err:
        load_config({}, str(path))
    assert err.value.code == "E005" and "magic" in str(err.value) and "gptq" in err.value.remedy


def test_unusable_method_lists_are_e005_for_the_spec(tiny_spec):
    from greenai_dagster.core.search.coordinator.space import require_usable

    require_usable(tiny_spec, ["gptq", "int8"])
    require_usable(tiny_spec, None)
    for names, says in ((["lora"], "nothing"), (["gptq", "lora"], "no candidate for ['lora']")):
        with pytest.raises(CompressionFailed) as err:
            require_usable(tiny_spec, names)
        assert err.value.code == "E005" and says in str(err.value) and "chains" in str(err.value)


def test_a_run_with_an_unusable_method_list_stops_before_the_baseline(data_root, tiny_model_dir, tiny_benchmark,
                                                                     tmp_path, capsys):
    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.core.storage.store import ResultsStore

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"compression_methods": ["lora"], "eval": {"limit_per_task": 2}}))
    code, out = cli(["run", "-m", str(tiny_model_dir), "-d", str(tiny_benchmark), "-e", "3", "-n", "only_lora",
                     "-c", str(path)], capsys)
    last = out.err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("E005:") and "lora" in last
    assert "converged" not in out.out and "STEP_FAILURE" not in out.err     # no Dagster stack trace either
    assert ResultsStore(duckdb_path()).baseline("only_lora") is None     # no hour-long baseline for nothing


# ---- E000 and remedies ----------------------------------------------------------------------------

def test_e000_is_only_the_documented_unexpected_error_and_remedies_point_at_real_things():
    import re

    from greenai_dagster.core import errors

    package = ROOT / "greenai_dagster"
    sources = {p: p.read_text() for p in package.rglob("*.py")}
    assert not [p.name for p, t in sources.items() if re.search(r"raise GreenAIError\(|return GreenAIError\(", t)]
    readme = (ROOT / "README.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", readme, re.MULTILINE)}
    for path, text in sources.items():
        assert "coordinator.api_key" not in text, path
        for section in re.findall(r"README(?:'s)? ['\"]([^'\"]+)['\"]", text):
            assert any(h.startswith(section.lower()) for h in headings), (path.name, section)
    assert "`E000`" in readme and "troubleshooting" not in errors.GreenAIError.default_remedy.lower()
    # a step's error leaves its Dagster run as data (assets/_errors.py) and comes back as its own class
    error = errors.from_record(errors.UnexpectedError("ZeroDivisionError: division by zero").record())
    assert isinstance(error, errors.UnexpectedError) and error.code == "E000" and "Dagster UI" in error.remedy
    rebuilt = errors.from_record(errors.CompressionFailed("bad group size.", "use 64").record())
    assert type(rebuilt) is errors.CompressionFailed and (rebuilt.message, rebuilt.remedy) == ("bad group size.",
                                                                                               "use 64")
    unknown_class = errors.from_record({"code": "E005", "error_class": "GoneSince", "message": "m"})
    assert type(unknown_class) is errors.CompressionFailed          # a class not loaded here: the class of its code
    assert "coordinator.api_key" not in errors.CoordinatorKeyMissing.default_remedy


# ---- greenai query cannot touch other files -------------------------------------------------------

def test_query_cannot_write_or_read_other_files(tmp_path, capsys):
    from greenai_dagster.core.storage.store import ResultsStore

    db = tmp_path / "r.duckdb"
    ResultsStore(db).create_experiment("e", "m", "d", {}, str(tmp_path))
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    target = tmp_path / "written.csv"
    for sql in (f"COPY (SELECT * FROM experiments) TO '{target}'", f"SELECT * FROM read_text('{secret}')",
                f"SELECT * FROM read_csv('{secret}')", f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
                "SET enable_external_access = true"):
        code, out = cli(["query", sql, "--db", str(db)], capsys)
        assert code == 1 and out.err.startswith("E004:") and "top secret" not in out.out, sql
    assert not target.exists() and not (tmp_path / "other.duckdb").exists()
    code, out = cli(["query", "SELECT name FROM experiments", "--db", str(db)], capsys)
    assert code == 0 and "e" in out.out


# ---- codecarbon failing, lm-eval's "N/A", NaN and inf ---------------------------------------------

class _BrokenStart:
    def __init__(self, *a, **k):
        pass

    def start(self):
        raise RuntimeError("no RAPL, no TDP table entry")


class _NoReading(_BrokenStart):
    final_emissions_data = None

    def start(self):
        pass

    def stop(self):
        return None


@pytest.mark.parametrize("tracker, says", [(_BrokenStart, "could not start"), (_NoReading, "no measurement")])
def test_a_codecarbon_failure_records_null_and_why_never_zero(tracker, says, monkeypatch):
    import codecarbon

    from greenai_dagster.core.evaluation.energy import track_energy

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", tracker)
    ran = []
    with track_energy() as reading:
        ran.append(True)                                   # the measured work still runs
    assert ran and reading.energy_kwh is None and reading.co2_grams is None and says in reading.error


def test_unmeasured_energy_is_null_in_the_row_and_keeps_it_off_an_energy_frontier():
    from types import SimpleNamespace

    from greenai_dagster.core.evaluation.energy import EnergyReading
    from greenai_dagster.core.evaluation.fidelity import Fidelity
    from greenai_dagster.core.search.pareto import summarise
    from greenai_dagster.core.pipeline import _result_row

    fid = Fidelity(kl_divergence=0.1, kl_stderr=0.01, top1_agreement=0.9, top1_stderr=0.01, ppl_ratio=1.1,
                   ppl_ratio_low=1.0, ppl_ratio_high=1.2, perplexity=12.0, tokens=512)
    metrics = SimpleNamespace(accuracy=0.5, accuracy_stderr=None, latency_ms=1.0, prefill_ms=1.0,
                              throughput_tokens_per_s=None, memory_gb=0.1, model_size_gb=0.1, energy_j_per_token=None,
                              task_accuracy={}, item_correct={}, conditions={}, eval_time_s=1.0, task_chance={},
                              fidelity=fid, fidelity_sampled=None)
    row = _result_row("e/s", "e", 1, "s", ["int8"], metrics, EnergyReading(error="codecarbon could not start (x)"),
                      0.2, {"compression_energy_kwh": 0.001, "compression_co2_grams": 0.5}, "/x")
    assert row["energy_kwh"] is None and row["co2_grams"] is None and row["eval_energy_kwh"] is None
    assert row["conditions"]["energy_error"] == "codecarbon could not start (x)"
    measured = dict(row, candidate_key="e/m", energy_kwh=0.002, kl_divergence=0.1)
    summary = summarise([dict(row, kl_divergence=0.1), measured], {"energy_kwh": 0.01, "kl_divergence": 0.0},
                        {"energy_kwh": False, "kl_divergence": False})
    assert [m["candidate_key"] for m in summary.members] == ["e/m"]
    assert summary.excluded[0]["reason"] == "not measured: energy_kwh"


def test_lm_eval_na_stderr_is_null_not_zero():
    from greenai_dagster.core.evaluation.evaluate import macro_score
    from greenai_dagster.core.reporting.report import result_json
    from greenai_dagster.core.data.task_files import task_score
    from greenai_dagster.runner import accuracy_text

    assert task_score({"acc,none": 1.0, "acc_stderr,none": "N/A"}) == ("acc", 1.0, None)
    assert task_score({"acc,none": 0.5, "acc_stderr,none": float("nan")})[2] is None
    results = {"a": {"acc,none": 1.0, "acc_stderr,none": "N/A"}, "b": {"acc,none": 0.5, "acc_stderr,none": 0.1}}
    mean, stderr, _ = macro_score(results, ["a", "b"])
    assert mean == 0.75 and stderr is None
    assert macro_score(results, ["b"])[1] == pytest.approx(0.1)
    row = {"accuracy": 0.75, "accuracy_stderr": None}
    assert accuracy_text(row) == "0.750 (95% CI n/a)" and result_json(row)["accuracy_ci95"] is None


def test_the_plausibility_check_rejects_nan_and_inf_in_any_column(tmp_path):
    from greenai_dagster.assets.candidates import plausibility_problems
    from greenai_dagster.core.storage.store import ResultsStore

    store = ResultsStore(tmp_path / "r.duckdb")
    good = {"candidate_key": "e/ok", "experiment": "e", "episode": 1, "strategy_id": "ok", "accuracy": 0.5,
            "kl_divergence": 0.1, "top1_agreement": 0.9, "ppl_ratio": 1.1, "model_size_gb": 0.1, "latency_ms": 5.0,
            "memory_gb": 0.2, "perplexity": 12.0, "energy_kwh": None, "kl_stderr": None}   # NULL: not measured
    store.write_result(good)
    assert plausibility_problems(store, "e/ok") == []
    bad = dict(good, candidate_key="e/bad", compression_ratio=math.inf, kl_stderr=math.nan, energy_kwh=math.nan,
               co2_grams=-math.inf, task_accuracy={"t": math.nan})
    store.write_result(bad)
    problems = plausibility_problems(store, "e/bad")
    for column in ("compression_ratio", "kl_stderr", "energy_kwh", "co2_grams", "task_accuracy[t]"):
        assert any(p.startswith(column) for p in problems), (column, problems)
    store.write_result(dict(good, candidate_key="e/nan_acc", accuracy=math.nan))
    assert any(p.startswith("accuracy ") for p in plausibility_problems(store, "e/nan_acc"))


def test_a_result_failing_the_blocking_check_stops_its_run_with_a_clear_error(data_root, tmp_path, monkeypatch):
    from greenai_dagster import runner
    from greenai_dagster.core import pipeline
    from greenai_dagster.core.storage.store import ResultsStore
    from greenai_dagster.resources import GpuResource, ResultsStoreResource

    store = ResultsStore(tmp_path / "r.duckdb")
    store.create_experiment("nan_exp", "m", "d", {}, str(tmp_path))     # the steps open its record first
    key = "nan_exp/ep001_int8_dynamic"
    row = {"candidate_key": key, "experiment": "nan_exp", "episode": 1, "strategy_id": "ep001_int8_dynamic",
           "accuracy": 0.5, "kl_divergence": 0.1, "top1_agreement": 0.9, "ppl_ratio": 1.1, "model_size_gb": 0.1,
           "latency_ms": 5.0, "memory_gb": 0.2, "perplexity": 12.0, "compression_ratio": math.inf,
           "checkpoint_path": str(tmp_path)}

    def fake_benchmark(results_store, exp, candidate_key, device="cpu"):
        results_store.write_result(row)
        return results_store.result(candidate_key)

    def fake_compress(results_store, exp, candidate_key, device="cpu"):   # the check under test follows the benchmark
        return {"strategy": {"strategy_id": "ep001_int8_dynamic", "steps": []}, "compression_time_s": 0.0,
                "compression_energy_kwh": 0.0, "size_gb": 0.1, "checkpoint_path": str(tmp_path)}

    monkeypatch.setattr(pipeline, "benchmark_candidate", fake_benchmark)
    monkeypatch.setattr(pipeline, "compress_candidate", fake_compress)
    instance = runner.dagster_instance()     # `_run_stage` registers the candidate's (experiment, strategy) keys
    resources = {"store": ResultsStoreResource(path=str(store.path)), "gpu": GpuResource(device="cpu")}
    with pytest.raises(EvaluationError) as err:
        runner._run_stage("candidate", key, instance, resources)
    assert err.value.code == "E004" and "benchmark_result_is_plausible" in str(err.value)
    assert "compression_ratio is not finite" in str(err.value)
