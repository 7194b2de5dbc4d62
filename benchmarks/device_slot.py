"""Latency under load, with and without the device slot (core.machine.device_slot), side by side.

    python benchmarks/device_slot.py [--rounds 2] [--loaders 2] [--model PATH]

Each round measures the same checkpoint three ways with the project's own probe (`evaluate.runtime`:
a fresh process, batch 1, 128-token prompt, 16 decoded tokens, median of 5), one right after another
so that the machine's other load (this 2-core machine is shared) hits all three alike:

- alone: nothing of ours runs beside it;
- slot: `--loaders` processes run a scoring load (forward passes of the same model over 256-token
  windows, one thread each) that takes the shared side of the slot per chunk of work, as compression
  and scoring do in the pipeline; the probe takes the exclusive side;
- no slot: the same load ignoring the slot (what two experiments at once measured before: issue 14).

Writes benchmarks/results/device_slot.json (rows per round, medians, ratios, `how`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]

LOADER = textwrap.dedent("""
    import contextlib, sys, time
    import torch
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM
    from greenai_dagster.core.machine import device_slot
    model_path, use_slot, counter = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32).eval()
    ids = torch.randint(0, min(model.config.vocab_size, 1000), (1, 256), generator=torch.Generator().manual_seed(1))
    print("ready", flush=True)
    chunks = 0
    while True:
        with (device_slot.shared("cpu") if use_slot else contextlib.nullcontext()):
            started = time.perf_counter()
            while time.perf_counter() - started < 0.5:     # one chunk of scoring work under the slot
                with torch.no_grad():
                    model(ids)
        chunks += 1
        with open(counter, "w") as f:
            f.write(str(chunks))
""")


def start_loaders(model: Path, count: int, use_slot: bool, folder: Path) -> list[tuple[subprocess.Popen, Path]]:
    """`count` scoring processes; returns once each has loaded its model and started working."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = []
    for i in range(count):
        counter = folder / f"loader_{i}_{int(use_slot)}_{time.time_ns()}.count"
        procs.append((subprocess.Popen([sys.executable, "-c", LOADER, str(model), "1" if use_slot else "0",
                                        str(counter)], env=env, stdout=subprocess.PIPE, text=True), counter))
    for proc, _ in procs:
        assert proc.stdout.readline().strip() == "ready", "a loader failed to start"
    deadline = time.time() + 60
    while not all(c.exists() for _, c in procs):   # each has finished one chunk: the load is on
        assert time.time() < deadline, "loaders did no work"
        time.sleep(0.1)
    return procs


def stop_loaders(procs: list[tuple[subprocess.Popen, Path]]) -> list[int]:
    """Stops them; returns how many chunks each did (all > 0 means the load really ran)."""
    chunks = []
    for proc, counter in procs:
        proc.kill()
        proc.wait()
        chunks.append(int(counter.read_text()))
    return chunks


def probe(model: Path) -> dict:
    from greenai_dagster.core.evaluation.evaluate import EvalSettings, runtime

    started = time.perf_counter()
    run = runtime(model, "cpu", EvalSettings())
    return {"latency_ms": run["decode_ms_per_token"], "prefill_ms": run["prefill_ms"],
            "runtime": run.get("runtime"), "slot_wait_s": run.get("slot_wait_s"),
            "seconds": round(time.perf_counter() - started, 1)}


def under_load(model: Path, loaders: int, use_slot: bool, folder: Path) -> dict:
    procs = start_loaders(model, loaders, use_slot, folder)
    try:
        row = probe(model)
        time.sleep(1.0)                            # the load resumes after the probe
    finally:
        chunks = stop_loaders(procs)
    row["loader_chunks"] = chunks
    return row


def side_by_side(model: Path, rounds: int, loaders: int, folder: Path, with_unprotected: bool = True) -> dict:
    """`rounds` x (alone, slot, [no slot]) in that order; medians and the ratios to alone."""
    rows = []
    for i in range(rounds):
        rows.append({"round": i, "mode": "alone", **probe(model)})
        rows.append({"round": i, "mode": "slot", **under_load(model, loaders, True, folder)})
        if with_unprotected:
            rows.append({"round": i, "mode": "no_slot", **under_load(model, loaders, False, folder)})
    medians = {m: statistics.median(r["latency_ms"] for r in rows if r["mode"] == m)
               for m in ("alone", "slot", "no_slot") if any(r["mode"] == m for r in rows)}
    return {"rows": rows, "median_latency_ms": medians,
            "ratio_to_alone": {m: round(v / medians["alone"], 3) for m, v in medians.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="a checkpoint folder (default: the packaged model)")
    args = parser.parse_args()
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint
    from greenai_dagster.core.storage.paths import data_root

    model = args.model or ensure_default_checkpoint()
    folder = data_root() / "bench_device_slot"
    folder.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    result = side_by_side(model, args.rounds, args.loaders, folder)
    result["how"] = (f"benchmarks/device_slot.py --rounds {args.rounds} --loaders {args.loaders}: {model.name}, "
                     f"evaluate.runtime (fresh process, batch 1, 128-token prompt, 16 new tokens, median of 5), "
                     f"alone / under {args.loaders} one-thread scoring processes taking the shared slot per 0.5 s "
                     f"chunk / the same load ignoring the slot, interleaved per round; {platform.processor() or platform.machine()}, "
                     f"{os.cpu_count()} cores, 1-min load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "device_slot.json").write_text(json.dumps(result, indent=1) + "\n")
    for row in result["rows"]:
        print(f"round {row['round']} {row['mode']:8s} {row['latency_ms']:7.2f} ms/token  "
              f"wait {row.get('slot_wait_s')} s  chunks {row.get('loader_chunks', '-')}")
    print("median ms/token:", result["median_latency_ms"], "ratio to alone:", result["ratio_to_alone"])


if __name__ == "__main__":
    main()
