"""Latency and memory of one checkpoint in the runtime that would serve it, in a fresh process.

Run as `python -m greenai_dagster.core.evaluation.runtime_probe CHECKPOINT --device cpu [--runtime NAME]`;
prints one JSON object. The runtime is the fastest that serves the checkpoint's format here
(`core.runtimes.pick`) unless named. A fresh process makes memory honest: the runtime's libraries
are imported first, so `loaded_memory_gb` (RSS after loading minus before) holds the model's
resident weights alone, and `peak_memory_gb` adds what serving takes on top (VmHWM reset after
loading through /proc/self/clear_refs: activations, KV cache, kernel workspace). On CUDA peak
memory is `max_memory_allocated`.

Latency, batch 1: prefill = one pass over a fixed-length prompt; decode = one new token against
the KV cache. Each is the median of `repeats` runs after `warmup` runs, timed the same way for
every runtime through `runtimes.base.Session`. Throughput = tokens/s of batched greedy decoding
at `batch_size`, where the runtime offers batched generation (null otherwise).

`probe_seconds` says where the probe's own time went (on an H100, 2026-12-08, a probe took 43-158 s of a
200 s candidate run, and nothing said on what): the process's start with its imports, the runtime's
libraries, opening the session (loading, converting, compiling or tuning the step) and the measuring.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import psutil
import torch

from greenai_dagster.core import runtimes
from greenai_dagster.core.evaluation.serving_energy import EnergyCounter, counter
from greenai_dagster.core.runtimes.base import Session


ENERGY_PROMPT_TOKENS = 8   # the energy window's prompt: short, so that decoding fills the window


def measure(session: Session, vocab: int, prompt_len: int, new_tokens: int, repeats: int, warmup: int,
            batch_size: int, meter: EnergyCounter | None = None) -> dict:
    """Prefill, decode and batched throughput of one session; medians over `repeats` after `warmup`.
    `meter` gives joules per generated token: read around each measured decode loop, or, for a counter
    with a minimum window (NVML), over `energy_window` instead."""
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(100, min(vocab, 30000), (prompt_len,), generator=generator).tolist()

    prefill_times, decode_times, decode_joules = [], [], []
    windowed = meter is not None and meter.min_window_s > 0
    for run in range(warmup + repeats):
        start = time.perf_counter()
        session.prefill(prompt)
        prefill = time.perf_counter() - start
        steps = []
        joules_before = meter.joules() if meter and not windowed and run >= warmup else None
        for _ in range(new_tokens):
            start = time.perf_counter()
            session.decode()
            steps.append(time.perf_counter() - start)
        if run >= warmup:
            prefill_times.append(prefill)
            decode_times.append(statistics.median(steps))
            if joules_before is not None and meter.joules() > joules_before:
                decode_joules.append((meter.joules() - joules_before) / new_tokens)
    window = energy_window(session, prompt, prompt_len + new_tokens, meter) if windowed else {}

    # Throughput: whole batched generations after a warm-up one (the first call pays one-time set-up:
    # on an H100 it read 37 tokens/s cold for a 135M model), median of `repeats`; None where the
    # runtime has no batched generation.
    rates = ([session.batched_tokens_per_s(prompt, batch_size, new_tokens) for _ in range(warmup + repeats)][warmup:]
             if batch_size > 0 else [None])   # batch size 0: latency and memory only
    prefill_s = statistics.median(prefill_times)
    return {
        "prefill_ms": 1000 * prefill_s,
        "prefill_tokens_per_s": prompt_len / prefill_s,
        "decode_ms_per_token": 1000 * statistics.median(decode_times),
        "decode_ms_spread": [1000 * min(decode_times), 1000 * max(decode_times)],
        "throughput_tokens_per_s": None if None in rates else statistics.median(rates),
        "energy_j_per_token": (window.get("joules_per_token") if windowed
                               else statistics.median(decode_joules) if decode_joules else None),
        **({"energy_window": window} if windowed else {}),
    }


def energy_window(session: Session, prompt: list[int], capacity: int, meter: EnergyCounter) -> dict:
    """Joules per decoded token over at least `meter.min_window_s` of decoding: cycles of a short prefill
    (ENERGY_PROMPT_TOKENS) and decodes up to the session's `capacity`, after one untimed cycle.

    Why not around each timed 16-token loop: NVML's counter moves in steps of ~20-100 ms, and a loop of a
    small model on a GPU lasts ~10 ms, so a reading either did not move or moved by a whole step. On the
    H100 (2026-12-07) that read 0.84-1.07 J/token for a 135M model at 0.66-0.98 ms/token: 0.9-1.6 kW, more than
    the board can draw. The window's short prefills are in the figure (one per `capacity` - 9 tokens)."""
    short = prompt[:ENERGY_PROMPT_TOKENS]
    steps = capacity - len(short) - 1

    def cycle() -> None:
        session.prefill(short)
        for _ in range(steps):
            session.decode()

    cycle()
    tokens, joules_before, start = 0, meter.joules(), time.perf_counter()
    while time.perf_counter() - start < meter.min_window_s:
        cycle()
        tokens += steps
    seconds, joules = time.perf_counter() - start, meter.joules() - joules_before
    return {"joules_per_token": joules / tokens if joules > 0 else None, "seconds": round(seconds, 3),
            "tokens": tokens, "watts": round(joules / seconds, 1)}


