"""Results rows as one immutable Parquet file per write, and the SQL that reads the current row of each.

Each `write_result` (and each re-write of a row: `write_full_accuracy`, the frontier flag of
`write_frontier`) writes the whole row once, as its own Parquet file, under
`<db stem>_results/<experiment>/<candidate key>.<written_ns>-<random>.parquet` beside the DuckDB file: to a
hidden temp name in the same folder (`.<name>.tmp`, never matched by a read), fsynced, then `os.replace`d
into place, so a reader sees the whole row or nothing. Writers of results never open the DuckDB file, so
N experiments writing rows at once never queue on its lock (benchmarks/concurrent_writers.py measures 2, 4
and 8 writer processes).

The one-current-row rule: every version carries `written_ns` (time_ns of the write, strictly increasing
within a process); for each candidate_key the version with the highest written_ns is the row, older ones
are history (CURRENT_ROW). `_current_sql` reads `results_compacted` (a DuckDB table, where compaction
folds the files) UNION ALL BY NAME `read_parquet(<files>, union_by_name=true)` and keeps that row. A
zero-row `_schema.v<N>.parquet` holds the current columns, so a read always has every column with its
type, even with no row written yet. Compaction deletes the folded files and the temp files of writers
killed mid-write (`_delete_folded`).

Also here: the results columns (RESULT_COLUMNS, JSON_COLUMNS; their types are schema.RESULT_COLUMNS_DDL)
and `_decoded`, a row as plain Python. `RowFiles` is one part of `ResultsStore` (core/storage/store.py): it
reads the store's `results_dir`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import duckdb

from greenai_dagster.core.errors import DiskFull
from greenai_dagster.core.storage.duckdb_file import _first_line
from greenai_dagster.core.storage.schema import RESULT_COLUMNS_DDL, SCHEMA_VERSION

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


TEXT_COLUMNS = ("candidate_key", "experiment", "strategy_id", "methods", "checkpoint_path", "degraded_reason")


def _plain_full_set(row: dict) -> dict:
    """Full-set columns are NULL until scored; pandas reads NULL doubles as NaN, we keep None."""
    for column in NULLABLE_DOUBLES:
        value = row.get(column)
        if value is not None and value != value:
            row[column] = None
    return row


def _decoded(row: dict) -> dict:
    """A results row as plain Python: JSON columns parsed, NULLs as None, flags as bool. (pandas reads a NULL
    text as NaN wherever the row files disagree on a column's type, e.g. a baseline's NULL `degraded_reason`
    beside a degraded candidate's text. A NaN in a figure column stays: it is a measured NaN, which the
    blocking asset check must see.)"""
    _plain_full_set(row)
    for column in TEXT_COLUMNS:
        value = row.get(column)
        if isinstance(value, float) and value != value:
            row[column] = None
    for column in JSON_COLUMNS:
        value = row.get(column)
        row[column] = json.loads(value) if isinstance(value, str) else (value if isinstance(value, dict) else {})
    row["is_pareto"] = bool(row["is_pareto"])
    degraded = row.get("degraded")
    row["degraded"] = bool(degraded) if degraded == degraded and degraded is not None else False
    return row


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


class RowFiles:
    """The row files under `results_dir`: written atomically, listed, and read back as current rows."""

    results_dir: Path

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

    def _delete_folded(self, files: list[Path]) -> int:
        """Compaction's file side, after its commit: the folded row files go, and so do temp files of writers
        killed mid-write older than TEMP_MAX_AGE_S; returns how many temp files were removed."""
        for f in files:
            f.unlink(missing_ok=True)
        stale = [p for p in self.results_dir.glob("*/.*.tmp") if time.time() - p.stat().st_mtime > TEMP_MAX_AGE_S]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)
