"""Is a GGUF variant's quality, scored through llama.cpp, what transformers would score? And what
does serving through llama.cpp change?

    python benchmarks/gguf_quality.py [--items 20] [--tokens 4096]

The baseline (float32, transformers) is scored once: per-item correctness on the first `--items`
items of each task of the default benchmark, and its reference distributions on `--tokens`
held-out tokens. Then each GGUF file is scored through llama.cpp's own logits
(`core.evaluation.llama_cpp_scoring`: fidelity and lm-eval on the same items, tokenised as lm-eval's HFLM does)
and, where transformers can load it (dequantized to float32), through transformers too:

- `baseline-F16.gguf` (the baseline converted by llama.cpp's converter): the equivalence check;
  llama.cpp's F16 path must match the float baseline within noise (McNemar on the paired items);
- Q8_0 / Q4_K_M / Q4_0 of the baseline (the `gguf` method) and the packaged Q4_1 file: the same
  weights scored both ways show what llama.cpp's kernels (8-bit activations in the quantized dot
  products) add on top of the weights' own error.

Writes benchmarks/results/gguf_quality.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def gguf_files_to_score() -> dict[str, Path]:
    from greenai_dagster.core.models import gguf_files
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint, find_packaged_gguf
    from greenai_dagster.core.storage.paths import data_root

    files = gguf_files.baseline_ggufs(ensure_default_checkpoint(), data_root() / "serving" / "gguf_method")
    files["packaged Q4_1"] = find_packaged_gguf()
    return files


def main() -> None:
    from greenai_dagster.core.evaluation import fidelity, flips
    from greenai_dagster.core.data.benchmarks import prepare_benchmark
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint
    from greenai_dagster.core.evaluation.evaluate import EvalSettings, accuracy
    from greenai_dagster.core.evaluation.llama_cpp_scoring import LlamaCppLM, LlamaCppScorer
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.formats.gguf import describe

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="bigbench_above_chance")
    parser.add_argument("--items", type=int, default=20, help="items per task (the stratified proxy order)")
    parser.add_argument("--tokens", type=int, default=4096, help="held-out tokens for fidelity")
    parser.add_argument("--only", default="", help="comma-separated GGUF names (F16,Q8_0,...)")
    parser.add_argument("--also-transformers", action="store_true",
                        help="also score each file through transformers' GGUF loader (dequantized to float32)")
    parser.add_argument("--out", default=str(RESULTS / "gguf_quality.json"))
    args = parser.parse_args()

    bench = prepare_benchmark(args.dataset, "offline")
    settings = EvalSettings(limit_per_task=args.items, batch_size=8)
    base_dir = ensure_default_checkpoint()
    base, tokenizer = load_model_and_tokenizer(str(base_dir), device="cpu", dtype=torch.float32)
    text, source = fidelity.held_out_text()
    windows = fidelity.token_windows(tokenizer, text, args.tokens)
    t0 = time.perf_counter()
    reference = fidelity.build_reference(base, windows)
    base_acc = accuracy(base, tokenizer, bench, settings)
    rows = [{"variant": "baseline", "scored_by": "transformers float32", "accuracy": base_acc.accuracy,
             "accuracy_stderr": base_acc.stderr, "seconds": round(time.perf_counter() - t0, 1)}]
    print(f"baseline (transformers): acc {base_acc.accuracy:.3f} ± {base_acc.stderr:.3f}", flush=True)
    del base

    def score(name: str, scored_by: str, model, lm, tensor_types: str) -> None:
        started = time.perf_counter()
        fid = fidelity.measure(model, reference)
        acc = accuracy(lm, tokenizer, bench, settings)
        paired = flips.compare(base_acc.item_correct, acc.item_correct)
        rows.append({"variant": name, "scored_by": scored_by, "tensor_types": tensor_types,
                     "accuracy": acc.accuracy, "accuracy_stderr": acc.stderr, "fidelity": fid.to_json(),
                     "flips_vs_baseline": paired.to_json() if paired else None,
                     "seconds": round(time.perf_counter() - started, 1)})
        verdict = paired.to_json() if paired else {}
        print(f"{name:14s} {scored_by:12s} acc {acc.accuracy:.3f} KL {fid.kl_divergence:.5f} "
              f"top1 {fid.top1_agreement:.4f} ppl x{fid.ppl_ratio:.4f} flips {verdict}", flush=True)

    wanted = set(filter(None, args.only.split(",")))
    for name, path in gguf_files_to_score().items():
        if wanted and name not in wanted:
            continue
        scorer = LlamaCppScorer(path, n_ctx=1024)
        score(name, "llama.cpp", scorer, LlamaCppLM(scorer, tokenizer), describe(path))
        del scorer
        if not args.also_transformers:
            continue
        try:   # the same file through transformers' GGUF loader: weights dequantized to float32
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                         torch_dtype=torch.float32).eval()
        except Exception as exc:  # noqa: BLE001 - a type transformers cannot dequantize is reported, not fatal
            rows.append({"variant": name, "scored_by": "transformers", "error": f"{type(exc).__name__}: {exc}"[:300]})
            print(f"{name}: transformers cannot load it: {type(exc).__name__}", flush=True)
            continue
        with torch.no_grad():
            score(name, "transformers", model, model, describe(path) + " dequantized to float32")
        del model

    report = {
        "how": ("benchmarks/gguf_quality.py: the default model's baseline (transformers, float32) against GGUF files "
                "scored through llama.cpp's logits (llama-cpp-python, CPU, logits_all, prompt tokens from the "
                "checkpoint's tokenizer as lm-eval's HFLM encodes them) and through transformers' GGUF loader "
                f"(dequantized to float32). Accuracy: first {args.items} items of each of {len(bench.tasks)} tasks of "
                f"'{bench.name}' (lm-eval acc, macro mean); flips and McNemar's exact test against the baseline's "
                f"items. Fidelity: {int(reference['nll'].numel())} held-out positions ({source}), top-64 KL."),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads()},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
