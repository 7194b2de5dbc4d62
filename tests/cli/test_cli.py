"""The CLI: bad input gives the seed's error code, a remedy, a non-zero exit, and loses nothing; a method list
that leaves nothing to search stops before the baseline; `greenai query` cannot touch other files."""

import json

import pytest

from greenai_dagster.cli import main
from greenai_dagster.core.storage.paths import duckdb_path
from greenai_dagster.core.storage.store import RESULT_COLUMNS, ResultsStore
from tests.conftest import cli


@pytest.fixture()
def store_with_a_result(data_root):
    store = ResultsStore(duckdb_path())
    row = {c: None for c in RESULT_COLUMNS}
    row.update(candidate_key="keep_me/baseline", experiment="keep_me", episode=0, strategy_id="baseline",
               is_baseline=True, accuracy=0.5, task_accuracy={}, conditions={})
    store.write_result(row)
    yield store
    assert store.baseline("keep_me")["accuracy"] == 0.5  # earlier results intact after every failure


def run_cli(args, capsys):
    code = main(args)
    return code, capsys.readouterr()


def test_unknown_hub_model_offline_is_e006(store_with_a_result, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run_cli(["run", "-m", "no-such-org/no-such-model", "-e", "1"], capsys)
    assert code == 1 and out.err.startswith("E006:") and "Remedy:" in out.err


def test_missing_local_model_folder_is_e002(store_with_a_result, capsys, tmp_path):
    code, out = run_cli(["run", "-m", str(tmp_path / "nothing-here"), "-e", "1"], capsys)
    assert code == 1 and out.err.startswith("E002:") and "Remedy:" in out.err


def test_unknown_dataset_is_e004(store_with_a_result, capsys, tiny_model_dir):
    code, out = run_cli(["run", "-m", str(tiny_model_dir), "-d", "no_such_benchmark"], capsys)
    assert code == 1 and out.err.startswith("E004:") and "bigbench_hard" in out.err


def test_unwritable_output_dir_is_e007(store_with_a_result, capsys, tiny_model_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, out = run_cli(["run", "-m", str(tiny_model_dir), "-o", str(blocker / "sub")], capsys)
    assert code == 1 and out.err.startswith("E007:") and "Remedy:" in out.err


def test_bad_config_file_is_reported(store_with_a_result, capsys, tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text('{"episodes": 0}')
    code, out = run_cli(["run", "-c", str(bad)], capsys)
    assert code == 1 and "episodes" in out.err


def test_show_spec_prints_group_sizes_and_exits(capsys, tiny_model_dir, data_root):
    code, out = run_cli(["run", "-m", str(tiny_model_dir), "--show-spec"], capsys)
    assert code == 0
    assert "valid_group_sizes" in out.out and "[32, 64]" in out.out and "min_vram_gb" in out.out


def test_query_with_bad_sql_is_reported(store_with_a_result, capsys):
    code, out = run_cli(["query", "SELECT nope FROM nowhere"], capsys)
    assert code == 1 and out.err.startswith("E004:")


def test_hub_benchmark_offline_is_e006_naming_the_alternative(store_with_a_result, capsys, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    code, out = run_cli(["run", "-m", str(tiny_model_dir), "-d", "gsm8k", "-e", "1", "-n", "hub_bench"], capsys)
    assert code == 1 and out.err.startswith("E006:")  # refused before any run starts
    assert "gsm8k" in out.err and "-d generated_mc" in out.err


def test_benchmarks_lists_offline_status(capsys, data_root):
    code, out = run_cli(["benchmarks"], capsys)
    lines = {line.split()[0]: line for line in out.out.splitlines()}
    assert code == 0 and "offline" in lines["bigbench_hard"] and "generated_mc" in lines["commonsenseqa"]
    assert "nothing to download" in lines["generated_mc"] and "no longer serves" in lines["bigbench_hard"]


def test_hub_source_of_an_offline_benchmark_offline_is_e006_naming_the_local_data(store_with_a_result, capsys,
                                                                                  tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run_cli(["run", "-m", str(tiny_model_dir), "-d", "bigbench_hard", "--benchmark-source", "hub",
                         "-e", "1", "-n", "hub_bbh"], capsys)
    assert code == 1 and out.err.startswith("E006:") and "bbh_zeroshot" in out.err
    assert "--benchmark-source offline" in out.err


def test_benchmark_source_is_resolved_once_from_hub_reachability(monkeypatch, data_root):
    from greenai_dagster.core.data import benchmarks

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert benchmarks.resolve_source("bigbench_hard") == "offline"
    assert benchmarks.resolve_source("humaneval") == "offline"
    assert benchmarks.resolve_source("gsm8k") == "hub"             # no local data for the hub benchmarks
    assert benchmarks.resolve_source("bigbench_hard", "hub") == "hub"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(benchmarks, "hub_reachable", lambda timeout_s=2.0: True)   # the hub is a remote service
    assert benchmarks.resolve_source("bigbench_hard") == "hub"
    assert benchmarks.resolve_source("bigbench_commonsense") == "offline"          # has no standard twin
    bbh = benchmarks.prepare_benchmark("bigbench_hard", "hub")
    assert bbh.tasks == ["bbh_zeroshot"] and not bbh.offline and bbh.include_path is None
    code = benchmarks.prepare_benchmark("humaneval", "hub", allow_code_execution=True)
    assert code.tasks == ["humaneval"] and code.executes_code


def test_scores_are_read_from_any_lm_eval_filter():
    from greenai_dagster.core.data.task_files import task_score

    assert task_score({"acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.7}) == ("acc", 0.5, 0.1)
    assert task_score({"pass@1,create_test": 0.25, "pass@1_stderr,create_test": 0.05}) == ("pass@1", 0.25, 0.05)
    assert task_score({"exact_match,strict-match": 0.3, "exact_match_stderr,strict-match": 0.02,
                       "exact_match,flexible-extract": 0.4})[1] == 0.4


def test_query_export_and_the_api_read_the_deployments_store_not_a_local_path(data_root, tmp_path, monkeypatch,
                                                                              capsys):
    """`cluster`: the shared file the runs write (resources.resources_for), not the local default under
    GREENAI_DATA, which these commands once opened by path."""
    from greenai_dagster.api import service

    shared = tmp_path / "shared.duckdb"
    monkeypatch.setenv("GREENAI_DEPLOYMENT", "cluster")
    monkeypatch.setenv("GREENAI_SHARED_DUCKDB", str(shared))
    ResultsStore(shared).create_experiment("on_the_shared_store", "m", "d", {}, str(tmp_path))
    code, out = run_cli(["query", "SELECT name FROM experiments"], capsys)
    assert code == 0 and "on_the_shared_store" in out.out
    assert service.store().path == shared and "on_the_shared_store" in service.store().active_experiments()
    code, out = run_cli(["export", "on_the_shared_store", "baseline", "-o", str(tmp_path / "m.tar.gz")], capsys)
    assert code == 1 and out.err.startswith("E004: no checkpoint for on_the_shared_store/baseline")


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
