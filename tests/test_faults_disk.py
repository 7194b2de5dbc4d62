"""Disk full: a real `greenai run` whose output folder is a 1 MiB tmpfs made for the test.

The baseline (spec, fidelity reference) and the first episode (checkpoint, results.json) fit; the
frontier's chart (a few MB of HTML) does not. The run must end with E007 and a remedy, no traceback;
every earlier result stays readable (DuckDB rows, every JSON file whole, no temporary leftovers);
and after space is freed, the same command resumes and finishes. Needs root (mount); skipped,
saying so, where mounting is not permitted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAST_EVAL = {"limit_per_task": 4, "full_set_for_frontier": False, "batch_size": 4, "fidelity_tokens": 512,
             "prompt_len": 16, "new_tokens": 4, "latency_repeats": 1, "throughput_batch_size": 2}


@pytest.fixture()
def small_disk(tmp_path):
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_disk_full_ends_with_e007_keeps_every_earlier_result_and_resumes(tmp_path, small_disk, tiny_model_dir,
                                                                        tiny_benchmark):
    data = tmp_path / "data"
    (data / "dagster_home").mkdir(parents=True)
    (data / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"eval": FAST_EVAL, "compression_methods": ["gptq"]}))
    env = {**os.environ, "GREENAI_DATA": str(data), "DAGSTER_HOME": str(data / "dagster_home"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    argv = [sys.executable, "-m", "greenai_dagster.cli", "run", "-m", str(tiny_model_dir), "-d", str(tiny_benchmark),
            "-e", "1", "-n", "full", "-c", str(config), "-o", str(small_disk)]

    run = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]
    error = [line for line in run.stderr.splitlines() if line.startswith("E0")]
    assert len(error) == 1 and error[0].startswith("E007: disk full while writing"), output[-3000:]
    assert "Remedy: Free disk space" in error[0] and "resumes" in error[0]
    assert "Traceback" not in output

    # every earlier result is whole and readable
    from greenai_dagster.core.store import ResultsStore

    store = ResultsStore(data / "greenai.duckdb")
    rows = store.results("full", include_baseline=True)
    assert len(rows) == 2 and sum(r["is_baseline"] for r in rows) == 1, rows
    assert all(r["accuracy"] is not None and r["kl_divergence"] == r["kl_divergence"] for r in rows)
    assert store.experiment("full")["status"] == "active"                     # resumable
    folder = small_disk / "full"
    for path in folder.rglob("*.json"):
        json.loads(path.read_text())                                            # none half-written
    assert not list(folder.rglob("*.tmp")) and not list(folder.rglob("*.partial"))
    assert (folder / "episode_001" / "model" / "greenai_variant.json").exists()
    assert (folder / "episode_001" / "results.json").exists() and (folder / "model_spec.json").exists()

    # space freed: the same command resumes and finishes
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "Resuming experiment full" in again.stdout and "Traceback" not in again.stdout + again.stderr
    assert store.experiment("full")["status"] == "finished"
    assert len(store.results("full", include_baseline=True)) == 2
    assert (folder / "pareto_visualization.html").stat().st_size > 1_000_000
