"""The latency probe's own account of its time (`runtime_probe.probe_seconds`)."""

from __future__ import annotations

import json
import time


def test_the_probe_says_where_its_time_went(tiny_model_dir, capsys):
    """A probe of a tiny Llama in eager PyTorch prints `probe_seconds`: the process's start, the runtime's
    libraries, opening the session and measuring, each a non-negative figure; the three timed inside `main`
    add up to no more than the call took, and opening and measuring took some time."""
    from greenai_dagster.core.evaluation import runtime_probe

    started = time.perf_counter()
    runtime_probe.main([str(tiny_model_dir), "--runtime", "torch-eager", "--prompt-len", "16", "--new-tokens", "4",
                        "--repeats", "2", "--batch-size", "0", "--threads", "1"])
    wall = time.perf_counter() - started
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    seconds = figures["probe_seconds"]
    assert set(seconds) == {"process_start", "libraries", "open", "measure"}
    assert all(value >= 0 for value in seconds.values()), seconds
    assert seconds["open"] > 0 and seconds["measure"] > 0, seconds
    assert seconds["libraries"] + seconds["open"] + seconds["measure"] <= wall + 0.05, (seconds, wall)
    assert seconds["process_start"] > 0   # this pytest process started before the call
    assert figures["decode_ms_per_token"] > 0 and figures["runtime"] == "torch-eager"
