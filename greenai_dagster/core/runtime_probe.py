"""Latency and peak memory of one checkpoint, measured in a fresh process.

Run as `python -m greenai_dagster.core.runtime_probe CHECKPOINT --device cpu ...`; prints one
JSON object. A fresh process makes peak memory honest. On CPU it is the process's peak RSS
while serving (VmHWM, reset after loading through /proc/self/clear_refs so conversion
transients of the loader do not count) minus the RSS before the model was loaded: resident
weights + activations + KV cache + kernel workspace. On CUDA it is `max_memory_allocated`.

Latency, batch 1: prefill = one forward over a fixed-length prompt; decode = one forward of a
single new token against the KV cache. Each is the median of `repeats` runs after `warmup`
runs. Throughput = new tokens per second of batched greedy decoding at `batch_size`.
"""

from __future__ import annotations

import argparse
import json
import gc
from pathlib import Path
import statistics
import sys
import time

import psutil
import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def measure(model, device: str, prompt_len: int, new_tokens: int, repeats: int, warmup: int, batch_size: int) -> dict:
    vocab = model.config.get_text_config().vocab_size if hasattr(model.config, "get_text_config") else model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(100, min(vocab, 30000), (1, prompt_len), generator=generator).to(device)

    prefill_times, decode_times = [], []
    for run in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True)
        _sync(device)
        prefill = time.perf_counter() - start
        past = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        steps = []
        for _ in range(new_tokens):
            _sync(device)
            start = time.perf_counter()
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            _sync(device)
            steps.append(time.perf_counter() - start)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        if run >= warmup:
            prefill_times.append(prefill)
            decode_times.append(statistics.median(steps))

    # Throughput: whole generate() calls at `batch_size`, after a warm-up call (the first call pays
    # one-time set-up: on an H100 it read 37 tokens/s cold for a 135M model), median of `repeats`.
    batch = prompt.repeat(batch_size, 1)
    rates = []
    for run in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        _sync(device)
        if run >= warmup:
            rates.append(batch_size * new_tokens / (time.perf_counter() - start))
    throughput = statistics.median(rates)
    return {
        "prefill_ms": 1000 * statistics.median(prefill_times),
        "decode_ms_per_token": 1000 * statistics.median(decode_times),
        "throughput_tokens_per_s": throughput,
    }


def release_freed_memory() -> None:
    """Give memory freed by the loader back to the OS (glibc keeps it otherwise, inflating RSS)."""
    try:
        import ctypes

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
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from greenai_dagster.core.checkpoints import load_variant

    rss_before = psutil.Process().memory_info().rss
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model, _ = load_variant(args.checkpoint, device=args.device)
    gc.collect()
    release_freed_memory()
    peak_reset = reset_peak_rss()
    figures = measure(model, args.device, args.prompt_len, args.new_tokens, args.repeats, args.warmup, args.batch_size)
    if args.device.startswith("cuda"):
        peak_bytes = torch.cuda.max_memory_allocated()
        memory_source = "cuda max_memory_allocated"
    else:
        peak_bytes = peak_rss_bytes() - rss_before
        memory_source = "peak RSS while serving minus RSS before load" + ("" if peak_reset else " (peak incl. load)")
    figures.update({
        "peak_memory_gb": peak_bytes / 1024**3,
        "memory_source": memory_source,
        "device": args.device,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "latency_path": "eager forward with KV cache",
    })
    json.dump(figures, sys.stdout)


if __name__ == "__main__":
    main()
