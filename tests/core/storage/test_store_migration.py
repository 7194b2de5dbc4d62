"""A DuckDB file from an older schema is migrated, not crashed: rows intact, new columns present.

The old files are built by hand with the CREATE TABLE statements of the first schema (commit
661e001) and of the unversioned schema 4 (2da5600, before serving energy), as a user upgrading
would have them.
"""

import duckdb
import pytest

from greenai_dagster.core.errors import GreenAIError
from greenai_dagster.core.storage.schema import SCHEMA_VERSION, file_version
from greenai_dagster.core.storage.store import RESULT_COLUMNS, ResultsStore

V1 = """
CREATE TABLE experiments (
    name VARCHAR PRIMARY KEY, model VARCHAR, dataset VARCHAR, config JSON, status VARCHAR,
    termination_reason VARCHAR, output_dir VARCHAR, created_at TIMESTAMP, finished_at TIMESTAMP);
CREATE TABLE strategies (
    candidate_key VARCHAR PRIMARY KEY, experiment VARCHAR, episode INTEGER, strategy_id VARCHAR,
    strategy JSON, reasoning VARCHAR, status VARCHAR, error VARCHAR, created_at TIMESTAMP);
CREATE TABLE results (
    candidate_key VARCHAR PRIMARY KEY, experiment VARCHAR, episode INTEGER, strategy_id VARCHAR,
    methods VARCHAR, is_baseline BOOLEAN, accuracy DOUBLE, accuracy_stderr DOUBLE, perplexity DOUBLE,
    latency_ms DOUBLE, prefill_ms DOUBLE, throughput_tokens_per_s DOUBLE, memory_gb DOUBLE,
    model_size_gb DOUBLE, compression_ratio DOUBLE, energy_kwh DOUBLE, co2_grams DOUBLE,
    compression_time_s DOUBLE, compression_energy_kwh DOUBLE, compression_co2_grams DOUBLE,
    eval_time_s DOUBLE, eval_energy_kwh DOUBLE, eval_co2_grams DOUBLE, checkpoint_path VARCHAR,
    task_accuracy JSON, conditions JSON, is_pareto BOOLEAN DEFAULT FALSE, created_at TIMESTAMP);
CREATE TABLE frontier (
    experiment VARCHAR PRIMARY KEY, members JSON, hypervolume DOUBLE, episodes_seen INTEGER,
    updated_at TIMESTAMP);
"""
V1_ROWS = """
INSERT INTO experiments VALUES ('old', 'm', 'd', '{"episodes": 2}', 'finished', 'max_episodes_reached', '/x',
    TIMESTAMP '2026-11-01 10:00:00', TIMESTAMP '2026-11-01 11:00:00');
INSERT INTO strategies VALUES ('old/ep001_gptq', 'old', 1, 'ep001_gptq', '{"strategy_id": "ep001_gptq"}', 'r', 'done',
    NULL, TIMESTAMP '2026-11-01 10:10:00');
INSERT INTO results (candidate_key, experiment, episode, strategy_id, methods, is_baseline, accuracy, latency_ms,
    memory_gb, model_size_gb, task_accuracy, conditions, is_pareto, created_at) VALUES
    ('old/baseline', 'old', 0, 'baseline', '', true, 0.5, 10.0, 1.0, 0.25, '{"t": 0.5}', '{"device": "cpu"}', false,
     TIMESTAMP '2026-11-01 10:05:00'),
    ('old/ep001_gptq', 'old', 1, 'ep001_gptq', 'gptq', false, 0.45, 8.0, 0.5, 0.1, '{"t": 0.45}', '{}', true,
     TIMESTAMP '2026-11-01 10:20:00');
INSERT INTO frontier VALUES ('old', '["old/ep001_gptq"]', 0.3, 1, TIMESTAMP '2026-11-01 10:21:00');
"""
# schema 4 (2da5600): experiment_facts and the fidelity columns exist, energy_j_per_token does not yet
V4_EXTRA = """
ALTER TABLE results ADD COLUMN load_time_s DOUBLE;
ALTER TABLE results ADD COLUMN accuracy_full DOUBLE;
ALTER TABLE results ADD COLUMN accuracy_full_stderr DOUBLE;
ALTER TABLE results ADD COLUMN full_eval_time_s DOUBLE;
ALTER TABLE results ADD COLUMN task_accuracy_full JSON;
ALTER TABLE results ADD COLUMN kl_divergence DOUBLE;
CREATE TABLE experiment_facts (experiment VARCHAR PRIMARY KEY, facts JSON, updated_at TIMESTAMP);
INSERT INTO experiment_facts VALUES ('old', '{"objectives": ["accuracy"]}', TIMESTAMP '2026-11-01 10:06:00');
UPDATE results SET kl_divergence = 0.02 WHERE candidate_key = 'old/ep001_gptq';
"""


def old_file(path, extra: str = ""):
    with duckdb.connect(str(path)) as con:
        con.execute(V1)
        con.execute(V1_ROWS)
        if extra:
            con.execute(extra)
    return path


