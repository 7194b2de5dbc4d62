"""Four experiments writing one store at once (the N = 4 cases of benchmarks/concurrent_writers.py):
every row present, none duplicated, no write failed on the lock, no traceback; result rows (one Parquet
file each) never wait for the DuckDB lock, and compaction keeps every row."""

import importlib.util

from tests.conftest import REPO

BENCH = REPO / "benchmarks" / "concurrent_writers.py"


def bench():
    spec = importlib.util.spec_from_file_location("concurrent_writers", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_four_writer_processes_lose_nothing(tmp_path):
    row = bench().measure(4, 3, tmp_path)
    assert row["rows_present"] == row["rows_expected"] == 12, row
    assert row["rows_lost"] == 0 and row["duplicate_rows"] == 0 and row["rows_per_writer_ok"], row
    assert row["failed_writes"] == 0 and row["writers_exit_nonzero"] == 0 and row["tracebacks"] == 0, row
    assert row["experiments_present"] == 4 and row["frontiers_complete"] == 4 and row["strategies_not_done"] == 0, row
    assert row["lock_waits"] > 0, row      # the writers did contend for the file (else this proves nothing)
    assert row["same_rows_after_compact"] and row["row_files"] >= 12, row


def test_four_result_writers_lose_nothing_and_never_wait_for_duckdb(tmp_path):
    row = bench().measure(4, 5, tmp_path, mode="results")
    assert row["rows_present"] == row["rows_expected"] == row["row_files"] == 20, row
    assert row["rows_lost"] == 0 and row["duplicate_rows"] == 0 and row["rows_per_writer_ok"], row
    assert row["failed_writes"] == 0 and row["writers_exit_nonzero"] == 0 and row["tracebacks"] == 0, row
    assert row["lock_waits"] == 0 and row["same_rows_after_compact"], row


def test_a_writer_outside_the_queue_is_waited_for_then_e007(tmp_path):
    """A process holding the file's flock past the timeout: E007 naming the wait, nothing written."""
    import fcntl
    import os

    import pytest

    from greenai_dagster.core.errors import DiskFull
    from greenai_dagster.core.storage.store import ResultsStore

    path = tmp_path / "r.duckdb"
    ResultsStore(path).create_experiment("e", "m", "d", {}, str(tmp_path))
    fd = os.open(str(path) + ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)      # as another greenai process in the middle of a write
    try:
        store = ResultsStore(path, lock_timeout_s=0.3)
        with pytest.raises(DiskFull, match=r"^E007: .*stayed locked .* Remedy: Wait for the other run"):
            store.create_experiment("e2", "m", "d", {}, str(tmp_path))
        assert store.lock_waits == 1 and store.lock_wait_s >= 0.3
    finally:
        os.close(fd)
    assert ResultsStore(path).experiment("e2") is None and ResultsStore(path).experiment("e") is not None
