"""A Llama-3-8B-shaped model through the project's CUDA runtimes, side by side, on one GPU.

    python benchmarks/runtimes_gpu.py [--variants bf16,w4,fp8,int8] [--out benchmarks/results/runtimes_gpu.json]

The model has Llama-3-8B's shape (hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads,
vocab 128256) with random bf16 weights (speed does not depend on the values); each variant is the
same model put into one runtime's representation by that runtime's own code (`core.runtimes.cuda_*`:
`CudaCompiled` bf16, `CudaW4` RTN W4 g128 through tinygemm, `CudaFp8`, `CudaInt8`), one at a time.

Per variant, batch 1, through the runtime's `CompiledSession` (static KV cache of `--max-len`
positions, one decode step compiled and captured as a CUDA graph):
- decode ms/token: `--decode-steps` graph replays between two CUDA events after a 512-token prefill,
  median of `--repeats` such runs (after one warm-up run);
- prefill tokens/s: `--prompt-len` tokens through `Session.prefill` (synchronised wall clock),
  median of `--repeats` after two warm-ups;
- memory: `torch.cuda.max_memory_allocated` from before the session is built until the end
  (weights, cache, workspaces; the bf16 model the quantized ones are made from is freed first);
- energy: NVML's total-energy counter (`core.serving_energy`) around `--energy-steps` replays,
  median of three windows, divided by the tokens decoded;
- limit ms/token: bytes one decode step must read (every decoder weight, scale, norm, the lm_head
  and the whole static KV cache; not the embedding table, of which one row is read) over the
  device-to-device copy bandwidth measured in the same run (bytes read + written, median of 20).
For W4 a torch.profiler table of the compiled step (run without the graph, so each kernel is
recorded) is written beside the results, with its kernels grouped into int4 matmuls, attention,
per-layer elementwise/norm kernels and once-per-step kernels (lm_head, final norm, argmax).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
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


def build_model(layers: int):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**{**LLAMA3_8B, "num_hidden_layers": layers})
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model.eval()


def bytes_per_token(decoder) -> int:
    """What one decode step reads: decoder layers' weights and buffers, final norm, lm_head, KV cache."""
    tensors = {}
    for module in (decoder.layers, decoder.norm, decoder.lm_head):
        for t in list(module.parameters()) + list(module.buffers()):
            tensors[t.data_ptr()] = t.numel() * t.element_size()
    return sum(tensors.values()) + decoder.cache_bytes()


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


def energy_per_token(session, prompt: list[int], steps: int, windows: int = 3) -> tuple[float | None, str]:
    from greenai_dagster.core.serving_energy import counter

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
    return statistics.median(joules), meter.source


CATEGORIES = ("int4 matmuls (tinygemm)", "attention (QK/PV bmm, softmax, KV write)", "once per step (lm_head, "
              "final norm, argmax, embedding)", "per-layer elementwise / norm / rotary (fused Triton)", "other")


def categorize(name: str, calls_per_step: float) -> str:
    low = name.lower()
    if "int4" in low or "tinygemm" in low:
        return CATEGORIES[0]
    if calls_per_step <= 2.5:
        return CATEGORIES[2]
    if "softmax" in low or "index" in low or any(s in low for s in ("gemm", "gemv", "nvjet", "cutlass", "xmma")):
        return CATEGORIES[1]
    if low.startswith("triton"):
        return CATEGORIES[3]
    return CATEGORIES[4]


def profile_step(session, prompt: list[int], steps: int, out: Path) -> dict:
    """torch.profiler over `steps` calls of the compiled step (no graph); per-kernel table + categories."""
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
    try:
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=40)
    except (AttributeError, KeyError):
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40)
    lines = [f"W4 (tinygemm g128) decode step, kernels per token (ms), {steps} steps of the compiled step "
             f"without the CUDA graph, torch.profiler", ""]
    lines += [f"{ms:8.4f} ms  {n:6.1f} calls/token  {cat[:40]:40s} {name[:110]}" for ms, n, cat, name in rows[:60]]
    lines += ["", "by category (ms/token): " + json.dumps({k: round(v, 4) for k, v in totals.items()}),
              f"sum of kernel time: {sum(totals.values()):.4f} ms/token", "", table]
    out.write_text("\n".join(lines))
    return {k: round(v, 4) for k, v in totals.items()}


