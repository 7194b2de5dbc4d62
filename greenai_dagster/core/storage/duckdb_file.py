"""Opening the DuckDB file: waiting for DuckDB's own lock, and its failures as the project's errors.

The tables other than results (`experiments`, `strategies`, `frontier`, `experiment_facts`; schema:
core/storage/schema.py) stay in one DuckDB file. Each write is one transaction on a short-lived
connection: DuckDB allows one process at a time to hold the file for writing. This project's processes
first take their turn on the kernel flock beside the file (core/storage/locks.py), so they never spin on
DuckDB's lock; a holder outside the project (a DuckDB shell) is waited for by retrying the open with
jittered exponential backoff (LOCK_WAIT_FIRST_S doubling up to LOCK_WAIT_MAX_S, each wait times a random
0.5-1, so waiting writers do not retry in step), up to the store's lock_timeout_s, then E007 naming the
holder where DuckDB says who it is. DuckDB's I/O errors become E007 (disk full, the path is a directory,
not a DuckDB file, cannot open or write) and its out-of-memory errors E003, never a raw traceback.

`DuckDBFile` is one part of `ResultsStore` (core/storage/store.py): it reads the store's `path` and
`lock_timeout_s`, and adds its waits to the store's `lock_waits` / `lock_wait_s` (core/storage/locks.py).
"""

from __future__ import annotations

import random
import re
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from greenai_dagster.core.errors import DiskFull, OutOfMemory
from greenai_dagster.core.storage.locks import FlockTurns

LOCK_WAIT_FIRST_S = 0.005   # first wait for another process's write lock; doubled per retry ...
LOCK_WAIT_MAX_S = 0.1       # ... up to this, each with random jitter so waiting writers do not retry in step


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _lock_holder(text: str) -> str:
    """'python3 (PID 123)' from DuckDB's lock message, where it says."""
    found = re.search(r"held in (\S+) \(PID (\d+)\)", text)
    return f" by {Path(found.group(1)).name} (PID {found.group(2)})" if found else ""


class DuckDBFile(FlockTurns):
    """Connections to the DuckDB file at `path`, each opened in its turn (FlockTurns) and closed after use."""

    @contextmanager
    def _open(self, read_only: bool, config: dict):
        """This project's processes take turns in the kernel's queue first (`_turn`), so they never spin
        on DuckDB's lock; a holder outside the project (a DuckDB shell) is waited for by retrying."""
        with self._turn(exclusive=not read_only):
            con = self._duckdb_connect(read_only, config)
            try:
                yield con
            except duckdb.IOException as exc:
                raise self._io_error(exc) from None
            except duckdb.OutOfMemoryException as exc:
                raise OutOfMemory(f"the results database {self.path} could not get memory ({_first_line(exc)}).",
                                  "Free memory (other processes, a smaller model), then run again; results written "
                                  "before are kept.") from None
            finally:
                con.close()

    def _duckdb_connect(self, read_only: bool, config: dict):
        started = time.monotonic()
        deadline, wait = started + self.lock_timeout_s, LOCK_WAIT_FIRST_S
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=config)
                if wait > LOCK_WAIT_FIRST_S:
                    self.lock_wait_s += time.monotonic() - started
                return con
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" in text.lower():
                    if time.monotonic() < deadline:
                        self.lock_waits += 1
                        time.sleep(min(wait, max(deadline - time.monotonic(), 0.0)) * random.uniform(0.5, 1.0))
                        wait = min(wait * 2, LOCK_WAIT_MAX_S)
                        continue
                    self.lock_wait_s += time.monotonic() - started
                    raise DiskFull(
                        f"the results database {self.path} is locked{_lock_holder(text)} and stayed locked for "
                        f"{self.lock_timeout_s:g} s.",
                        "DuckDB lets one process write at a time: wait for the other greenai / dagster process to "
                        "finish (or stop it), then run again; results written so far are kept.") from None
                raise self._io_error(exc) from None
            except duckdb.OutOfMemoryException as exc:
                raise OutOfMemory(f"the results database {self.path} could not get memory ({_first_line(exc)}).",
                                  "Free memory (other processes, a smaller model), then run again; results written "
                                  "before are kept.") from None
            except duckdb.Error as exc:
                raise self._io_error(exc) from None

    def _io_error(self, exc: BaseException) -> DiskFull:
        text = _first_line(exc)
        if "no space left" in text.lower():
            return DiskFull(f"disk full while writing the results database {self.path}.",
                            "Free disk space and run again; results written before are kept.")
        if self.path.is_dir():
            return DiskFull(f"the results database path {self.path} is a directory.",
                            "Point GREENAI_DATA (or --db) at a folder where greenai.duckdb can be a file.")
        if "not a valid duckdb" in text.lower() or "invalid" in text.lower() and "database" in text.lower():
            return DiskFull(f"{self.path} is not a DuckDB database ({text}).",
                            "Move the file aside (it is not one this project wrote) or point GREENAI_DATA elsewhere.")
        return DiskFull(f"cannot open or write the results database {self.path}: {text}",
                        "Check the file's permissions and free space, then run again; results written before are kept.")