def release_freed_memory() -> None:
    """Give memory freed by the loader back to the OS (glibc keeps it otherwise, inflating RSS)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark for this process (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _vocab_size(folder: Path) -> int:
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    return int(config.get("vocab_size") or config.get("text_config", {}).get("vocab_size") or 32000)


def probe_seconds(entered: float, libraries_s: float, open_s: float, measure_s: float) -> dict:
    """Where a probe's time went: `process_start` from the process's creation to `main` (the interpreter
    and the imports of torch and the runtimes), `libraries` (the runtime's own), `open` (the session: load,
    convert, compile or tune the step), `measure` (timed runs, the energy window and batched throughput)."""
    return {"process_start": round(max(entered - psutil.Process().create_time(), 0.0), 2),
            "libraries": round(libraries_s, 2), "open": round(open_s, 2), "measure": round(measure_s, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runtime", default="", help="runtime name (core.runtimes); default: the fastest that serves it")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="the user's opt-in: the checkpoint's own Python code may run (never on by default)")
    args = parser.parse_args(argv)
    entered = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = Path(args.checkpoint)
    runtime = runtimes.by_name(args.runtime) if args.runtime else runtimes.pick(folder, args.device)[0]
    clock = time.perf_counter()
    runtime.prepare(folder)   # normally done by the caller already; a no-op when cached
    runtime.import_libraries()
    libraries_s = time.perf_counter() - clock
    rss_before = psutil.Process().memory_info().rss
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    clock = time.perf_counter()
    session = runtime.open_for_request(folder, args.device, args.threads or torch.get_num_threads(),
                                       args.prompt_len + args.new_tokens, trust_remote_code=args.trust_remote_code)
    open_s = time.perf_counter() - clock
    gc.collect()
    release_freed_memory()
    loaded_bytes = psutil.Process().memory_info().rss - rss_before
    peak_reset = reset_peak_rss()
    threads = args.threads or torch.get_num_threads()
    meter = counter(args.device, threads)
    clock = time.perf_counter()
    figures = measure(session, _vocab_size(folder), args.prompt_len, args.new_tokens, args.repeats, args.warmup,
                      args.batch_size, meter)
    measure_s = time.perf_counter() - clock
    if args.device.startswith("cuda"):
        peak_bytes = torch.cuda.max_memory_allocated()
        memory_source = "cuda max_memory_allocated"
    else:
        peak_bytes = peak_rss_bytes() - rss_before
        memory_source = ("peak RSS while serving minus RSS before load (libraries already imported)"
                         + ("" if peak_reset else " (peak incl. load)"))
    figures.update({
        "peak_memory_gb": peak_bytes / 1024**3,
        "loaded_memory_gb": loaded_bytes / 1024**3,
        "memory_source": memory_source,
        "device": args.device,
        "dtype": session.dtype(),
        "runtime": runtime.name,
        "kernel": runtime.kernel_for(folder),
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "threads": threads,
        "energy_source": meter.source,
        "latency_path": f"{runtime.name}: prefill then single-token decode against its KV cache",
        "probe_seconds": probe_seconds(entered, libraries_s, open_s, measure_s),
    })
    json.dump(figures, sys.stdout)


if __name__ == "__main__":
    main()