def runtime_for(variant: str):
    from greenai_dagster.core.runtimes.cuda_compiled import CudaCompiled
    from greenai_dagster.core.runtimes.cuda_fp8 import CudaFp8
    from greenai_dagster.core.runtimes.cuda_int8 import CudaInt8
    from greenai_dagster.core.runtimes.cuda_w4 import CudaW4

    return {"bf16": CudaCompiled, "w4_g128": CudaW4, "fp8": CudaFp8, "int8": CudaInt8}[variant]()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="bf16,w4_g128,fp8,int8")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--decode-steps", type=int, default=100)
    parser.add_argument("--energy-steps", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "runtimes_gpu.json"))
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth()
    print(f"{device_name}, torch {torch.__version__}: copy bandwidth {bandwidth / 1e12:.3f} TB/s (read + write)",
          flush=True)
    prompt = torch.randint(100, 30000, (args.prompt_len,), generator=torch.Generator().manual_seed(0)).tolist()
    rows = []
    for variant in args.variants.split(","):
        runtime = runtime_for(variant)
        model = build_model(args.layers)
        runtime.convert(model)
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        session = runtime.session_for(model, "cuda", max_len=args.max_len)
        compile_s = time.perf_counter() - started
        decode = time_decode(session, prompt, args.decode_steps, args.repeats)
        prefill = time_prefill(session, prompt, args.repeats)
        joules, energy_source = energy_per_token(session, prompt, args.energy_steps)
        memory = torch.cuda.max_memory_allocated()
        nbytes = bytes_per_token(session.decoder)
        limit_ms = 1000 * nbytes / bandwidth
        decode_ms = statistics.median(decode)
        row = {
            "variant": variant, "runtime": runtime.name, "kernel": runtime.kernel,
            "device": f"cuda ({device_name})", "model": f"Llama-3-8B shape, {args.layers} layers, random bf16 weights",
            "decode_ms_per_token": round(decode_ms, 4), "decode_ms_runs": [round(x, 4) for x in decode],
            "prefill_tokens_per_s": round(args.prompt_len / statistics.median(prefill), 1),
            "memory_gb": round(memory / 1e9, 3), "energy_j_per_token": None if joules is None else round(joules, 4),
            "energy_source": energy_source, "limit_ms_per_token": round(limit_ms, 4),
            "ratio_to_limit": round(decode_ms / limit_ms, 3), "bytes_read_per_token_gb": round(nbytes / 1e9, 3),
            "copy_bandwidth_tb_s": round(bandwidth / 1e12, 3), "batch_size": 1, "prompt_len": args.prompt_len,
            "static_cache_len": args.max_len, "decode_steps_timed": args.decode_steps, "repeats": args.repeats,
            "compile_and_capture_s": round(compile_s, 1), "torch": torch.__version__,
            "timing": ("decode: CUDA events around graph replays of the compiled step, median of repeats; prefill: "
                       "wall clock around Session.prefill (synchronised), median of repeats"),
        }
        if variant.startswith("w4"):
            profile_path = out.with_name(out.stem + "_w4_profile.txt")
            row["profile_ms_per_token"] = profile_step(session, prompt, 20, profile_path)
            row["profile_file"] = profile_path.name
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("variant", "decode_ms_per_token", "limit_ms_per_token",
                                              "prefill_tokens_per_s", "memory_gb", "energy_j_per_token",
                                              "compile_and_capture_s")}), flush=True)
        out.write_text(json.dumps(rows, indent=2))
        del session, model
        gc.collect()
        torch.cuda.empty_cache()
    print(f"{'variant':10s} {'ms/token':>9s} {'limit':>7s} {'ratio':>6s} {'prefill t/s':>11s} {'GB':>6s} {'J/token':>8s}")
    for r in rows:
        print(f"{r['variant']:10s} {r['decode_ms_per_token']:9.3f} {r['limit_ms_per_token']:7.3f} "
              f"{r['ratio_to_limit']:6.2f} {r['prefill_tokens_per_s']:11.0f} {r['memory_gb']:6.2f} "
              f"{r['energy_j_per_token'] if r['energy_j_per_token'] is not None else float('nan'):8.3f}")


if __name__ == "__main__":
    main()