def columns(path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'results'").fetchall()}


def test_first_schema_file_is_migrated_on_first_read(tmp_path):
    path = old_file(tmp_path / "v1.duckdb")
    with duckdb.connect(str(path), read_only=True) as con:
        assert file_version(con) == 1
    assert "kl_divergence" not in columns(path)

    store = ResultsStore(path)
    rows = {r["strategy_id"]: r for r in store.results("old", include_baseline=True)}   # a read migrates first
    assert set(rows) == {"baseline", "ep001_gptq"}
    assert rows["baseline"]["accuracy"] == 0.5 and rows["ep001_gptq"]["accuracy"] == 0.45
    assert rows["ep001_gptq"]["task_accuracy"] == {"t": 0.45} and rows["ep001_gptq"]["is_pareto"] is True
    kl = rows["ep001_gptq"]["kl_divergence"]                              # the new column, NULL (NaN in pandas)
    assert (kl is None or kl != kl) and rows["ep001_gptq"]["degraded"] is False
    assert set(RESULT_COLUMNS) <= columns(path)
    assert store.frontier("old") == {"members": ["old/ep001_gptq"], "hypervolume": 0.3, "episodes_seen": 1}
    assert store.experiment("old")["termination_reason"] == "max_episodes_reached"
    assert store.facts("old") == {}
    with duckdb.connect(str(path), read_only=True) as con:
        assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()] == \
            list(range(2, SCHEMA_VERSION + 1))
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 2


def test_unversioned_schema_4_is_completed_and_keeps_its_data(tmp_path):
    path = old_file(tmp_path / "v4.duckdb", V4_EXTRA)
    with duckdb.connect(str(path), read_only=True) as con:
        assert file_version(con) == 4
    store = ResultsStore(path)
    store.write_result({c: None for c in RESULT_COLUMNS} | {
        "candidate_key": "old/ep002_int8", "experiment": "old", "episode": 2, "strategy_id": "ep002_int8",
        "methods": "int8", "is_baseline": False, "accuracy": 0.4, "energy_j_per_token": 0.01})
    rows = {r["strategy_id"]: r for r in store.results("old")}
    assert rows["ep001_gptq"]["kl_divergence"] == 0.02                  # data of the old columns kept
    assert rows["ep002_int8"]["energy_j_per_token"] == 0.01             # the new column written
    assert store.facts("old") == {"objectives": ["accuracy"]}
    with duckdb.connect(str(path), read_only=True) as con:
        assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()] == \
            list(range(2, SCHEMA_VERSION + 1))
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 3


def test_current_file_is_stamped_and_a_newer_one_refused(tmp_path):
    store = ResultsStore(tmp_path / "new.duckdb")
    store.create_experiment("e", "m", "d", {}, str(tmp_path))
    with duckdb.connect(str(tmp_path / "new.duckdb")) as con:
        assert file_version(con) == SCHEMA_VERSION
        con.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
    with pytest.raises(GreenAIError, match=r"^E007: .*newer greenai"):
        ResultsStore(tmp_path / "new.duckdb").create_experiment("f", "m", "d", {}, str(tmp_path))
    assert ResultsStore(tmp_path / "new.duckdb").experiment("f") is None   # nothing written


def test_a_migrated_first_schema_file_has_exactly_the_fresh_schema(tmp_path):
    """Migrations and the current CREATE statements agree: same tables, columns and types."""
    migrated, fresh = old_file(tmp_path / "v1.duckdb"), tmp_path / "fresh.duckdb"
    ResultsStore(migrated).create_experiment("x", "m", "d", {}, str(tmp_path))
    ResultsStore(fresh).create_experiment("x", "m", "d", {}, str(tmp_path))

    def layout(path):
        with duckdb.connect(str(path), read_only=True) as con:
            return sorted(con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                                      "WHERE table_schema = 'main'").fetchall())

    assert layout(migrated) == layout(fresh)
    assert set(RESULT_COLUMNS) <= {c for t, c, _ in layout(fresh) if t == "results"}


def test_old_results_table_becomes_the_compacted_table_behind_the_view(tmp_path):
    """Schema 7: the rows of the old `results` table move (in one transaction) into `results_compacted`,
    `results` becomes the view over it and the row files; a re-written old row is one row, the new one."""
    path = old_file(tmp_path / "v4.duckdb", V4_EXTRA)
    store = ResultsStore(path)
    assert store.result("old/ep001_gptq")["kl_divergence"] == 0.02
    with duckdb.connect(str(path), read_only=True) as con:
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables "
                                 "WHERE table_name IN ('results', 'results_compacted')").fetchall())
        assert kinds == {"results": "VIEW", "results_compacted": "BASE TABLE"}
        assert con.execute("SELECT candidate_key, written_ns FROM results_compacted ORDER BY 1").fetchall() == \
            [("old/baseline", 0), ("old/ep001_gptq", 0)]
    assert store._row_files() == []                                     # nothing rewritten on upgrade

    store.write_full_accuracy("old/ep001_gptq", 0.43, 0.02, {"t": 0.43}, 5.0)
    store.write_frontier("old", ["old/ep001_gptq"], 0.3, 1)
    rows = store.results("old", include_baseline=True)
    assert len(rows) == 2
    row = store.result("old/ep001_gptq")
    assert (row["accuracy"], row["accuracy_full"], row["kl_divergence"], row["is_pareto"]) == (0.45, 0.43, 0.02, True)
    assert row["created_at"].year == 2026 and row["task_accuracy"] == {"t": 0.45}     # the old row's own values kept
    assert len(store._row_files()) == 1                                 # the flag was already set: one new version
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT candidate_key) FROM results").fetchone() == (2, 2)
