"""N experiments writing results at once: is every row there, is any duplicated, how long does it take?

Results rows are one immutable Parquet file per write (core/storage/row_files.py): a writer of results never opens
the DuckDB file, so it never waits for the DuckDB lock; experiments, strategies and the frontier row
stay in DuckDB behind a kernel flock queue (readers share it). This measures both paths with N real OS
processes, all released at the same instant, in two modes. `results`: each process only writes its
result rows (write_result), the path this layout frees from the lock. `episode`: each process drives the
store exactly as an experiment does per episode:

    add_strategy -> set_strategy_status(compressing) -> set_strategy_status(compressed)
    -> write_result (a Parquet file) -> set_strategy_status(done) -> read results -> write_frontier

(4 DuckDB writes, 2 reads and 1-2 row files per episode). No model work happens between writes, which
is far harsher than a real sweep (there a write comes every few seconds at most). Afterwards a fresh
process reads the `results` view with a plain DuckDB connection: rows expected vs present, duplicates,
row files (versions) on disk, strategies not `done`, each writer's count of failed writes (an E007 would
be one), then compacts and checks the view reads the same rows.

    python benchmarks/concurrent_writers.py                  # N = 2, 4, 8; 40 episodes each
    python benchmarks/concurrent_writers.py --writers 4 --episodes 10 --no-save

Writes benchmarks/results/concurrent_writers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def worker(db: str, experiment: str, episodes: int, start_at: float, mode: str = "episode") -> dict:
    """One experiment's writes, as the pipeline makes them; returns its own counts (JSON on stdout)."""
    from greenai_dagster.core.errors import GreenAIError
    from greenai_dagster.core.storage.store import RESULT_COLUMNS, ResultsStore

    store = ResultsStore(db)
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    failures: list[str] = []
    written = 0

    def attempt(call, *args):
        try:
            return call(*args)
        except GreenAIError as exc:      # a lock given up on (E007) or any other store error
            failures.append(str(exc)[:200])
            return None

    episode_mode = mode == "episode"
    if episode_mode:
        attempt(store.create_experiment, experiment, "tiny", "mc", {"episodes": episodes}, "/tmp")
    for episode in range(1, episodes + 1):
        key = f"{experiment}/ep{episode:03d}"
        if episode_mode:
            attempt(store.add_strategy, key, experiment, episode, {"strategy_id": f"ep{episode:03d}", "steps": []})
            attempt(store.set_strategy_status, key, "compressing")
            attempt(store.set_strategy_status, key, "compressed")
        row = {c: None for c in RESULT_COLUMNS} | {
            "candidate_key": key, "experiment": experiment, "episode": episode, "strategy_id": f"ep{episode:03d}",
            "methods": "gptq", "is_baseline": False, "accuracy": 0.5, "kl_divergence": 1.0 / episode,
            "latency_ms": 10.0 + episode, "memory_gb": 1.0, "model_size_gb": 0.1, "task_accuracy": {"t": 0.5},
            "conditions": {"writer": experiment}}
        before = len(failures)
        attempt(store.write_result, row)
        written += len(failures) == before
        if not episode_mode:
            continue
        attempt(store.set_strategy_status, key, "done")
        rows = attempt(store.results, experiment) or []
        attempt(store.write_frontier, experiment, [r["candidate_key"] for r in rows[-1:]], 0.0, len(rows))
    return {"experiment": experiment, "wall_s": time.perf_counter() - started, "failures": failures,
            "results_written": written, "lock_waits": store.lock_waits, "lock_wait_s": store.lock_wait_s}


