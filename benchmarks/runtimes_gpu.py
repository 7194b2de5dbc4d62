"""A Llama-3-8B-shaped model through the project's CUDA runtimes, side by side, on one GPU.

    python benchmarks/runtimes_gpu.py [--variants bf16,w4_g128,fp8,int8] [--out benchmarks/results/runtimes_gpu.json]

The model has Llama-3-8B's shape (hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads,
vocab 128256) with random bf16 weights (speed does not depend on the values); each variant is the
same model put into one runtime's representation by that runtime's own code (`core.runtimes.cuda_*`:
`CudaCompiled` bf16, `CudaW4` RTN W4 g128 through tinygemm, the opt-in `CudaW4Triton` (same weights,
the project's Triton GEMV), `CudaFp8`, `CudaInt8`), one at a time, each in a fresh
process (as the latency probe serves each checkpoint), in one call on one machine.

Per variant, batch 1, through the runtime's `CompiledSession` (static KV cache of `--max-len`
positions; the decode step, captured as one CUDA graph, is the Triton launch list of `cuda_kernels` where
every linear has a GEMV kernel (bf16, W4 Triton), else the step compiled by torch.compile; `step_path`):
- decode ms/token: `--decode-steps` graph replays between two CUDA events after a 512-token prefill,
  median of `--repeats` such runs (after one warm-up run);
- prefill tokens/s: `--prompt-len` tokens through `Session.prefill` (wall clock, synchronised),
  median of `--repeats` after two warm-ups: with the Triton step the session replays a CUDA graph
  captured for that prompt length (`prefill_tokens_per_s`; `prefill_path` says which);
  `prefill_eager_tokens_per_s` is the same prefill launched eagerly from Python. For W4 Triton,
  `--w4-other-prefill` also times the prefill kernel that is not the default;
- check: the decode step's logits against the same step run eagerly through the modules (cuBLAS and
  torch ops, from the same cache) and against an eager prefill of the prompt plus the decoded token
  (relative L2 error, same top-1), so every kernel of the step is checked at this shape;
- memory: `torch.cuda.max_memory_allocated` from before the session is built until the end;
- energy: NVML's total-energy counter (`core.evaluation.serving_energy`) around `--energy-steps` replays,
  median of three windows, divided by the tokens decoded;
- limit ms/token: bytes one decode step must read (every decoder weight, scale, norm, the lm_head
  and the KV cache positions the timed steps attend to, on average prompt + steps / 2; not the
  embedding table, of which one row is read) over the device-to-device copy bandwidth measured in
  the same run (bytes read + written, median of 20);
- profile: torch.profiler over 20 steps run without the graph, kernels grouped (decoder GEMVs,
  lm_head, attention, norms and SiLU, other);
- batch 8 and 32 (`--batches`, `measure_batch`): serving throughput of the same weights with that many
  sequences decoded together, the step run through the runtime's batched matmul kernels and captured as
  one CUDA graph (no torch.compile, every variant alike), tokens/s and the ratio to that step's limit.
The bars of issue 29 are evaluated on these rows and written with the kernel tuning choices to
`<out stem>_kernels.json`; each variant's profile table to `<out stem>_<variant>_profile.txt`.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                 rms_norm_eps=1e-5, tie_word_embeddings=False)


def copy_bandwidth(gib: float = 2.0, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    src = torch.empty(int(gib * 2**30) // 4, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    times = []
    for i in range(repeats + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    nbytes = 2 * src.numel() * src.element_size()
    del src, dst
    torch.cuda.empty_cache()
    return nbytes / statistics.median(times)


def build_model(layers: int, device: str = "cuda", **shape):
    """Llama-3-8B's shape, random weights from a generator of its own (normal, std 0.02; norms 1), built on
    the meta device and filled on `device` (the default generator's state plays no part). `shape` overrides
    LlamaConfig fields (benchmarks/gpu/llama8b_pipeline.py's CPU smoke mode shrinks the model with it and sets
    the tokenizer's special token ids)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**{**LLAMA3_8B, "num_hidden_layers": layers, **shape})
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, config.initializer_range, generator=generator)
    return model.eval()


def bytes_per_token(decoder, positions: int) -> int:
    """What one decode step must read: decoder layers' weights and buffers, final norm, lm_head, and the
    KV cache of `positions` positions (the kernel step reads only the positions written so far)."""
    tensors = {}
    for module in (decoder.layers, decoder.norm, decoder.lm_head):
        for t in list(module.parameters()) + list(module.buffers()):
            tensors[t.data_ptr()] = t.numel() * t.element_size()
    per_position = decoder.cache_bytes() // decoder.max_len
    return sum(tensors.values()) + per_position * positions


def time_decode(session, prompt: list[int], steps: int, repeats: int) -> list[float]:
    per_token = []
    for _ in range(repeats + 1):
        session.prefill(prompt)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            session.replay()
        end.record()
        torch.cuda.synchronize()
        per_token.append(start.elapsed_time(end) / steps)
    return per_token[1:]


def time_prefill(session, prompt: list[int], repeats: int) -> list[float]:
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        session.prefill(prompt)   # synchronises before returning
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def time_prefill_eager(session, prompt: list[int], repeats: int) -> list[float]:
    graph_prefill = session.graph_prefill
    session.graph_prefill = False
    session.clear_prefill_graphs()
    try:
        return time_prefill(session, prompt, repeats)
    finally:
        session.graph_prefill = graph_prefill


def energy_per_token(session, prompt: list[int], steps: int, windows: int = 3) -> tuple[float | None, str]:
    from greenai_dagster.core.evaluation.serving_energy import counter

    meter = counter("cuda", 1)
    if not meter.source.startswith("NVML"):
        return None, meter.source
    joules = []
    for _ in range(windows):
        session.prefill(prompt)
        before = meter.joules()
        for _ in range(steps):
            session.replay()
        torch.cuda.synchronize()
        joules.append((meter.joules() - before) / steps)
    if not all(joules):   # NVML's counter moves every ~20-100 ms: a window shorter than that measured nothing
        return None, f"{meter.source}: the counter did not move in a window of {steps} steps (no figure, not 0 J)"
    return statistics.median(joules), meter.source


@torch.no_grad()
def decode_check(session, prompt: list[int]) -> dict:
    """The decode step's logits for the token after `prompt`'s greedy next token, against an eager prefill
    of prompt + that token (the prefill kernels): relative L2 error and whether the top-1 agrees."""
    prompt = prompt[:-1]   # so that prompt + token has the timed prompt's length (no new kernel shapes)
    decoder = session.decoder
    session.prefill(prompt)
    token = session.last_token()
    # the decoder's own state (caches, token, position, logits): its linears' buffers are weights (FP8, int8 and
    # W4 keep them as buffers), and cloning them once made those variants' peak memory read ~6 GB high
    state = {name: b.clone() for name, b in decoder.named_buffers(recurse=False)
             if not name.startswith(("cos", "sin", "causal"))}
    session.decode()
    stepped = session.last_logits().clone()
    for name, b in decoder.named_buffers(recurse=False):   # the same step again, eagerly (cuBLAS, torch)
        if name in state:
            b.copy_(state[name])
    decoder.step()
    eager = decoder.logits.clone()
    ids = torch.tensor([prompt + [token]], device="cuda")
    reference = decoder(ids, torch.arange(len(prompt) + 1, device="cuda"), fresh=True)

    def rel(a, b):
        return round(((a - b).norm() / b.norm()).item(), 5)

    return {"vs_prefill": {"relative_l2_error": rel(stepped, reference),
                           "same_top1": bool(stepped.argmax() == reference.argmax())},
            "vs_eager_step": {"relative_l2_error": rel(stepped, eager), "same_top1": bool(stepped.argmax() == eager.argmax())},
            "eager_step_vs_prefill": rel(eager, reference), "finite": bool(torch.isfinite(stepped).all())}


CATEGORIES = ("decoder GEMVs", "lm_head GEMV", "attention (rotary, cache write, softmax)",
              "norms and SiLU-mul", "other (embedding, argmax, copies)")


def categorize(name: str, calls_per_step: float) -> str:
    low = name.lower()
    if "tinygemm" in low or "int4" in low:
        return CATEGORIES[0]
    if "gemv" in low:
        return CATEGORIES[1] if calls_per_step <= 1.5 else CATEGORIES[0]
    if "attention" in low:
        return CATEGORIES[2]
    if "rmsnorm" in low or "silu" in low:
        return CATEGORIES[3]
    return CATEGORIES[4]


def profile_step(session, prompt: list[int], steps: int, out: Path, title: str) -> dict:
    """torch.profiler over `steps` calls of the decode step (no graph); per-kernel table + categories."""
    from torch.profiler import ProfilerActivity, profile

    session.prefill(prompt)
    with torch.no_grad():
        for _ in range(3):
            session._step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                session._step()
            torch.cuda.synchronize()
    totals: dict[str, float] = {c: 0.0 for c in CATEGORIES}
    rows = []
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if e.device_type.name != "CUDA":   # kernels only (their CPU-side launch records carry the same name)
            continue
        if not us or e.key.startswith(("ProfilerStep", "aten::", "cuda", "Torch-Compiled", "CompiledFunction")):
            continue
        category = categorize(e.key, e.count / steps)
        totals[category] += us / steps / 1000
        rows.append((us / steps / 1000, e.count / steps, category, e.key))
    rows.sort(reverse=True)
    lines = [f"{title}: decode step kernels per token (ms), {steps} steps of the step without the CUDA graph, "
             "torch.profiler", ""]
    lines += [f"{ms:8.4f} ms  {n:6.1f} calls/token  {cat[:40]:40s} {name[:110]}" for ms, n, cat, name in rows[:40]]
    lines += ["", "by category (ms/token): " + json.dumps({k: round(v, 4) for k, v in totals.items()}),
              f"sum of kernel time: {sum(totals.values()):.4f} ms/token"]
    out.write_text("\n".join(lines))
    return {k: round(v, 4) for k, v in totals.items()}


def runtime_for(variant: str):
    from greenai_dagster.core.runtimes.cuda_compiled import CudaCompiled
    from greenai_dagster.core.runtimes.cuda_fp8 import CudaFp8
    from greenai_dagster.core.runtimes.cuda_int8 import CudaInt8
    from greenai_dagster.core.runtimes.cuda_w4 import CudaW4, CudaW4Triton

    return {"bf16": CudaCompiled, "w4_g128": CudaW4, "w4_g128_triton": CudaW4Triton, "fp8": CudaFp8,
            "int8": CudaInt8}[variant]()


def bars(rows: list[dict], device_name: str) -> list[dict]:
    """Issue 29's bars on this run's rows (ratios between variants of one run; on an H200 the ratios are the bar)."""
    by = {r["variant"]: r for r in rows}
    h100 = "H100" in device_name
    out = []

    def bar(name, value, limit, passed, how):
        out.append({"bar": name, "value": None if value is None else round(value, 4), "limit": limit,
                    "pass": passed, "how": how})

    bf16, fp8 = by.get("bf16"), by.get("fp8")
    for variant in ("w4_g128", "w4_g128_triton"):
        w4 = by.get(variant)
        if not w4:
            continue
        bar(f"{variant} decode ms/token", w4["decode_ms_per_token"], 2.5 if h100 else None,
            (w4["decode_ms_per_token"] <= 2.5) if h100 else None, "absolute, H100 only")
        bar(f"{variant} decode / its limit", w4["ratio_to_limit"], 1.55, w4["ratio_to_limit"] <= 1.55, "ratio to limit")
        if bf16:
            ratio = w4["prefill_tokens_per_s"] / bf16["prefill_tokens_per_s"]
            bar(f"{variant} prefill / bf16 prefill", ratio, 0.9, ratio >= 0.9, "tokens/s ratio, >=")
    if fp8 and bf16:
        ratio = fp8["decode_ms_per_token"] / bf16["decode_ms_per_token"]
        bar("FP8 decode / bf16 decode (ms/token)", ratio, 0.65, ratio <= 0.65, "ms ratio, <=")
        ratio = fp8["prefill_tokens_per_s"] / bf16["prefill_tokens_per_s"]
        bar("FP8 prefill / bf16 prefill", ratio, 1.0, ratio >= 1.0, "tokens/s ratio, >=")
    if bf16:
        bar("bf16 decode / its limit", bf16["ratio_to_limit"], 1.15, bf16["ratio_to_limit"] <= 1.15, "ratio to limit")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="bf16,w4_g128,w4_g128_triton,fp8,int8")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--decode-steps", type=int, default=100)
    parser.add_argument("--energy-steps", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "runtimes_gpu.json"))
    parser.add_argument("--w4-other-prefill", action="store_true", help="also time W4's other prefill kernel")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes; > 1: serving throughput (measure_batch)")
    parser.add_argument("--one", default="", help="(internal) measure this variant only, in this process")
    parser.add_argument("--bandwidth", type=float, default=0.0, help="(internal) copy bandwidth, bytes/s")
    parser.add_argument("--row-out", default="", help="(internal) where --one writes its row")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name()
    prompt = torch.randint(100, 30000, (args.prompt_len,), generator=torch.Generator().manual_seed(0)).tolist()
    if args.one:
        from greenai_dagster.core.runtimes import cuda_kernels

        row = measure_variant(args.one, args, prompt, args.bandwidth, device_name, out)
        row["kernel_tuning"] = cuda_kernels.tuning_report()
        Path(args.row_out).write_text(json.dumps(row, default=str))
        return
    bandwidth = copy_bandwidth()
    print(f"{device_name}, torch {torch.__version__}: copy bandwidth {bandwidth / 1e12:.3f} TB/s (read + write)",
          flush=True)
    rows = []
    for variant in args.variants.split(","):
        # each variant in a fresh process (as the latency probe serves each checkpoint): a third session in
        # one process hit a device-side index assert in its first prefill (H100, 2026-12-06; not diagnosed)
        row_out = out.with_name(f".{out.stem}_{variant}.row.json")
        command = [sys.executable, __file__, "--one", variant, "--bandwidth", str(bandwidth), "--row-out",
                   str(row_out), "--out", str(out)] + [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
                                                      ("layers", "prompt_len", "max_len", "decode_steps",
                                                       "energy_steps", "repeats", "batches")]
        command += ["--w4-other-prefill"] if args.w4_other_prefill else []
        proc = subprocess.run(command)
        if proc.returncode == 0 and row_out.exists():
            rows.append(json.loads(row_out.read_text()))
            row_out.unlink()
        else:
            print(f"variant {variant} failed (exit {proc.returncode}); going on", flush=True)
            diagnose(variant, command, row_out, out)
        finish(rows, device_name, out, quiet=True)
    finish(rows, device_name, out)


