"""N experiments writing one DuckDB file at once: is every row there, and does any run fail on the lock?

DuckDB lets one process hold a file for writing at a time. `greenai run`s, sensor-launched Dagster
runs and the webserver are separate processes, so ResultsStore opens a short-lived connection per
write after taking its turn on a kernel flock beside the file (readers share it), and retries with
backoff if a process outside the project holds DuckDB's own lock (core/store.py). This measures that
design with N real OS processes, each driving the store exactly as an experiment does per episode:

    add_strategy -> set_strategy_status(compressing) -> set_strategy_status(compressed)
    -> write_result -> set_strategy_status(done) -> read results -> write_frontier

(7 connections per episode, 6 of them writes), all processes released at the same instant so the
lock is contended from the first write. No model work happens between writes, which is far harsher
than a real sweep (there a write comes every few seconds at most). Afterwards the file is read by a
fresh process: rows expected vs present, duplicates, strategies not `done`, and each writer's own
count of failed writes (an E007 on the lock would be one).

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


def worker(db: str, experiment: str, episodes: int, start_at: float) -> dict:
    """One experiment's writes, as the pipeline makes them; returns its own counts (JSON on stdout)."""
    from greenai_dagster.core.errors import GreenAIError
    from greenai_dagster.core.store import RESULT_COLUMNS, ResultsStore

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

    attempt(store.create_experiment, experiment, "tiny", "mc", {"episodes": episodes}, "/tmp")
    for episode in range(1, episodes + 1):
        key = f"{experiment}/ep{episode:03d}"
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
        attempt(store.set_strategy_status, key, "done")
        rows = attempt(store.results, experiment) or []
        attempt(store.write_frontier, experiment, [r["candidate_key"] for r in rows[-1:]], 0.0, len(rows))
    return {"experiment": experiment, "wall_s": time.perf_counter() - started, "failures": failures,
            "results_written": written, "lock_waits": store.lock_waits, "lock_wait_s": store.lock_wait_s}


def measure(writers: int, episodes: int, folder: Path) -> dict:
    """Start `writers` processes on one new file; check the file afterwards from a fresh connection."""
    import duckdb

    db = folder / f"writers_{writers}.duckdb"
    db.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start_at = time.time() + 3.0 + 0.5 * writers       # every process imported and waiting by then
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(db), f"exp{i}", str(episodes), str(start_at)],
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
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT candidate_key) FROM results").fetchone()
        per_exp = dict(con.execute("SELECT experiment, count(*) FROM results GROUP BY 1").fetchall())
        not_done = con.execute("SELECT count(*) FROM strategies WHERE status <> 'done'").fetchone()[0]
        experiments = con.execute("SELECT count(*) FROM experiments").fetchone()[0]
        frontiers = con.execute("SELECT count(*) FROM frontier WHERE episodes_seen = ?", [episodes]).fetchone()[0]
    expected = writers * episodes
    return {
        "writers": writers, "episodes_per_writer": episodes, "rows_expected": expected, "rows_present": rows[0],
        "rows_lost": expected - rows[1], "duplicate_rows": rows[0] - rows[1],
        "rows_per_writer_ok": all(per_exp.get(f"exp{i}") == episodes for i in range(writers)),
        "experiments_present": experiments, "frontiers_complete": frontiers, "strategies_not_done": not_done,
        "failed_writes": sum(len(r["failures"]) for r in reports), "writers_exit_nonzero": sum(c != 0 for c in exit_codes),
        "tracebacks": tracebacks, "connections": writers * (1 + 7 * episodes),
        "wall_s": round(wall, 2) if wall else None,
        "writes_per_s": round(writers * (1 + 6 * episodes) / wall, 1) if wall else None,
        "lock_waits": sum(r["lock_waits"] for r in reports),
        "max_lock_wait_s_per_writer": round(max(r["lock_wait_s"] for r in reports), 2) if reports else None,
        "failure_samples": [f for r in reports for f in r["failures"]][:3],
    }


def how() -> str:
    """The docstring's description of the measurement, as one paragraph."""
    return " ".join(" ".join(part.split()) for part in __doc__.split("\n\n")[1:4])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=4, metavar=("DB", "EXPERIMENT", "EPISODES", "START_AT"))
    parser.add_argument("--writers", type=int, nargs="*", default=[2, 4, 8])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if args.worker:
        db, experiment, episodes, start_at = args.worker
        print(json.dumps(worker(db, experiment, int(episodes), float(start_at))))
        return
    with tempfile.TemporaryDirectory(prefix="greenai_writers_") as tmp:
        table = [measure(n, args.episodes, Path(tmp)) for n in args.writers]
    for row in table:
        print(f"N={row['writers']}: {row['rows_present']}/{row['rows_expected']} rows, lost {row['rows_lost']}, "
              f"duplicates {row['duplicate_rows']}, failed writes {row['failed_writes']}, "
              f"{row['writes_per_s']} writes/s, {row['lock_waits']} lock waits, "
              f"max wait per writer {row['max_lock_wait_s_per_writer']} s, wall {row['wall_s']} s")
    if not args.no_save:
        import duckdb

        from greenai_dagster.core.store import LOCK_TIMEOUT_S

        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "concurrent_writers.json").write_text(json.dumps({
            "how": how(),
            "command": "python benchmarks/concurrent_writers.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
                       f"run under nice -n 19 while other jobs used the CPUs",
            "duckdb": duckdb.__version__, "lock_timeout_s": LOCK_TIMEOUT_S,
            "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
