"""ResultsStore: results as one immutable Parquet file per write; experiments, strategies, frontier in DuckDB.

The store is composed of three parts, each in its own module, and adds the schema, the `results` view and
the domain methods (experiments, strategies, results, frontier, facts, query, compaction):

- core/storage/locks.py (`FlockTurns`): this project's processes take turns on a kernel flock beside the
  DuckDB file (one writer or many readers) and beside each experiment's results folder; waits are counted
  (`lock_waits`, `lock_wait_s`), a turn held past LOCK_TIMEOUT_S ends in E007 naming what stayed locked.
- core/storage/duckdb_file.py (`DuckDBFile`): short-lived connections to the DuckDB file, each in its
  turn; a holder outside the project (a DuckDB shell) waited for with jittered exponential backoff;
  DuckDB's I/O and memory errors as E007 / E003.
- core/storage/row_files.py (`RowFiles`): each write of a results row is its own Parquet file, written
  atomically; the current row of a candidate is its version with the highest written_ns; the columns.

Results (many writers). Writers of results never open the DuckDB file, so N experiments writing rows at
once never queue on its lock (benchmarks/concurrent_writers.py measures 2, 4 and 8 writer processes).
Re-writes of one experiment's rows (read-modify-write) take the turn on that experiment's folder
(`_experiment_turn`) so two of them never undo each other; different experiments never wait.
`results` is a view over `results_compacted` (a DuckDB table) UNION ALL BY NAME
`read_parquet(<files>, union_by_name=true)` that keeps the current row: `results()`, `result()`, `baseline()`,
`greenai query`, reports and the frontier all read it. `compact()` (`greenai compact`) folds the files
into `results_compacted` and deletes them (many small files make every read slower); reads are the same
before and after. The rows of a file from before this layout move into `results_compacted` on upgrade
(core/storage/schema.py, version 7).

Other tables (`experiments`, `strategies`, `frontier`, `experiment_facts`; schema versions: core/storage/schema.py)
stay in one DuckDB file. Each write is one transaction on a short-lived connection (`transaction`). No
write is lost; only a lock held past LOCK_TIMEOUT_S ends in E007 naming the holder. A connection's body
must not call the store again (the inner call would wait for the outer one's turn). Reads of results
hold the shared turn, so compaction (which holds the exclusive one) never deletes a file mid-read.
Any DuckDB client can read the file: `greenai query "SELECT ..."`; a plain `duckdb` shell sees `results`
too (a view stored in the file over `<results folder>/**/*.parquet`, re-pointed when the folder moves).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from greenai_dagster.core.errors import DiskFull
from greenai_dagster.core.redact import redact, redact_obj
from greenai_dagster.core.storage.duckdb_file import DuckDBFile
from greenai_dagster.core.storage.locks import LOCK_TIMEOUT_S
from greenai_dagster.core.storage.row_files import (CURRENT_ROW, JSON_COLUMNS, RESULT_COLUMNS, RowFiles, _decoded,
                                                    _literal, _safe)
from greenai_dagster.core.storage.schema import SCHEMA_VERSION, TABLES, file_version, migrate

# what callers import from here (the column lists and the lock timeout live in row_files and locks)
__all__ = ["JSON_COLUMNS", "LOCK_TIMEOUT_S", "RESULT_COLUMNS", "SCHEMA", "ResultsStore", "folder_of", "now"]

SCHEMA = TABLES   # the current schema (core/storage/schema.py keeps the versions and migrations)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def folder_of(experiment: dict) -> Path:
    """The folder of a stored experiment record: `<output_dir>/<name>`. The one place that rule is written
    (the steps, the drivers, the REST API and the family priors all ask here)."""
    return Path(experiment["output_dir"]) / experiment["name"]


class ResultsStore(DuckDBFile, RowFiles):
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

    def experiment_folder(self, name: str) -> Path | None:
        """Where experiment `name` keeps its files; None for an unknown experiment."""
        record = self.experiment(name)
        return folder_of(record) if record is not None else None

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

    # results: one Parquet file per write (core/storage/row_files.py) --------------------------------
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
            stale = self._delete_folded(files)
        return {"files_folded": len(files), "rows_in_table": rows, "temp_files_removed": stale}

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
