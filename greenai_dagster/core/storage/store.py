"""ResultsStore: results as one immutable Parquet file per write; experiments, strategies, frontier in DuckDB.

Results (many writers). Each `write_result` (and each re-write of a row: `write_full_accuracy`, the
frontier flag of `write_frontier`) writes the whole row once, as its own Parquet file, under
`<db stem>_results/<experiment>/<candidate key>.<written_ns>-<random>.parquet` beside the DuckDB file: to a
hidden temp name in the same folder (`.<name>.tmp`, never matched by a read), fsynced, then `os.replace`d
into place, so a reader sees the whole row or nothing. Writers of results never open the DuckDB file, so
N experiments writing rows at once never queue on its lock (benchmarks/concurrent_writers.py measures 2, 4
and 8 writer processes). Re-writes of one experiment's rows (read-modify-write) take a flock on that
experiment's folder (`.lock`) so two of them never undo each other; different experiments never wait.
The one-current-row rule: every version carries `written_ns` (time_ns of the write, strictly increasing
within a process); for each candidate_key the version with the highest written_ns is the row, older ones
are history. `results` is a view over `results_compacted` (a DuckDB table) UNION ALL BY NAME
`read_parquet(<files>, union_by_name=true)` that keeps that row: `results()`, `result()`, `baseline()`,
`greenai query`, reports and the frontier all read it. `compact()` (`greenai compact`) folds the files
into `results_compacted` and deletes them (many small files make every read slower); reads are the same
before and after. A zero-row `_schema.v<N>.parquet` holds the current columns, so the view always has
every column with its type, even with no row written yet. The rows of a file from before this layout
move into `results_compacted` on upgrade (core/storage/schema.py, version 7).

Other tables (`experiments`, `strategies`, `frontier`, `experiment_facts`; schema versions: core/storage/schema.py)
stay in one DuckDB file. Each write is one transaction on a short-lived connection: DuckDB allows one
process at a time to hold the file for writing, and Dagster's webserver, daemon, sensor-launched runs and
CLI runs are different processes. Before opening the file, a process takes its turn on a kernel flock
beside it (`<file>.lock`: one writer or many readers), so concurrent experiments queue instead of polling
DuckDB; a holder outside the project (a DuckDB shell) is waited for with jittered exponential backoff. No
write is lost; only a lock held past LOCK_TIMEOUT_S ends in E007 naming the holder. A connection's body
must not call the store again (the inner call would wait for the outer one's turn). Reads of results
hold the shared turn, so compaction (which holds the exclusive one) never deletes a file mid-read.
Any DuckDB client can read the file: `greenai query "SELECT ..."`; a plain `duckdb` shell sees `results`
too (a view stored in the file over `<results folder>/**/*.parquet`, re-pointed when the folder moves).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import duckdb

from greenai_dagster.core.errors import DiskFull, OutOfMemory
from greenai_dagster.core.redact import redact, redact_obj
from greenai_dagster.core.storage.schema import RESULT_COLUMNS_DDL, SCHEMA_VERSION, TABLES, file_version, migrate

SCHEMA = TABLES   # the current schema (core/storage/schema.py keeps the versions and migrations)

RESULT_COLUMNS = [
    "candidate_key", "experiment", "episode", "strategy_id", "methods", "is_baseline", "accuracy",
    "accuracy_stderr", "perplexity", "latency_ms", "prefill_ms", "throughput_tokens_per_s", "memory_gb",
    "model_size_gb", "compression_ratio", "energy_kwh", "co2_grams", "compression_time_s",
    "compression_energy_kwh", "compression_co2_grams", "eval_time_s", "load_time_s", "eval_energy_kwh", "eval_co2_grams",
    "checkpoint_path", "task_accuracy", "conditions",
    # the full set (every written item), evaluated for the baseline and frontier members only
    "accuracy_full", "accuracy_full_stderr", "full_eval_time_s", "task_accuracy_full",
    # fidelity to the baseline (core.evaluation.fidelity), flips (core.evaluation.flips), the quality gate (core.search.gate)
    "kl_divergence", "kl_stderr", "top1_agreement", "top1_stderr", "ppl_ratio", "ppl_ratio_low", "ppl_ratio_high",
    "fidelity_tokens", "item_correct", "task_chance", "flips", "degraded", "degraded_reason",
    # serving energy, measured around the decode loop of the runtime probe (core.evaluation.energy)
    "energy_j_per_token",
    # fidelity on the baseline's own samples (core.evaluation.sampled_text); NULL where not measured
    "kl_sampled", "kl_sampled_stderr", "top1_sampled",
]
JSON_COLUMNS = ("task_accuracy", "conditions", "task_accuracy_full", "item_correct", "task_chance", "flips")
NULLABLE_DOUBLES = ("accuracy_full", "accuracy_full_stderr", "full_eval_time_s", "kl_stderr", "top1_stderr",
                    "energy_j_per_token", "throughput_tokens_per_s", "accuracy_stderr", "energy_kwh", "co2_grams",
                    "compression_energy_kwh", "compression_co2_grams", "eval_energy_kwh", "eval_co2_grams",
                    "compression_ratio", "kl_sampled", "kl_sampled_stderr", "top1_sampled")


def _plain_full_set(row: dict) -> dict:
    """Full-set columns are NULL until scored; pandas reads NULL doubles as NaN, we keep None."""
    for column in NULLABLE_DOUBLES:
        value = row.get(column)
        if value is not None and value != value:
            row[column] = None
    return row


def _decoded(row: dict) -> dict:
    """A results row as plain Python: JSON columns parsed, NULLs as None, flags as bool."""
    _plain_full_set(row)
    for column in JSON_COLUMNS:
        value = row.get(column)
        row[column] = json.loads(value) if isinstance(value, str) else (value if isinstance(value, dict) else {})
    row["is_pareto"] = bool(row["is_pareto"])
    degraded = row.get("degraded")
    row["degraded"] = bool(degraded) if degraded == degraded and degraded is not None else False
    return row


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


LOCK_WAIT_FIRST_S = 0.005   # first wait for another process's write lock; doubled per retry ...
LOCK_WAIT_MAX_S = 0.1       # ... up to this, each with random jitter so waiting writers do not retry in step
LOCK_TIMEOUT_S = 60.0       # in all, then E007 naming the holder (one write waits ~N x 0.15 s on a busy 2-core box)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _lock_holder(text: str) -> str:
    """'python3 (PID 123)' from DuckDB's lock message, where it says."""
    found = re.search(r"held in (\S+) \(PID (\d+)\)", text)
    return f" by {Path(found.group(1)).name} (PID {found.group(2)})" if found else ""


