"""Results as one immutable Parquet file per write (core/storage/row_files.py): atomic files, one current row per
candidate, compaction, and writes that never need the DuckDB lock."""

import fcntl
import os
import time

import duckdb
import pytest

from greenai_dagster.core.storage.row_files import _safe
from greenai_dagster.core.storage.store import ResultsStore
from tests.core.storage.test_store import sample_row


def store_with_rows(tmp_path) -> ResultsStore:
    store = ResultsStore(tmp_path / "r.duckdb")
    store.create_experiment("exp", "m", "d", {}, str(tmp_path))
    store.write_result(sample_row("exp/baseline", 0, 0.5))
    store.write_result(sample_row("exp/ep001_gptq_w4g64", 1, 0.45))
    store.write_result(sample_row("exp/ep002_int8.v2", 2, 0.40))    # a '.' in the key: still its own file name
    return store


def plain(rows: list[dict]) -> list[tuple]:
    return sorted((r["candidate_key"], r["accuracy"], r["is_pareto"], r["accuracy_full"], r["task_accuracy"]["t"])
                  for r in rows)


def test_each_write_is_its_own_file_and_a_half_written_one_is_never_read(tmp_path):
    store = store_with_rows(tmp_path)
    files = store._row_files("exp")
    assert len(files) == 3 and all(f.parent == store.results_dir / "exp" for f in files)
    first = {f: f.read_bytes() for f in files}
    store.write_result(sample_row("exp/ep001_gptq_w4g64", 1, 0.47))
    assert len(store._row_files("exp")) == 4
    assert all(f.read_bytes() == data for f, data in first.items())       # immutable: never rewritten in place
    before = plain(store.results("exp", include_baseline=True))

    # a writer killed mid-write leaves its temp file: half of a real row file, under the temp name
    newest = store._row_files(candidate_key="exp/ep001_gptq_w4g64")[-1]
    torn = newest.with_name(f".{newest.name}.deadbeef.tmp")
    torn.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    assert plain(store.results("exp", include_baseline=True)) == before
    assert store.query("SELECT count(*) AS n FROM results")["n"][0] == 3
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:      # a plain client's view too
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 3

    # a failure before the rename (here: the rename itself) leaves no row and no file behind
    real_replace = os.replace

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    os.replace = failing_replace
    try:
        with pytest.raises(Exception, match=r"^E007: disk full while writing the result file"):
            store.write_result(sample_row("exp/ep003_never", 3, 0.1))
    finally:
        os.replace = real_replace
    assert store.result("exp/ep003_never") is None
    assert not [p for p in (store.results_dir / "exp").iterdir() if "ep003" in p.name]

    old = time.time() - 7200
    os.utime(torn, (old, old))                     # compaction clears temp files of long-dead writers
    assert store.compact()["temp_files_removed"] == 1 and not torn.exists()
    assert plain(store.results("exp", include_baseline=True)) == before


def test_exactly_one_current_row_per_candidate_the_newest_write(tmp_path):
    store = store_with_rows(tmp_path)
    key = "exp/ep001_gptq_w4g64"
    store.write_result(sample_row(key, 1, 0.46))                   # grid --reprobe: re-measured
    store.write_full_accuracy(key, 0.44, 0.01, {"t": 0.44}, 12.0)  # full set added to the current row
    store.write_frontier("exp", [key], 0.25, 2)                    # frontier flag
    row = store.result(key)
    assert (row["accuracy"], row["accuracy_full"], row["task_accuracy_full"], row["is_pareto"]) == \
        (0.46, 0.44, {"t": 0.44}, True)
    assert len([r for r in store.results("exp") if r["candidate_key"] == key]) == 1
    frame = store.query("SELECT count(*) AS n, count(DISTINCT candidate_key) AS d FROM results")
    assert (frame["n"][0], frame["d"][0]) == (3, 3)
    assert len(store._row_files(candidate_key=key)) == 4           # history kept on disk, one row read

    # re-measuring resets what belonged to the old measurement (as the old DELETE + INSERT did)
    store.write_result(sample_row(key, 1, 0.48))
    row = store.result(key)
    assert row["accuracy"] == 0.48 and row["accuracy_full"] is None and row["is_pareto"] is False

    # the rule is the written_ns inside the row, not the file's name or age: a late-landing older version loses
    current = store._raw_row(key)
    newest = store._row_files(candidate_key=key)[-1]
    with duckdb.connect() as con:
        ns = con.execute(f"SELECT written_ns FROM read_parquet('{newest}')").fetchone()[0]
    late = newest.with_name(f"{_safe(key)}.99999999999999999999-late.parquet")      # sorts last, written last
    store._write_parquet(late, [{**current, "accuracy": 0.1, "written_ns": ns - 1}])
    assert store.result(key)["accuracy"] == 0.48
    newer = newest.with_name(f"{_safe(key)}.00000000000000000000-newer.parquet")    # sorts first
    store._write_parquet(newer, [{**current, "accuracy": 0.2, "written_ns": ns + 1}])
    assert store.result(key)["accuracy"] == 0.2 and len(store.results("exp")) == 2

