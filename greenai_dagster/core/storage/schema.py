"""The DuckDB schema, its version, and the migrations from every older version.

A results file outlives the code that wrote it (a sweep runs for hours; users keep their files), so
the file records which schema it holds in `schema_version` and is brought up to date when this code
opens it for writing, instead of failing on a missing column. The versions follow the history of
`core/storage/store.py`:

  1  the first schema (experiments, strategies, results, frontier)
  2  results.load_time_s
  3  full-set scoring: results.accuracy_full, accuracy_full_stderr, full_eval_time_s, task_accuracy_full
  4  fidelity and the quality gate: table experiment_facts; results.kl_divergence ... degraded_reason
  5  serving energy: results.energy_j_per_token
  6  the `schema_version` table itself (no change to the data)
  7  results written as one Parquet file per row (core/storage/row_files.py); the old `results` table's rows move
     into `results_compacted` (plus written_ns, the write order), and `results` becomes a view
  8  a second fidelity text, sampled from the baseline (core/evaluation/sampled_text.py): results.kl_sampled,
     kl_sampled_stderr, top1_sampled

A file without `schema_version` was written before versioning (1-5): its version is read off the
columns it has (`file_version`), and, since every migration is idempotent (IF NOT EXISTS), all of them
run, so a file holding only part of a version's columns is completed too. Each migration is one transaction, recorded
with its version, so a migration killed half-way is re-run from where it stopped. A file from a
newer version of this code is refused (E007) rather than written in a layout it does not know.
"""

from __future__ import annotations

from datetime import datetime, timezone

SCHEMA_VERSION = 8

RESULT_COLUMNS_DDL = """
    candidate_key VARCHAR, experiment VARCHAR, episode INTEGER, strategy_id VARCHAR,
    methods VARCHAR, is_baseline BOOLEAN, accuracy DOUBLE, accuracy_stderr DOUBLE, perplexity DOUBLE,
    latency_ms DOUBLE, prefill_ms DOUBLE, throughput_tokens_per_s DOUBLE, memory_gb DOUBLE,
    model_size_gb DOUBLE, compression_ratio DOUBLE, energy_kwh DOUBLE, co2_grams DOUBLE,
    compression_time_s DOUBLE, compression_energy_kwh DOUBLE, compression_co2_grams DOUBLE,
    eval_time_s DOUBLE, load_time_s DOUBLE, eval_energy_kwh DOUBLE, eval_co2_grams DOUBLE, checkpoint_path VARCHAR,
    task_accuracy JSON, conditions JSON, accuracy_full DOUBLE, accuracy_full_stderr DOUBLE, full_eval_time_s DOUBLE,
    task_accuracy_full JSON, is_pareto BOOLEAN DEFAULT FALSE, created_at TIMESTAMP,
    kl_divergence DOUBLE, kl_stderr DOUBLE, top1_agreement DOUBLE, top1_stderr DOUBLE, ppl_ratio DOUBLE,
    ppl_ratio_low DOUBLE, ppl_ratio_high DOUBLE, fidelity_tokens INTEGER, item_correct JSON, task_chance JSON,
    flips JSON, degraded BOOLEAN, degraded_reason VARCHAR, energy_j_per_token DOUBLE,
    written_ns BIGINT, kl_sampled DOUBLE, kl_sampled_stderr DOUBLE, top1_sampled DOUBLE"""

TABLES = """
CREATE TABLE IF NOT EXISTS experiments (
    name VARCHAR PRIMARY KEY, model VARCHAR, dataset VARCHAR, config JSON, status VARCHAR,
    termination_reason VARCHAR, output_dir VARCHAR, created_at TIMESTAMP, finished_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS strategies (
    candidate_key VARCHAR PRIMARY KEY, experiment VARCHAR, episode INTEGER, strategy_id VARCHAR,
    strategy JSON, reasoning VARCHAR, status VARCHAR, error VARCHAR, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS results_compacted ({result_columns}, PRIMARY KEY (candidate_key));
CREATE TABLE IF NOT EXISTS experiment_facts (
    experiment VARCHAR PRIMARY KEY, facts JSON, updated_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS frontier (
    experiment VARCHAR PRIMARY KEY, members JSON, hypervolume DOUBLE, episodes_seen INTEGER,
    updated_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP);
""".replace(
    "{result_columns}", RESULT_COLUMNS_DDL)

