"""Turns on a kernel flock: one writer or many readers of this project's processes at a time.

Dagster's webserver, daemon, sensor-launched runs and CLI runs are different processes sharing one results
store. Before opening the DuckDB file, a process takes its turn on a kernel flock beside it (`<file>.lock`:
one writer or many readers), so concurrent experiments queue instead of polling DuckDB (opening a DuckDB
file to find it locked costs tens of ms of CPU per try; a non-blocking flock is one system call of
microseconds). Reads of results hold the shared turn, so compaction (which holds the exclusive one) never
deletes a row file mid-read. Re-writes of one experiment's result rows (read-modify-write) take the same
kind of turn on that experiment's folder (`<results folder>/<experiment>/.lock`), so two of them never undo
each other while different experiments never wait. No write is lost; only a turn not given within
LOCK_TIMEOUT_S ends in E007 (DiskFull) naming what stayed locked. A connection's body must not call the
store again (the inner call would wait for the outer one's turn).

`FlockTurns` is one part of `ResultsStore` (core/storage/store.py): it reads the store's `path` (the DuckDB
file, whose `.lock` is the default) and `lock_timeout_s`, and counts `lock_waits` (times a turn was not
free at once) and `lock_wait_s` (seconds waited), which the store reports and
benchmarks/concurrent_writers.py reads; the DuckDB file's own retries (core/storage/duckdb_file.py) add
to the same counts.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

from greenai_dagster.core.errors import DiskFull

LOCK_TIMEOUT_S = 60.0       # in all, then E007 naming the holder (one write waits ~N x 0.15 s on a busy 2-core box)


class FlockTurns:
    """One writer or many readers per lock file, waited for by polling up to `lock_timeout_s`.
    Needs `path`, `lock_timeout_s`, `lock_waits` and `lock_wait_s` on the instance (ResultsStore sets them)."""

    path: Path
    lock_timeout_s: float
    lock_waits: int
    lock_wait_s: float

    @contextmanager
    def _turn(self, exclusive: bool, lock_path: Path | None = None):
        """flock on `<file>.lock`: one writer or many readers of this project at a time, waiting without
        polling DuckDB (opening a DuckDB file to find it locked costs tens of ms of CPU per try, which
        N waiting processes on a small machine turn into minutes). Where the lock file cannot be made
        (read-only folder, no fcntl) DuckDB's own lock and the retry in duckdb_file.py still keep writes apart."""
        try:
            import fcntl

            lock_path = lock_path or self.path.with_name(self.path.name + ".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except (ImportError, OSError):
            yield
            return
        try:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            started = time.monotonic()
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                self.lock_waits += 1
                self._wait_for_flock(fd, mode, started, lock_path)
            yield
        finally:
            os.close(fd)     # releases the flock

    def _wait_for_flock(self, fd: int, mode: int, started: float, lock_path: Path) -> None:
        """Poll the flock every 1-4 ms until our turn, at most lock_timeout_s (a non-blocking flock is one
        system call of microseconds, unlike a DuckDB open; a blocking flock could not honour the timeout)."""
        import fcntl

        deadline = started + self.lock_timeout_s
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                self.lock_wait_s += time.monotonic() - started
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.lock_wait_s += time.monotonic() - started
                    what = f"results folder {lock_path.parent}" if lock_path.name == ".lock" else \
                        f"results database {self.path}"
                    raise DiskFull(
                        f"the {what} stayed locked by another greenai / dagster process for "
                        f"{self.lock_timeout_s:g} s.",
                        "Wait for the other run to finish (or stop it), then run again; results written so far are "
                        "kept.") from None
                time.sleep(random.uniform(0.001, 0.004))
