"""ResultsStore: every experiment, strategy, result and frontier in one DuckDB file.

Tables: `experiments`, `strategies`, `results`, `frontier` (schema versions: core/schema.py). Each
write is one transaction on a short-lived connection: DuckDB allows one process at a time to hold
the file for writing, and Dagster's webserver, daemon, sensor-launched runs and CLI runs are
different processes. Before opening the file, a process takes its turn on a kernel flock beside
it (`<file>.lock`: one writer or many readers), so concurrent experiments queue instead of polling
DuckDB; a holder outside the project (a DuckDB shell) is waited for with jittered exponential
backoff. No write is lost; only a lock held past LOCK_TIMEOUT_S ends in E007 naming the holder
(benchmarks/concurrent_writers.py measures 2, 4 and 8 writer processes). A connection's body must
not call the store again (the inner call would wait for the outer one's turn).
Any DuckDB client can read the file: `greenai query "SELECT ..."`.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from greenai_dagster.core.errors import DiskFull, OutOfMemory
from greenai_dagster.core.redact import redact, redact_obj
from greenai_dagster.core.schema import SCHEMA_VERSION, TABLES, file_version, migrate

SCHEMA = TABLES   # the current schema (core/schema.py keeps the versions and migrations)

RESULT_COLUMNS = [
    "candidate_key", "experiment", "episode", "strategy_id", "methods", "is_baseline", "accuracy",
    "accuracy_stderr", "perplexity", "latency_ms", "prefill_ms", "throughput_tokens_per_s", "memory_gb",
    "model_size_gb", "compression_ratio", "energy_kwh", "co2_grams", "compression_time_s",
    "compression_energy_kwh", "compression_co2_grams", "eval_time_s", "load_time_s", "eval_energy_kwh", "eval_co2_grams",
    "checkpoint_path", "task_accuracy", "conditions",
    # the full set (every written item), evaluated for the baseline and frontier members only
    "accuracy_full", "accuracy_full_stderr", "full_eval_time_s", "task_accuracy_full",
    # fidelity to the baseline (core.fidelity), flips (core.flips), the quality gate (core.gate)
    "kl_divergence", "kl_stderr", "top1_agreement", "top1_stderr", "ppl_ratio", "ppl_ratio_low", "ppl_ratio_high",
    "fidelity_tokens", "item_correct", "task_chance", "flips", "degraded", "degraded_reason",
    # serving energy, measured around the decode loop of the runtime probe (core.energy)
    "energy_j_per_token",
]
JSON_COLUMNS = ("task_accuracy", "conditions", "task_accuracy_full", "item_correct", "task_chance", "flips")
NULLABLE_DOUBLES = ("accuracy_full", "accuracy_full_stderr", "full_eval_time_s", "kl_stderr", "top1_stderr",
                    "energy_j_per_token", "throughput_tokens_per_s", "accuracy_stderr", "energy_kwh", "co2_grams",
                    "compression_energy_kwh", "compression_co2_grams", "eval_energy_kwh", "eval_co2_grams",
                    "compression_ratio")


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


class ResultsStore:
    def __init__(self, path: str | Path, lock_timeout_s: float = LOCK_TIMEOUT_S):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.lock_waits = 0       # times this instance found the file locked by another process, and ...
        self.lock_wait_s = 0.0    # ... the seconds it waited for it (benchmarks/concurrent_writers.py reports both)
        self._current = False     # schema checked (and migrated) by this instance already

    @contextmanager
    def connect(self, read_only: bool = False, external_access: bool = True):
        """A short-lived connection; DuckDB lock and I/O failures become E007 (never a raw traceback).
        A file from an older schema is migrated first (core/schema.py), also when only read."""
        if read_only and not self.path.exists():
            read_only = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DiskFull(f"cannot create {self.path.parent}: {exc.strerror}.") from exc
        config = {} if external_access else {"enable_external_access": False, "lock_configuration": True}
        if read_only and not self._current:
            with self._open(True, {}) as con:
                old = (file_version(con) or SCHEMA_VERSION) < SCHEMA_VERSION
            if old:
                with self._open(False, {}) as con:
                    self._migrate(con)
            self._current = True
        with self._open(read_only, config) as con:
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
    def _turn(self, exclusive: bool):
        """flock on `<file>.lock`: one writer or many readers of this project at a time, waiting without
        polling DuckDB (opening a DuckDB file to find it locked costs tens of ms of CPU per try, which
        N waiting processes on a small machine turn into minutes). Where the lock file cannot be made
        (read-only folder, no fcntl) DuckDB's own lock and the retry below still keep writes apart."""
        try:
            import fcntl

            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
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
                self._wait_for_flock(fd, mode, started)
            yield
        finally:
            os.close(fd)     # releases the flock

    def _wait_for_flock(self, fd: int, mode: int, started: float) -> None:
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
                    raise DiskFull(
                        f"the results database {self.path} stayed locked by another greenai / dagster process for "
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
        """A file from an older schema gains what was added since (core/schema.py); a newer one is refused."""
        if self._current:
            return
        try:
            migrate(con)
            self._current = True
        except ValueError as exc:
            raise DiskFull(f"the results database {self.path} was written by a newer greenai ({exc}).",
                           "Open it with that version, or point GREENAI_DATA at another folder.") from None

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

    # results -----------------------------------------------------------------------------------
    def write_result(self, row: dict) -> None:
        values = [json.dumps(row.get(c)) if c in JSON_COLUMNS and row.get(c) is not None else row.get(c)
                  for c in RESULT_COLUMNS]
        values = [redact(v) for v in values]      # strings only; numbers pass through
        placeholders = ", ".join("?" for _ in RESULT_COLUMNS)
        with self.transaction() as con:
            con.execute("DELETE FROM results WHERE candidate_key = ?", [row["candidate_key"]])
            con.execute(f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}, created_at) VALUES ({placeholders}, ?)",
                        values + [now()])

    def results(self, experiment: str, include_baseline: bool = False) -> list[dict]:
        where = "experiment = ?" + ("" if include_baseline else " AND NOT is_baseline")
        with self.connect(read_only=True) as con:
            df = con.execute(f"SELECT * FROM results WHERE {where} ORDER BY episode", [experiment]).fetchdf()
        return [_decoded(r) for r in df.to_dict("records")]

    def write_full_accuracy(self, candidate_key: str, accuracy: float, stderr: float, per_task: dict,
                            eval_time_s: float) -> None:
        with self.transaction() as con:
            con.execute("UPDATE results SET accuracy_full = ?, accuracy_full_stderr = ?, task_accuracy_full = ?, "
                        "full_eval_time_s = ? WHERE candidate_key = ?",
                        [accuracy, stderr, json.dumps(per_task), eval_time_s, candidate_key])

    def result(self, candidate_key: str) -> dict | None:
        with self.connect(read_only=True) as con:
            df = con.execute("SELECT * FROM results WHERE candidate_key = ?", [candidate_key]).fetchdf()
        rows = df.to_dict("records")
        return _decoded(rows[0]) if rows else None

    def baseline(self, experiment: str) -> dict | None:
        rows = [r for r in self.results(experiment, include_baseline=True) if r["is_baseline"]]
        return rows[0] if rows else None

    # frontier ----------------------------------------------------------------------------------
    def write_frontier(self, experiment: str, member_keys: list[str], hypervolume: float, episodes_seen: int) -> None:
        with self.transaction() as con:
            con.execute("UPDATE results SET is_pareto = list_contains(?, candidate_key) WHERE experiment = ?",
                        [member_keys, experiment])
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
        write any other file (COPY ... TO, read_text, read_csv, ATTACH, extensions are refused)."""
        with self.connect(read_only=True, external_access=False) as con:
            return con.execute(sql).fetchdf()

    def non_finite(self, candidate_key: str) -> list[str]:
        """The DOUBLE columns of a result row holding NaN or +-inf (NULL is not NaN here, unlike in a dataframe)."""
        with self.connect(read_only=True) as con:
            columns = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'results' "
                "AND data_type = 'DOUBLE' ORDER BY ordinal_position").fetchall()]
            if not columns:
                return []
            checks = ", ".join(f"(isnan({c}) OR isinf({c}))" for c in columns)
            row = con.execute(f"SELECT {checks} FROM results WHERE candidate_key = ?", [candidate_key]).fetchone()
        return [c for c, bad in zip(columns, row or []) if bad]