# version -> the statements that bring a file of the version before it up to this one
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE results ADD COLUMN IF NOT EXISTS load_time_s DOUBLE"],
    3: [f"ALTER TABLE results ADD COLUMN IF NOT EXISTS {c}" for c in (
        "accuracy_full DOUBLE", "accuracy_full_stderr DOUBLE", "full_eval_time_s DOUBLE", "task_accuracy_full JSON")],
    4: ["CREATE TABLE IF NOT EXISTS experiment_facts (experiment VARCHAR PRIMARY KEY, facts JSON, updated_at TIMESTAMP)"]
       + [f"ALTER TABLE results ADD COLUMN IF NOT EXISTS {c}" for c in (
           "kl_divergence DOUBLE", "kl_stderr DOUBLE", "top1_agreement DOUBLE", "top1_stderr DOUBLE", "ppl_ratio DOUBLE",
           "ppl_ratio_low DOUBLE", "ppl_ratio_high DOUBLE", "fidelity_tokens INTEGER", "item_correct JSON",
           "task_chance JSON", "flips JSON", "degraded BOOLEAN", "degraded_reason VARCHAR")],
    5: ["ALTER TABLE results ADD COLUMN IF NOT EXISTS energy_j_per_token DOUBLE"],
    6: ["CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"],
    # results leave the DuckDB table for one Parquet file per write (core/storage/row_files.py); the rows written before
    # move, in this one transaction, into `results_compacted`, the table compaction folds files into, so the
    # `results` view finds them there (written_ns 0: any later write of the same candidate wins)
    7: [TABLES, "INSERT INTO results_compacted BY NAME SELECT *, 0::BIGINT AS written_ns FROM results",
        "DROP TABLE results"],
    8: [f"ALTER TABLE results_compacted ADD COLUMN IF NOT EXISTS {c} DOUBLE"
        for c in ("kl_sampled", "kl_sampled_stderr", "top1_sampled")],
}
# the column each unversioned schema added first: the newest one a file has is its version
VERSION_MARKERS = {2: "load_time_s", 3: "accuracy_full", 4: "kl_divergence", 5: "energy_j_per_token"}


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}


def _versioned(con) -> bool:
    return "schema_version" in _tables(con) and \
        con.execute("SELECT count(*) FROM schema_version").fetchone()[0] > 0


def file_version(con) -> int | None:
    """The schema version a file holds; None for an empty file (nothing to migrate)."""
    tables = _tables(con)
    if "schema_version" in tables:
        found = con.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        if found is not None:
            return int(found)
    if "results" not in tables:
        return None
    columns = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'results'").fetchall()}
    return max([1] + [v for v, column in VERSION_MARKERS.items() if column in columns])


def migrate(con) -> tuple[int | None, int]:
    """Bring the file on this read-write connection to SCHEMA_VERSION; returns (found, now).

    Raises ValueError for a file from a newer schema (the store turns it into E007)."""
    found = file_version(con)
    if found is not None and found > SCHEMA_VERSION:
        raise ValueError(f"schema version {found} is newer than this greenai's ({SCHEMA_VERSION})")
    stamp = datetime.now(timezone.utc).replace(tzinfo=None)
    if found is None:   # a new file: the current schema in one go
        con.execute("BEGIN TRANSACTION")
        con.execute(TABLES)
        con.execute("INSERT INTO schema_version VALUES (?, ?) ON CONFLICT DO NOTHING", [SCHEMA_VERSION, stamp])
        con.execute("COMMIT")
        return None, SCHEMA_VERSION
    # an unversioned file may hold any mix of the early columns (each migration is IF NOT EXISTS): all run
    start = found if _versioned(con) else 1
    for version in range(start + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute(TABLES)       # tables an old file never had (CREATE ... IF NOT EXISTS)
            con.execute("INSERT INTO schema_version VALUES (?, ?) ON CONFLICT DO NOTHING", [version, stamp])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return found, SCHEMA_VERSION