_last_ns = 0


def _next_ns() -> int:
    """time_ns of a write, strictly increasing within this process (two writes of one row in the same
    nanosecond, or a clock stepped back, must still order: the later write is the current row)."""
    global _last_ns
    _last_ns = max(time.time_ns(), _last_ns + 1)
    return _last_ns


def _safe(name: str) -> str:
    """A name as one path component, injective and without '.' (the file name's separator): percent-encoded;
    a name too long for a file name is cut and made unique by its hash (the row itself keeps the full name)."""
    quoted = quote(name, safe="").replace(".", "%2E") or "%00"
    return quoted if len(quoted) <= 120 else quoted[:100] + "~" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _literal(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


SCHEMA_FILE = f"_schema.v{SCHEMA_VERSION}.parquet"
TEMP_MAX_AGE_S = 3600.0     # compaction removes temp files of writers killed mid-write older than this
CURRENT_ROW = "QUALIFY row_number() OVER (PARTITION BY candidate_key ORDER BY written_ns DESC NULLS LAST) = 1"


class ResultsStore:
    def __init__(self, path: str | Path, lock_timeout_s: float = LOCK_TIMEOUT_S, results_dir: str | Path | None = None):
        self.path = Path(path)
        # one folder per DuckDB file, beside it (two files in one folder never share rows)
        self.results_dir = Path(results_dir) if results_dir else self.path.with_name(self.path.stem + "_results")
        self.lock_timeout_s = lock_timeout_s
        self.lock_waits = 0       # times this instance found the file locked by another process, and ...
        self.lock_wait_s = 0.0    # ... the seconds it waited for it (benchmarks/concurrent_writers.py reports both)
        self._current = False     # schema checked (and migrated) by this instance already

    @contextmanager
    def connect(self, read_only: bool = False):
        """A short-lived connection; DuckDB lock and I/O failures become E007 (never a raw traceback).
        A file from an older schema is migrated first (core/storage/schema.py), also when only read, and the
        `results` view stored in it is (re)pointed at this store's results folder."""
        if read_only and not self.path.exists():
            read_only = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DiskFull(f"cannot create {self.path.parent}: {exc.strerror}.") from exc
        if read_only and not self._current:
            with self._open(True, {}) as con:
                stale = (file_version(con) or SCHEMA_VERSION) < SCHEMA_VERSION or not self._view_current(con)
            if stale:
                with self._open(False, {}) as con:
                    self._migrate(con)
            self._current = True
        with self._open(read_only, {}) as con:
            if not read_only:
                self._migrate(con)
            yield con

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

    @contextmanager
    def _turn(self, exclusive: bool, lock_path: Path | None = None):
        """flock on `<file>.lock`: one writer or many readers of this project at a time, waiting without
        polling DuckDB (opening a DuckDB file to find it locked costs tens of ms of CPU per try, which
        N waiting processes on a small machine turn into minutes). Where the lock file cannot be made
        (read-only folder, no fcntl) DuckDB's own lock and the retry below still keep writes apart."""
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

    def _migrate(self, con) -> None:
        """A file from an older schema gains what was added since (core/storage/schema.py); a newer one is refused."""
        if self._current:
            return
        try:
            migrate(con)
        except ValueError as exc:
            raise DiskFull(f"the results database {self.path} was written by a newer greenai ({exc}).",
                           "Open it with that version, or point GREENAI_DATA at another folder.") from None
        if not self._view_current(con):
            self._schema_file()
            con.execute(f"CREATE OR REPLACE VIEW main.results AS {self._view_body()}")
        self._current = True

    def _view_body(self) -> str:
        """The stored view plain DuckDB clients read: the glob finds every file, at least the schema file."""
        files = _literal(self.results_dir.resolve() / "**" / "*.parquet")
        return (f"SELECT * EXCLUDE (written_ns) FROM (SELECT * FROM main.results_compacted UNION ALL BY NAME "
                f"SELECT * FROM read_parquet({files}, union_by_name=true)) {CURRENT_ROW}")

    def _view_current(self, con) -> bool:
        found = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'results' AND schema_name = 'main' "
                            "AND NOT temporary").fetchone()
        return bool(found) and _literal(self.results_dir.resolve() / "**" / "*.parquet") in found[0] \
            and self._schema_path().exists()

    @contextmanager
    def transaction(self):
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # experiments -------------------------------------------------------------------------------
    def create_experiment(self, name: str, model: str, dataset: str, config: dict, output_dir: str) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT INTO experiments VALUES (?, ?, ?, ?, 'active', NULL, ?, ?, NULL) ON CONFLICT (name) DO NOTHING",
                [name, redact(model), dataset, redact(json.dumps(redact_obj(config))), output_dir, now()])

    def experiment(self, name: str) -> dict | None:
        with self.connect(read_only=True) as con:
            rows = con.execute("SELECT * FROM experiments WHERE name = ?", [name]).fetchdf().to_dict("records")
        if not rows:
            return None
        row = rows[0]
        row["config"] = json.loads(row["config"])
        return row

    def active_experiments(self) -> list[str]:
        with self.connect(read_only=True) as con:
            return [r[0] for r in con.execute("SELECT name FROM experiments WHERE status = 'active' ORDER BY created_at").fetchall()]

    def finish_experiment(self, name: str, reason: str) -> None:
        with self.transaction() as con:
            con.execute("UPDATE experiments SET status = 'finished', termination_reason = ?, finished_at = ? WHERE name = ?",
                        [reason, now(), name])

    # strategies --------------------------------------------------------------------------------
    def add_strategy(self, candidate_key: str, experiment: str, episode: int, strategy: dict) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT INTO strategies VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, ?) ON CONFLICT (candidate_key) DO NOTHING",
                [candidate_key, experiment, episode, strategy["strategy_id"], redact(json.dumps(redact_obj(strategy))),
                 redact(strategy.get("reasoning", "")), now()])

    def set_strategy_status(self, candidate_key: str, status: str, error: str | None = None) -> None:
        with self.transaction() as con:
            con.execute("UPDATE strategies SET status = ?, error = ? WHERE candidate_key = ?",
                        [status, redact(error), candidate_key])

    def strategy(self, candidate_key: str) -> dict | None:
        with self.connect(read_only=True) as con:
            row = con.execute("SELECT strategy, episode, experiment, status FROM strategies WHERE candidate_key = ?",
                              [candidate_key]).fetchone()
        if row is None:
            return None
        return {"strategy": json.loads(row[0]), "episode": row[1], "experiment": row[2], "status": row[3]}

    def strategies(self, experiment: str) -> list[dict]:
        with self.connect(read_only=True) as con:
            df = con.execute("SELECT * FROM strategies WHERE experiment = ? ORDER BY episode", [experiment]).fetchdf()
        rows = df.to_dict("records")
        for r in rows:
            r["strategy"] = json.loads(r["strategy"])
        return rows

    # results: one Parquet file per write (module docstring) ----------------------------------------
    def _schema_path(self) -> Path:
        return self.results_dir / SCHEMA_FILE

    def _schema_file(self) -> Path:
        """The zero-row file holding every current column: the view's columns and types never depend on
        which rows happen to exist, and its glob always matches a file."""
        path = self._schema_path()
        if not path.exists():
            self._write_parquet(path, [])
        return path

    def _write_parquet(self, final: Path, rows: list[dict]) -> None:
        """rows (results columns by name) as one Parquet file, atomically: temp name, fsync, rename, fsync folder."""
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with duckdb.connect() as mem:       # in memory: the same column types as the DuckDB table
                mem.execute(f"CREATE TABLE r ({RESULT_COLUMNS_DDL})")
                for row in rows:
                    names = list(row)
                    mem.execute(f"INSERT INTO r ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                                [row[n] for n in names])
                mem.execute(f"COPY r TO {_literal(tmp)} (FORMAT parquet)")
            _fsync(tmp)
            os.replace(tmp, final)
            _fsync(final.parent, directory=True)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise DiskFull(f"disk full while writing the result file {final}.",
                               "Free disk space and run again; results written before are kept.") from None
            raise DiskFull(f"cannot write the result file {final}: {exc.strerror or exc}.",
                           "Check the folder's permissions and free space, then run again.") from None
        except duckdb.Error as exc:
            tmp.unlink(missing_ok=True)
            if "no space left" in str(exc).lower():
                raise DiskFull(f"disk full while writing the result file {final}.",
                               "Free disk space and run again; results written before are kept.") from None
            raise DiskFull(f"cannot write the result file {final}: {_first_line(exc)}",
                           "Check the folder's permissions and free space, then run again.") from None

    def _write_version(self, row: dict) -> Path:
        """One new version of a row (all columns): the current one from now on, by its written_ns."""
        ns = _next_ns()
        row = {**row, "written_ns": ns}
        final = self.results_dir / _safe(row["experiment"]) / \
            f"{_safe(row['candidate_key'])}.{ns:020d}-{uuid.uuid4().hex[:8]}.parquet"
        self._write_parquet(final, [row])
        return final

    @contextmanager
    def _experiment_turn(self, experiment: str):
        """Read-modify-write of one experiment's rows, one process at a time (other experiments never wait)."""
        folder = self.results_dir / _safe(experiment)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DiskFull(f"cannot create {folder}: {exc.strerror}.") from exc
        with self._turn(exclusive=True, lock_path=folder / ".lock"):
            yield

    def _row_files(self, experiment: str | None = None, candidate_key: str | None = None) -> list[Path]:
        """Finished row files (a temp file never ends in .parquet), of one experiment / candidate if given."""
        if not self.results_dir.is_dir():
            return []
        folders = [self.results_dir / _safe(experiment)] if experiment is not None else \
            [entry for entry in self.results_dir.iterdir() if entry.is_dir()]
        prefix = _safe(candidate_key) + "." if candidate_key is not None else ""
        found = []
        for folder in folders:
            try:
                found += [folder / name for name in os.listdir(folder)
                          if name.endswith(".parquet") and not name.startswith(".") and name.startswith(prefix)]
            except FileNotFoundError:
                continue
        return sorted(found)

    def _current_sql(self, files: list[Path], where: str = "", keep_written_ns: bool = False) -> str:
        """The current row per candidate_key from the compacted table and the given files (plus the schema
        file, so the list is never empty and every column is there)."""
        listed = ", ".join(_literal(f) for f in [self._schema_file(), *files])
        where = f" WHERE {where}" if where else ""
        return (f"SELECT *{'' if keep_written_ns else ' EXCLUDE (written_ns)'} FROM ("
                f"SELECT * FROM main.results_compacted{where} UNION ALL BY NAME "
                f"SELECT * FROM read_parquet([{listed}], union_by_name=true){where}) {CURRENT_ROW}")

    def _raw_rows(self, con, where: str, params: list, files: list[Path]) -> list[dict]:
        """Current rows as stored (JSON as text, NULL as None), for writing a new version of them."""
        cursor = con.execute(self._current_sql(files, where), params + params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values)) for values in cursor.fetchall()]

    def write_result(self, row: dict) -> None:
        """A (re-)measured row: a new version, the current one from now on; the frontier flag starts unset."""
        values = {c: redact(json.dumps(row.get(c)) if c in JSON_COLUMNS and row.get(c) is not None else row.get(c))
                  for c in RESULT_COLUMNS}     # redact: strings only; numbers pass through
        with self._experiment_turn(row["experiment"]):
            self._write_version({**values, "is_pareto": False, "created_at": now()})

    def results(self, experiment: str, include_baseline: bool = False) -> list[dict]:
        where = "experiment = ?" + ("" if include_baseline else " AND NOT is_baseline")
        with self.connect(read_only=True) as con:
            df = con.execute(f"SELECT * FROM ({self._current_sql(self._row_files(experiment), where)}) ORDER BY episode",
                             [experiment, experiment]).fetchdf()
        return [_decoded(r) for r in df.to_dict("records")]

    def write_full_accuracy(self, candidate_key: str, accuracy: float, stderr: float, per_task: dict,
                            eval_time_s: float) -> None:
        """The full-set score added to the current row (a new version); no row, nothing written."""
        current = self._raw_row(candidate_key)
        if current is None:
            return
        with self._experiment_turn(current["experiment"]):
            current = self._raw_row(candidate_key)      # again, inside the turn: another re-write may have landed
            if current is not None:
                self._write_version({**current, "accuracy_full": accuracy, "accuracy_full_stderr": stderr,
                                     "task_accuracy_full": json.dumps(per_task), "full_eval_time_s": eval_time_s})

    def _raw_row(self, candidate_key: str) -> dict | None:
        with self.connect(read_only=True) as con:
            rows = self._raw_rows(con, "candidate_key = ?", [candidate_key], self._row_files(candidate_key=candidate_key))
        return rows[0] if rows else None

    def result(self, candidate_key: str) -> dict | None:
        with self.connect(read_only=True) as con:
            df = con.execute(self._current_sql(self._row_files(candidate_key=candidate_key), "candidate_key = ?"),
                             [candidate_key, candidate_key]).fetchdf()
        rows = df.to_dict("records")
        return _decoded(rows[0]) if rows else None

    def baseline(self, experiment: str) -> dict | None:
        rows = [r for r in self.results(experiment, include_baseline=True) if r["is_baseline"]]
        return rows[0] if rows else None

    def compact(self) -> dict:
        """Fold every row file into `results_compacted` (the current version of each candidate), then delete
        the files: reads get faster (one table instead of many files) and see the same rows. Holds the
        exclusive turn, so no read runs in between; a row file written meanwhile is not folded and, being
        newer, stays the current row. Killed after the commit, the files are still there and fold again."""
        with self.connect() as con:
            files = self._row_files()
            if files:
                keys = ", ".join(_literal(f) for f in files)
                con.execute("BEGIN TRANSACTION")
                try:
                    con.execute(f"INSERT OR REPLACE INTO main.results_compacted BY NAME "
                                f"SELECT * FROM ({self._current_sql(files, keep_written_ns=True)}) WHERE candidate_key "
                                f"IN (SELECT candidate_key FROM read_parquet([{keys}], union_by_name=true))")
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            rows = con.execute("SELECT count(*) FROM main.results_compacted").fetchone()[0]
            for f in files:
                f.unlink(missing_ok=True)
            stale = [p for p in self.results_dir.glob("*/.*.tmp") if time.time() - p.stat().st_mtime > TEMP_MAX_AGE_S]
            for p in stale:
                p.unlink(missing_ok=True)
        return {"files_folded": len(files), "rows_in_table": rows, "temp_files_removed": len(stale)}

    # frontier ----------------------------------------------------------------------------------
    def write_frontier(self, experiment: str, member_keys: list[str], hypervolume: float, episodes_seen: int) -> None:
        """Each row whose frontier flag changes gets a new version (under the experiment's turn), then the
        frontier row (DuckDB). Killed in between, the flags are right and the next frontier rewrites the row."""
        members = set(member_keys)
        with self._experiment_turn(experiment):
            with self.connect(read_only=True) as con:
                rows = self._raw_rows(con, "experiment = ?", [experiment], self._row_files(experiment))
            for row in rows:
                if bool(row["is_pareto"]) != (row["candidate_key"] in members):
                    self._write_version({**row, "is_pareto": row["candidate_key"] in members})
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO frontier VALUES (?, ?, ?, ?, ?)",
                        [experiment, json.dumps(member_keys), hypervolume, episodes_seen, now()])

    def frontier(self, experiment: str) -> dict | None:
        with self.connect(read_only=True) as con:
            row = con.execute("SELECT members, hypervolume, episodes_seen FROM frontier WHERE experiment = ?",
                              [experiment]).fetchone()
        return None if row is None else {"members": json.loads(row[0]), "hypervolume": row[1], "episodes_seen": row[2]}

    # facts about an experiment found while running (benchmark discriminates, objectives in use) ------
    def set_facts(self, experiment: str, facts: dict) -> None:
        merged = {**self.facts(experiment), **facts}
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO experiment_facts VALUES (?, ?, ?)",
                        [experiment, redact(json.dumps(redact_obj(merged), default=str)), now()])

    def facts(self, experiment: str) -> dict:
        with self.connect(read_only=True) as con:
            try:
                row = con.execute("SELECT facts FROM experiment_facts WHERE experiment = ?", [experiment]).fetchone()
            except duckdb.CatalogException:      # a file from before this table existed, opened read-only
                return {}
        return json.loads(row[0]) if row else {}

    def query(self, sql: str):
        """User SQL (`greenai query`): read-only, and with DuckDB's external access off, so it cannot read or
        write any other file (COPY ... TO, read_text, read_csv, ATTACH, extensions are refused). The current
        results rows are read into a temporary table `results` first (shadowing the stored view, whose
        files that SQL may no longer open)."""
        with self.connect(read_only=True) as con:
            con.execute(f"CREATE TEMP TABLE results AS {self._current_sql(self._row_files())}")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            return con.execute(sql).fetchdf()

    def non_finite(self, candidate_key: str) -> list[str]:
        """The DOUBLE columns of a result row holding NaN or +-inf (NULL is not NaN here, unlike in a dataframe)."""
        with self.connect(read_only=True) as con:
            current = self._current_sql(self._row_files(candidate_key=candidate_key), "candidate_key = ?")
            columns = [r[0] for r in con.execute(f"DESCRIBE {current}", [candidate_key, candidate_key]).fetchall()
                       if r[1] == "DOUBLE"]
            if not columns:
                return []
            checks = ", ".join(f"(isnan({c}) OR isinf({c}))" for c in columns)
            row = con.execute(f"SELECT {checks} FROM ({current})", [candidate_key, candidate_key]).fetchone()
        return [c for c, bad in zip(columns, row or []) if bad]
