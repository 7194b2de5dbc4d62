"""A redis broker and Celery workers on this machine (127.0.0.1), for the several-workers path without a cluster.

`tests/dagster/test_celery.py` and `benchmarks/celery_workers.py` run `candidate_sweep` (celery_sweep.py) through these:
Debian's `redis-server` on a free port with persistence off, and `celery -A dagster_celery.app worker`
processes (solo pool: one task at a time each; one torch thread each) reading the broker from a
`dagster_celery_config` module, as `dagster-celery worker start -y` writes one. On real machines start the
workers the same way, pointed at a shared broker (README, "Scale-out").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Until `text` appears in the log `path`; RuntimeError with the log's tail if `proc` exits or time runs out."""
    deadline = time.time() + timeout_s
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if proc.poll() is not None or time.time() > deadline:
            tail = path.read_text(errors="replace")[-2000:] if path.exists() else ""
            raise RuntimeError(f"{' '.join(map(str, proc.args[:4]))} did not print '{text}' "
                               f"({'exited' if proc.poll() is not None else 'timed out'}): {tail}")
        time.sleep(0.5)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def redis_broker(folder: Path) -> Iterator[str]:
    """redis-server on a free 127.0.0.1 port, persistence off, its files in `folder`; yields its URL."""
    port = free_port()
    log = folder / "redis.log"
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--save", "", "--appendonly", "no", "--logfile", str(log)])
    try:
        wait_for_line(log, "Ready to accept connections", proc, 30)
        yield f"redis://127.0.0.1:{port}"
    finally:
        _stop([proc])


@contextmanager
def celery_workers(count: int, broker: str, folder: Path, tag: str = "") -> Iterator[list[Path]]:
    """`count` workers named w1..wN (GREENAI_WORKER_NAME) on the broker's `dagster` queue, each ready before
    this yields their log files; stopped afterwards."""
    conf = folder / "celeryconf"
    conf.mkdir(exist_ok=True)
    (conf / "dagster_celery_config.py").write_text(f"broker_url = '{broker}/0'\nresult_backend = '{broker}/1'\n")
    procs, logs = [], []
    try:
        for i in range(1, count + 1):
            log = folder / f"w{i}{tag}.log"
            env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{conf}", "GREENAI_WORKER_NAME": f"w{i}",
                   "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker", "-Q", "dagster", "--pool=solo",
                 "--prefetch-multiplier=1", "-n", f"w{i}@%h", "--loglevel=INFO", "-f", str(log)], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
            logs.append(log)
        for proc, log in zip(procs, logs):
            wait_for_line(log, "ready.", proc, 180)
        yield logs
    finally:
        _stop(procs)
