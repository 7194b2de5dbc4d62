"""DuckDB round trip: what is written reads back the same, and the frontier flag is set. A locked DuckDB is
E007 naming the process that holds it; a damaged or misplaced one is E007 too."""

import subprocess
import sys
import time

import duckdb
import pytest

from greenai_dagster.core.errors import DiskFull
from greenai_dagster.core.storage.store import RESULT_COLUMNS, ResultsStore
from tests.conftest import cli


def sample_row(key, episode, accuracy):
    row = {c: None for c in RESULT_COLUMNS}
    row.update(candidate_key=key, experiment="exp", episode=episode, strategy_id=key.split("/")[1], methods="gptq",
               is_baseline=episode == 0, accuracy=accuracy, latency_ms=10.0 + episode, memory_gb=1.0,
               model_size_gb=0.1 * (episode + 1), compression_ratio=2.0, task_accuracy={"t": accuracy},
               conditions={"device": "cpu"})
    return row


def test_experiment_strategy_result_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    store.create_experiment("exp", "m", "d", {"episodes": 3}, str(tmp_path))
    assert store.experiment("exp")["config"] == {"episodes": 3}
    assert store.active_experiments() == ["exp"]

    strategy = {"strategy_id": "ep001_gptq_w4g64", "steps": [{"method": "gptq", "params": {"bits": 4}}], "reasoning": "r"}
    store.add_strategy("exp/ep001_gptq_w4g64", "exp", 1, strategy)
    assert store.strategy("exp/ep001_gptq_w4g64")["strategy"] == strategy
    store.set_strategy_status("exp/ep001_gptq_w4g64", "done")

    store.write_result(sample_row("exp/baseline", 0, 0.5))
    store.write_result(sample_row("exp/ep001_gptq_w4g64", 1, 0.45))
    store.write_result(sample_row("exp/ep001_gptq_w4g64", 1, 0.47))  # rewrite replaces, never duplicates
    rows = store.results("exp")
    assert len(rows) == 1 and rows[0]["accuracy"] == 0.47 and rows[0]["task_accuracy"] == {"t": 0.47}
    assert store.baseline("exp")["accuracy"] == 0.5

    store.write_frontier("exp", ["exp/ep001_gptq_w4g64"], 0.25, 1)
    assert store.frontier("exp") == {"members": ["exp/ep001_gptq_w4g64"], "hypervolume": 0.25, "episodes_seen": 1}
    frame = store.query("SELECT strategy_id FROM results WHERE is_pareto")
    assert list(frame["strategy_id"]) == ["ep001_gptq_w4g64"]

    store.finish_experiment("exp", "max_episodes_reached")
    assert store.experiment("exp")["termination_reason"] == "max_episodes_reached"
    assert store.active_experiments() == []

    # Any DuckDB client can read the file.
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 2


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


def test_a_null_text_column_reads_as_none_beside_a_row_that_has_text(tmp_path):
    """A baseline (no degraded_reason) beside a degraded candidate: pandas read the baseline's NULL as NaN,
    which reached reports and JSON files as NaN; a NULL reads as None."""
    store = ResultsStore(tmp_path / "r.duckdb")
    store.create_experiment("exp", "m", "d", {}, str(tmp_path))
    store.write_result(sample_row("exp/baseline", 0, 0.5))
    degraded = sample_row("exp/ep001_gptq_w4g64", 1, 0.4)
    degraded.update(degraded=True, degraded_reason="KL 0.9 > 0.5")
    store.write_result(degraded)
    rows = {r["strategy_id"]: r for r in store.results("exp", include_baseline=True)}
    assert rows["baseline"]["degraded_reason"] is None and rows["baseline"]["degraded"] is False
    assert rows["ep001_gptq_w4g64"]["degraded_reason"] == "KL 0.9 > 0.5"