def measure(writers: int, episodes: int, folder: Path, mode: str = "episode") -> dict:
    """Start `writers` processes on one new store; check it afterwards from a fresh process."""
    import shutil

    db = folder / f"writers_{writers}_{mode}.duckdb"
    db.unlink(missing_ok=True)
    shutil.rmtree(db.with_name(db.stem + "_results"), ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start_at = time.time() + 3.0 + 0.5 * writers       # every process imported and waiting by then
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(db), f"exp{i}", str(episodes), str(start_at),
                               "--mode", mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(writers)]
    reports, exit_codes, tracebacks = [], [], 0
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        exit_codes.append(proc.returncode)
        tracebacks += err.count("Traceback")
        if out.strip():
            reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["wall_s"] for r in reports) if reports else None
    check = json.loads(subprocess.run([sys.executable, __file__, "--check", str(db), str(episodes)], env=env,
                                      capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    expected = writers * episodes
    writes = writers * (episodes if mode == "results" else 1 + 6 * episodes)
    return {
        "mode": mode, "writers": writers, "episodes_per_writer": episodes, "rows_expected": expected,
        "rows_present": check["rows"], "rows_lost": expected - check["distinct"],
        "duplicate_rows": check["rows"] - check["distinct"], "row_files": check["row_files"],
        "rows_per_writer_ok": all(check["per_exp"].get(f"exp{i}") == episodes for i in range(writers)),
        "same_rows_after_compact": check["same_after_compact"],
        "experiments_present": check["experiments"], "frontiers_complete": check["frontiers"],
        "strategies_not_done": check["not_done"],
        "failed_writes": sum(len(r["failures"]) for r in reports), "writers_exit_nonzero": sum(c != 0 for c in exit_codes),
        "tracebacks": tracebacks,
        "wall_s": round(wall, 2) if wall else None,
        "writes_per_s": round(writes / wall, 1) if wall else None,
        "lock_waits": sum(r["lock_waits"] for r in reports),
        "max_lock_wait_s_per_writer": round(max(r["lock_wait_s"] for r in reports), 2) if reports else None,
        "failure_samples": [f for r in reports for f in r["failures"]][:3],
    }


def check(db: str, episodes: int) -> dict:
    """What a fresh process finds: the view read by a plain DuckDB connection, then the same after compact()."""
    import duckdb

    from greenai_dagster.core.storage.store import ResultsStore

    def current(con) -> list:
        return con.execute("SELECT candidate_key, accuracy, latency_ms, is_pareto FROM results ORDER BY 1").fetchall()

    store = ResultsStore(db)
    store.experiment("exp0")                  # a store read: brings the view up to date if no DuckDB write came yet
    with duckdb.connect(db, read_only=True) as con:
        rows, distinct = con.execute("SELECT count(*), count(DISTINCT candidate_key) FROM results").fetchone()
        per_exp = dict(con.execute("SELECT experiment, count(*) FROM results GROUP BY 1").fetchall())
        not_done = con.execute("SELECT count(*) FROM strategies WHERE status <> 'done'").fetchone()[0]
        experiments = con.execute("SELECT count(*) FROM experiments").fetchone()[0]
        frontiers = con.execute("SELECT count(*) FROM frontier WHERE episodes_seen = ?", [episodes]).fetchone()[0]
        before = current(con)
    row_files = len(store._row_files())
    store.compact()
    with duckdb.connect(db, read_only=True) as con:
        after = current(con)
    return {"rows": rows, "distinct": distinct, "per_exp": per_exp, "not_done": not_done, "experiments": experiments,
            "frontiers": frontiers, "row_files": row_files, "same_after_compact": before == after and len(after) == distinct}


def how() -> str:
    """The docstring's description of the measurement, as one paragraph."""
    return " ".join(" ".join(part.split()) for part in __doc__.split("\n\n")[1:4])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=4, metavar=("DB", "EXPERIMENT", "EPISODES", "START_AT"))
    parser.add_argument("--check", nargs=2, metavar=("DB", "EPISODES"))
    parser.add_argument("--mode", choices=["episode", "results"], default="episode")
    parser.add_argument("--modes", nargs="*", default=["results", "episode"])
    parser.add_argument("--writers", type=int, nargs="*", default=[2, 4, 8])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if args.worker:
        db, experiment, episodes, start_at = args.worker
        print(json.dumps(worker(db, experiment, int(episodes), float(start_at), args.mode)))
        return
    if args.check:
        print(json.dumps(check(args.check[0], int(args.check[1]))))
        return
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="greenai_writers_") as tmp:
        table = [measure(n, args.episodes, Path(tmp), mode) for mode in args.modes for n in args.writers]
    load = f"1-minute load average {load_before:.1f} before the run and {os.getloadavg()[0]:.1f} after"
    for row in table:
        print(f"{row['mode']:>7} N={row['writers']}: {row['rows_present']}/{row['rows_expected']} rows, lost "
              f"{row['rows_lost']}, duplicates {row['duplicate_rows']}, {row['row_files']} row files, failed writes "
              f"{row['failed_writes']}, {row['writes_per_s']} writes/s, {row['lock_waits']} lock waits, "
              f"max wait per writer {row['max_lock_wait_s_per_writer']} s, wall {row['wall_s']} s")
    if not args.no_save:
        import duckdb

        from greenai_dagster.core.storage.store import LOCK_TIMEOUT_S

        RESULTS.mkdir(exist_ok=True)
        previous = json.loads((RESULTS / "concurrent_writers.json").read_text()) \
            if (RESULTS / "concurrent_writers.json").exists() else {}
        (RESULTS / "concurrent_writers.json").write_text(json.dumps({
            "how": how(),
            "command": "python benchmarks/concurrent_writers.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
                       f"run under nice -n 19 on a shared machine while other jobs (a long benchmark, other "
                       f"test runs) used the CPUs ({load}), so wall times are upper bounds",
            "duckdb": duckdb.__version__, "lock_timeout_s": LOCK_TIMEOUT_S,
            "table": table,
            **{k: previous[k] for k in ("before_parquet", "before_this_design") if k in previous}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
