"""The README's first command, short form, on a fresh data root and whatever CPU this machine has.

This is what a new user runs first; CI runs it so that a fresh machine proves it (a benchmark file a
registry withdrew, or a native library that crashes on this CPU, fails here rather than for the user).
One episode of the embedded defaults: the packaged SmolLM2-135M-Instruct, the generated default
benchmark, the offline planner.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def test_the_first_command_runs_an_episode_on_a_fresh_data_root(tmp_path):
    data = tmp_path / "data"
    env = dict(os.environ, GREENAI_DATA=str(data), DAGSTER_HOME=str(data / "dagster_home"))
    proc = subprocess.run(["greenai", "run", "--episodes", "1", "--interactive", "-n", "first_command"],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "E00" not in proc.stdout and "Traceback" not in proc.stderr

    folder = data / "experiments" / "first_command"
    final = json.loads((folder / "final_results.json").read_text())
    assert final["termination_reason"] == "max_episodes_reached"
    episode = json.loads((folder / "episode_001" / "results.json").read_text())
    baseline = json.loads((folder / "model_spec.json").read_text())
    assert baseline                                                            # the spec was written
    # the default benchmark tells the baseline from chance, so accuracy is an objective and is measured
    assert episode["accuracy"] is not None and 0.0 <= episode["accuracy"] <= 1.0
    assert episode["kl_divergence"] is not None and episode["latency_ms"] > 0
    # served by the runtime that passed this machine's self-test, with no crash to fall back from
    conditions = episode.get("conditions") or {}
    assert conditions.get("runtime") == "llama.cpp", conditions
    assert not conditions.get("runtime_fallback"), conditions
