"""How well does the proxy subset rank candidates? Kendall tau of proxy vs full-set accuracy.

    python benchmarks/proxy_tau.py [--datasets bigbench_commonsense,elementary_math_qa] [--proxy 10]

Each variant is compressed from the default model through the project's own path
(compress_to_checkpoint -> load_variant), then every dataset is evaluated twice with lm-eval:
the proxy (`--proxy` items per task, what a search runs) and the full set (every written item,
<= 250 per task), each timed. Because task files are written in a seeded stratified order, the
proxy is a prefix of the full set, so the full run's per-item scores also give the proxy score at
other sizes (checked against the timed proxy run at `--proxy`). Kendall's tau-b between proxy and
full accuracies across variants is reported per proxy size, with the proxy's speed-up.
Results: benchmarks/results/proxy_tau.json and proxy_tau.txt. Resumable: finished variants are kept.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from scipy.stats import kendalltau

from greenai_dagster.core.compress import compress_to_checkpoint
from greenai_dagster.core.data.benchmarks import prepare_benchmark
from greenai_dagster.core.data.task_files import SCORE_METRICS
from greenai_dagster.core.evaluation.evaluate import macro_score, run_lm_eval
from greenai_dagster.core.methods.assess import build_spec
from greenai_dagster.core.models.checkpoints import load_variant
from greenai_dagster.core.models.loading import DEFAULT_MODEL, load_model_and_tokenizer, resolve_model_path
from greenai_dagster.core.storage.paths import checkpoints_dir
from greenai_dagster.core.strategy import Step, Strategy

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {  # a spread from lossless to badly damaged, cheap to make on a CPU
    "baseline": [],
    "rtn_w8g64": [("rtn", {"bits": 8, "group_size": 64})],
    "gptq_w4g64": [("gptq", {"bits": 4, "group_size": 64})],
    "rtn_w4g64": [("rtn", {"bits": 4, "group_size": 64})],
    "int8_dynamic": [("int8", {})],
    "magnitude_s30": [("magnitude", {"sparsity": 0.3})],
    "rtn_w3g64": [("rtn", {"bits": 3, "group_size": 64})],
    "structured_s30": [("structured", {"sparsity": 0.3})],
    "magnitude_s50": [("magnitude", {"sparsity": 0.5})],
}


def item_scores(output: dict, task: str) -> list[float]:
    """Per-item scores of one task in doc order (the stratified order of the task file)."""
    samples = sorted(output["samples"][task], key=lambda s: s["doc_id"])
    metric = next(m for m in SCORE_METRICS if m in samples[0])
    return [float(s[metric]) for s in samples]


def prefix_score(per_item: dict[str, list[float]], n: int | None) -> float:
    scores = [sum(items[:n]) / len(items[:n]) for items in per_item.values()]
    return sum(scores) / len(scores)


def measure_variant(name: str, steps: list, datasets: list[str], proxy: int, batch_size: int) -> dict:
    base = resolve_model_path(DEFAULT_MODEL)
    checkpoints_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=checkpoints_dir()) as tmp:
        if steps:
            model, tokenizer = load_model_and_tokenizer(base)
            spec = build_spec("default", model, base)
            del model
            strategy = Strategy(name, [Step(m, p) for m, p in steps])
            compress_to_checkpoint(base, strategy, spec, Path(tmp) / name)
            model, tokenizer = load_variant(Path(tmp) / name)
        else:
            model, tokenizer = load_model_and_tokenizer(base)
        row = {}
        for dataset in datasets:
            bench = prepare_benchmark(dataset)
            started = time.perf_counter()
            proxy_out = run_lm_eval(model, tokenizer, bench, proxy, batch_size)
            proxy_s = time.perf_counter() - started
            started = time.perf_counter()
            full_out = run_lm_eval(model, tokenizer, bench, None, batch_size, log_samples=True)
            full_s = time.perf_counter() - started
            per_item = {t: item_scores(full_out, t) for t in bench.tasks}
            row[dataset] = {
                "proxy_items_per_task": proxy, "proxy_accuracy": macro_score(proxy_out["results"], bench.tasks)[0],
                "full_accuracy": macro_score(full_out["results"], bench.tasks)[0],
                "proxy_time_s": proxy_s, "full_time_s": full_s,
                "full_items": sum(len(v) for v in per_item.values()),
                "prefix_accuracy": {str(n): prefix_score(per_item, n) for n in (5, 10, 20, 40, 80)},
            }
            print(f"{name} {dataset}: proxy {row[dataset]['proxy_accuracy']:.4f} ({proxy_s:.0f} s) "
                  f"full {row[dataset]['full_accuracy']:.4f} ({full_s:.0f} s)", flush=True)
        del model
        gc.collect()
    return row


def summarise(measured: dict, datasets: list[str], proxy: int) -> str:
    lines = [f"Proxy vs full set, {len(measured)} variants of the default model (CPU, {platform.processor() or 'x86_64'})",
             "Kendall tau-b of accuracy across variants (1 = same ranking), proxy speed-up = full time / proxy time", ""]
    for dataset in datasets:
        rows = {k: v[dataset] for k, v in measured.items() if dataset in v}
        full = [r["full_accuracy"] for r in rows.values()]
        timed = [r["proxy_accuracy"] for r in rows.values()]
        tau, p = kendalltau(timed, full)
        # median of per-variant ratios: robust to a variant whose run shared the CPU with other work
        speedup = statistics.median(r["full_time_s"] / r["proxy_time_s"] for r in rows.values())
        full_items = next(iter(rows.values()))["full_items"]
        lines.append(f"{dataset}: {len(rows)} variants, full set {full_items} items")
        lines.append(f"  proxy {proxy}/task (timed run): tau {tau:.3f} (p {p:.3f}), speed-up {speedup:.1f}x "
                     f"(median of per-variant wall-time ratios)")
        differ = [k for k, r in rows.items() if abs(r["prefix_accuracy"][str(proxy)] - r["proxy_accuracy"]) > 1e-12]
        lines.append(f"  timed proxy run == first {proxy} items/task of the full run: "
                     + ("all variants" if not differ else f"all but {', '.join(differ)}")
                     + (" (torch dynamic int8 takes one activation scale per batch tensor, so an item's score "
                        "depends on the other items in its batch)" if "int8_dynamic" in differ else ""))
        for n in ("5", "10", "20", "40", "80"):
            tau_n, _ = kendalltau([r["prefix_accuracy"][n] for r in rows.values()], full)
            lines.append(f"  proxy {n:>2}/task (prefix of full run): tau {tau_n:.3f}")
        for name, r in rows.items():
            lines.append(f"    {name:16s} proxy {r['proxy_accuracy']:.4f}  full {r['full_accuracy']:.4f}  "
                         f"({r['proxy_time_s']:.0f} s vs {r['full_time_s']:.0f} s)")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="bigbench_commonsense,elementary_math_qa")
    parser.add_argument("--proxy", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default="proxy_tau")
    args = parser.parse_args()
    datasets = args.datasets.split(",")
    out = RESULTS / f"{args.out}.json"
    measured = json.loads(out.read_text())["variants"] if out.exists() else {}
    for name in args.variants.split(","):
        if name in measured and all(d in measured[name] for d in datasets):
            continue
        measured[name] = {**measured.get(name, {}), **measure_variant(name, VARIANTS[name], datasets, args.proxy,
                                                                         args.batch_size)}
        out.write_text(json.dumps({"proxy_items_per_task": args.proxy, "variants": measured}, indent=1))
    summary = summarise(measured, datasets, args.proxy)
    (RESULTS / f"{args.out}.txt").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