def measure_variant(variant: str, args, prompt: list[int], bandwidth: float, device_name: str, out: Path) -> dict:
    from greenai_dagster.core.runtimes.cuda_w4 import PackedW4Linear as W4Linear

    runtime = runtime_for(variant)
    model = build_model(args.layers)
    runtime.convert(model)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    session = runtime.session_for(model, "cuda", max_len=args.max_len)
    build_s = time.perf_counter() - started
    decode = time_decode(session, prompt, args.decode_steps, args.repeats)
    prefill = time_prefill(session, prompt, args.repeats)
    prefill_eager = time_prefill_eager(session, prompt, args.repeats)
    prefill_other = {}
    if variant == "w4_g128_triton" and args.w4_other_prefill:   # the other prefill kernel, same session
        default = W4Linear.prefill_kernel
        for kernel in ("fused", "dequantize"):
            if kernel == default:
                continue
            W4Linear.prefill_kernel = kernel
            session.clear_prefill_graphs()
            try:
                other = time_prefill(session, prompt, args.repeats)
                prefill_other[kernel] = round(args.prompt_len / statistics.median(other), 1)
            finally:
                W4Linear.prefill_kernel = default
                session.clear_prefill_graphs()
    check = decode_check(session, prompt)
    joules, energy_source = energy_per_token(session, prompt, args.energy_steps)
    memory = torch.cuda.max_memory_allocated()
    positions = args.prompt_len + args.decode_steps // 2
    nbytes = bytes_per_token(session.decoder, positions)
    limit_ms = 1000 * nbytes / bandwidth
    decode_ms = statistics.median(decode)
    profile_path = out.with_name(f"{out.stem}_{variant}_profile.txt")
    profile = profile_step(session, prompt, 20, profile_path, f"{device_name}, {variant} ({runtime.name})")
    row = {
        "variant": variant, "runtime": runtime.name, "kernel": runtime.kernel, "step_path": session.step_path,
        "device": f"cuda ({device_name})", "model": f"Llama-3-8B shape, {args.layers} layers, random bf16 weights",
        "decode_ms_per_token": round(decode_ms, 4), "decode_ms_runs": [round(x, 4) for x in decode],
        "prefill_tokens_per_s": round(args.prompt_len / statistics.median(prefill), 1),
        "prefill_path": "CUDA graph per prompt length" if session.graph_prefill else
                        f"eager ({session.prefill_graph_error})",
        "prefill_eager_tokens_per_s": round(args.prompt_len / statistics.median(prefill_eager), 1),
        "decode_check": check,
        "memory_gb": round(memory / 1e9, 3), "energy_j_per_token": None if joules is None else round(joules, 4),
        "energy_source": energy_source, "limit_ms_per_token": round(limit_ms, 4),
        "ratio_to_limit": round(decode_ms / limit_ms, 3), "bytes_read_per_token_gb": round(nbytes / 1e9, 3),
        "kv_positions_in_limit": positions,
        "copy_bandwidth_tb_s": round(bandwidth / 1e12, 3), "batch_size": 1, "prompt_len": args.prompt_len,
        "static_cache_len": args.max_len, "decode_steps_timed": args.decode_steps, "repeats": args.repeats,
        "session_build_s": round(build_s, 1), "torch": torch.__version__,
        "profile_ms_per_token": profile, "profile_file": profile_path.name,
        "timing": ("decode: CUDA events around graph replays of the decode step, median of repeats; prefill: "
                   "wall clock around Session.prefill (synchronised), median of repeats after two warm-ups"),
    }
    del session
    gc.collect()
    torch.cuda.empty_cache()
    row["batches"] = []
    for batch in parse_batches(args.batches):
        if batch == 1:
            continue
        try:
            row["batches"].append(measure_batch(runtime, model, batch, args, prompt, bandwidth))
        except Exception as exc:   # noqa: BLE001 - the batch-1 row stands; the failure is reported with it
            row.setdefault("batch_errors", {})[batch] = f"{type(exc).__name__}: {exc}"[:400]
            print(f"  batch {batch} failed: {row['batch_errors'][batch]}", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
    if variant == "w4_g128_triton":
        row["prefill_kernel"] = W4Linear.prefill_kernel
        row["prefill_tokens_per_s_other_kernels"] = prefill_other
    print(json.dumps({k: row[k] for k in ("variant", "decode_ms_per_token", "limit_ms_per_token", "ratio_to_limit",
                                          "prefill_tokens_per_s", "prefill_eager_tokens_per_s", "memory_gb",
                                          "energy_j_per_token", "session_build_s", "decode_check",
                                          "profile_ms_per_token")}), flush=True)
    if prefill_other:
        print("  other W4 prefill kernels (tokens/s):", prefill_other, flush=True)
    for b in row["batches"]:
        print(f"  batch {b['batch']}: {b['decode_ms_per_step']:.3f} ms/step, {b['tokens_per_s']:.0f} tokens/s, "
              f"{b['ratio_to_limit']:.2f}x its limit, {b['memory_gb']:.2f} GB", flush=True)
    del model
    return row


def diagnose(variant: str, command: list[str], row_out: Path, out: Path) -> None:
    """A failed variant once more with CUDA_LAUNCH_BLOCKING=1 (batch 1 only), so a device-side assert names the
    launch that raised it: `<out stem>_<variant>_failure.txt` gets the traceback's tail and, if it ran, the
    row. That row is not in the table: blocking launches change what prefill and energy measure."""
    import os

    command = [c for c in command if not c.startswith("--batches=")] + ["--batches=1"]
    proc = subprocess.run(command, env={**os.environ, "CUDA_LAUNCH_BLOCKING": "1"}, capture_output=True, text=True)
    report = [f"{variant}: rerun with CUDA_LAUNCH_BLOCKING=1, batch 1: exit {proc.returncode}",
              *[line for line in proc.stderr.splitlines() if "warn" not in line.lower()][-40:]]
    if proc.returncode == 0 and row_out.exists():
        report.append("row (launch-blocking, not in the table): " + row_out.read_text()[:4000])
        row_out.unlink()
    path = out.with_name(f"{out.stem}_{variant}_failure.txt")
    path.write_text("\n".join(report) + "\n")
    print("\n".join(report[:1] + report[-12:]), flush=True)


def parse_batches(text: str) -> list[int]:
    return sorted({int(b) for b in text.split(",") if b.strip()})


def measure_batch(runtime, model, batch: int, args, prompt: list[int], bandwidth: float) -> dict:
    """Serving throughput at `batch` sequences decoded together (one prompt, equal lengths): the decode
    step run eagerly through the runtime's linear modules (their batched matmul kernels: cuBLAS, tinygemm,
    `_scaled_mm`, the in-register W4 matmul) and captured as one CUDA graph, no torch.compile, for every
    variant alike; the KV cache has `batch` rows."""
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    session = runtime.session_for(model, "cuda", max_len=args.max_len, compile_step=False, kernel_step=False,
                                  batch=batch)
    build_s = time.perf_counter() - started
    decode = time_decode(session, prompt, args.decode_steps, args.repeats)
    logits = session.last_logits()
    rows_agree = bool(torch.isfinite(logits).all()) and bool(
        ((logits - logits[:1]).abs().max() <= 1e-2 * logits[:1].abs().max()).item())
    positions = args.prompt_len + args.decode_steps // 2
    nbytes = bytes_per_token(session.decoder, positions)
    step_ms = statistics.median(decode)
    limit_ms = 1000 * nbytes / bandwidth
    result = {"batch": batch, "step_path": f"{session.step_path}, CUDA graph", "decode_ms_per_step": round(step_ms, 4),
              "decode_ms_runs": [round(x, 4) for x in decode], "tokens_per_s": round(batch * 1000 / step_ms, 1),
              "limit_ms_per_step": round(limit_ms, 4), "ratio_to_limit": round(step_ms / limit_ms, 3),
              "bytes_read_per_step_gb": round(nbytes / 1e9, 3), "memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3),
              "rows_agree": rows_agree, "session_build_s": round(build_s, 1)}
    del session
    gc.collect()
    torch.cuda.empty_cache()
    return result


def by_batch(rows: list[dict]) -> dict[int, list[dict]]:
    """Per batch size, the variants fastest first (tokens/s); batch 1 from the decode step's own row."""
    table: dict[int, list[dict]] = {}
    for r in rows:
        table.setdefault(1, []).append({"variant": r["variant"], "tokens_per_s": round(1000 / r["decode_ms_per_token"], 1),
                                        "step_path": r["step_path"]})
        for b in r.get("batches", []):
            table.setdefault(b["batch"], []).append({"variant": r["variant"], "tokens_per_s": b["tokens_per_s"],
                                                     "step_path": b["step_path"]})
    return {batch: sorted(v, key=lambda x: -x["tokens_per_s"]) for batch, v in sorted(table.items())}


def finish(rows: list[dict], device_name: str, out: Path, quiet: bool = False) -> None:
    """Both results files from the rows so far (written after every variant, so a call cut by its time limit
    keeps what it measured), and with `quiet` off the table and the bars."""
    rows = [dict(r) for r in rows]
    tuning = {r["variant"]: r.pop("kernel_tuning", []) for r in rows}
    evaluated = bars(rows, device_name)
    out.write_text(json.dumps(rows, indent=2))
    out.with_name(f"{out.stem}_kernels.json").write_text(json.dumps(
        {"device": device_name, "torch": torch.__version__, "bars": evaluated, "by_batch": by_batch(rows),
         "kernel_tuning": tuning}, indent=2, default=str))
    if quiet:
        return
    print(f"{'variant':10s} {'ms/token':>9s} {'limit':>7s} {'ratio':>6s} {'prefill t/s':>11s} {'eager t/s':>9s} "
          f"{'GB':>6s} {'J/token':>8s}")
    for r in rows:
        print(f"{r['variant']:10s} {r['decode_ms_per_token']:9.3f} {r['limit_ms_per_token']:7.3f} "
              f"{r['ratio_to_limit']:6.2f} {r['prefill_tokens_per_s']:11.0f} {r['prefill_eager_tokens_per_s']:9.0f} "
              f"{r['memory_gb']:6.2f} "
              f"{r['energy_j_per_token'] if r['energy_j_per_token'] is not None else float('nan'):8.3f}")
    for batch, ranking in by_batch(rows).items():
        print(f"batch {batch}: " + ", ".join(f"{r['variant']} {r['tokens_per_s']:.0f} tokens/s" for r in ranking))
    for b in evaluated:
        print(f"BAR {b['bar']:40s} {b['value']} vs {b['limit']}: {'PASS' if b['pass'] else 'FAIL' if b['pass'] is False else 'n/a'}")


if __name__ == "__main__":
    main()