def test_compaction_folds_files_into_the_table_and_reads_do_not_change(tmp_path):
    store = store_with_rows(tmp_path)
    store.write_result(sample_row("exp/ep001_gptq_w4g64", 1, 0.46))
    store.write_frontier("exp", ["exp/ep001_gptq_w4g64"], 0.25, 2)
    before = plain(store.results("exp", include_baseline=True))
    query_before = store.query("SELECT candidate_key, accuracy, is_pareto FROM results ORDER BY 1").values.tolist()
    files = len(store._row_files())
    assert files == 5

    assert store.compact() == {"files_folded": files, "rows_in_table": 3, "temp_files_removed": 0}
    assert store._row_files() == []
    assert plain(store.results("exp", include_baseline=True)) == before
    assert store.query("SELECT candidate_key, accuracy, is_pareto FROM results ORDER BY 1").values.tolist() == query_before
    assert store.baseline("exp")["accuracy"] == 0.5
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM results_compacted").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM results WHERE is_pareto").fetchone()[0] == 1

    # a write after compaction is newer than the folded row: it is the current row; compacting twice is harmless
    store.write_result(sample_row("exp/ep001_gptq_w4g64", 1, 0.49))
    assert store.result("exp/ep001_gptq_w4g64")["accuracy"] == 0.49 and len(store.results("exp")) == 2
    assert store.compact()["files_folded"] == 1 and store.compact()["files_folded"] == 0
    assert store.result("exp/ep001_gptq_w4g64")["accuracy"] == 0.49 and len(store.results("exp")) == 2


def test_result_writes_do_not_wait_for_the_duckdb_lock(tmp_path):
    """Another process in the middle of a long DuckDB write: results are still written, at once."""
    store = store_with_rows(tmp_path)
    fd = os.open(str(tmp_path / "r.duckdb") + ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        writer = ResultsStore(tmp_path / "r.duckdb", lock_timeout_s=0.3)
        started = time.monotonic()
        writer.write_result(sample_row("exp/ep009_new", 9, 0.3))
        assert time.monotonic() - started < 5.0 and writer.lock_waits == 0
    finally:
        os.close(fd)
    assert store.result("exp/ep009_new")["accuracy"] == 0.3


def test_user_sql_cannot_write_into_the_results_folder(tmp_path):
    store = store_with_rows(tmp_path)
    target = store.results_dir / "exp" / "forged.parquet"
    with pytest.raises(duckdb.Error, match="disabled"):
        store.query(f"COPY (SELECT * FROM results) TO '{target}' (FORMAT parquet)")
    with pytest.raises(duckdb.Error, match="disabled"):
        store.query(f"SELECT * FROM read_parquet('{store.results_dir}/**/*.parquet')")
    assert not target.exists()


def test_moved_data_folder_is_found_again(tmp_path):
    """The stored view names the folder; a store opened at the new place re-points it (plain clients too)."""
    store_with_rows(tmp_path / "a")
    (tmp_path / "a").rename(tmp_path / "b")
    moved = ResultsStore(tmp_path / "b" / "r.duckdb")
    assert len(moved.results("exp", include_baseline=True)) == 3
    with duckdb.connect(str(tmp_path / "b" / "r.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 3


def test_greenai_compact_and_query_read_the_same_rows(tmp_path, capsys):
    from greenai_dagster.cli import main

    store = store_with_rows(tmp_path)
    db = str(tmp_path / "r.duckdb")
    sql = "SELECT candidate_key, accuracy FROM results ORDER BY 1"
    assert main(["query", sql, "--db", db]) == 0
    before = capsys.readouterr().out
    assert "exp/ep002_int8.v2" in before and "0.45" in before
    assert main(["compact", "--db", db]) == 0
    assert "folded 3 row files" in capsys.readouterr().out and store._row_files() == []
    assert main(["query", sql, "--db", db]) == 0
    assert capsys.readouterr().out == before
    assert main(["compact", "--db", str(tmp_path / "none.duckdb")]) == 1
    assert capsys.readouterr().err.startswith("E")
