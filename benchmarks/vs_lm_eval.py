"""Our evaluation of one task against running lm-eval directly on the same model and items.

    python benchmarks/vs_lm_eval.py [--task bb_sports_understanding] [--dataset bigbench_hard] [--repeats 3]

"ours":    the project's path, as an episode runs it: core.models.checkpoints.load_variant, then
           core.evaluation.evaluate.accuracy (lm-eval's HFLM around the loaded model, our task files).
"lm-eval": lm_eval.simple_evaluate(model="hf", model_args="pretrained=<folder>,dtype=float32")
           on the same task file, lm-eval loading the model itself.
Both score every item of the task (the full set), batch size 8, on the CPU, alternating
ours / lm-eval `--repeats` times in one process so both see the same machine state. Reported:
both accuracies (must be equal to the last digit) and the ratio of median wall times (model
load included on both sides). Results: benchmarks/results/vs_lm_eval.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import time
from pathlib import Path

from greenai_dagster.core.data.benchmarks import PreparedBenchmark, prepare_benchmark
from greenai_dagster.core.data.task_files import task_score
from greenai_dagster.core.evaluation.evaluate import EvalSettings, accuracy
from greenai_dagster.core.models.checkpoints import load_variant
from greenai_dagster.core.models.loading import DEFAULT_MODEL, resolve_model_path

RESULTS = Path(__file__).resolve().parent / "results"


def ours(folder: str, bench: PreparedBenchmark, batch_size: int) -> tuple[float, float]:
    started = time.perf_counter()
    model, tokenizer = load_variant(folder)
    acc = accuracy(model, tokenizer, bench, EvalSettings(limit_per_task=None, batch_size=batch_size)).accuracy
    elapsed = time.perf_counter() - started
    del model
    gc.collect()
    return acc, elapsed


def lm_eval_direct(folder: str, bench: PreparedBenchmark, batch_size: int) -> tuple[float, float]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    output = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={folder},dtype=float32", tasks=bench.tasks, device="cpu",
        batch_size=batch_size, task_manager=TaskManager(include_path=bench.include_path), log_samples=False,
        verbosity="WARNING", random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    elapsed = time.perf_counter() - started
    gc.collect()
    return task_score(output["results"][bench.tasks[0]])[1], elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="bigbench_hard")
    parser.add_argument("--task", default="bb_sports_understanding")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    prepared = prepare_benchmark(args.dataset)
    bench = PreparedBenchmark(args.dataset, [args.task], prepared.include_path, offline=True)
    folder = resolve_model_path(DEFAULT_MODEL)
    runs: dict[str, list] = {"ours": [], "lm_eval": []}
    for _ in range(args.repeats):
        runs["ours"].append(ours(folder, bench, args.batch_size))
        runs["lm_eval"].append(lm_eval_direct(folder, bench, args.batch_size))
        print(f"ours {runs['ours'][-1]}  lm-eval {runs['lm_eval'][-1]}", flush=True)
    accs = {k: {a for a, _ in v} for k, v in runs.items()}
    median = {k: statistics.median(t for _, t in v) for k, v in runs.items()}
    summary = {
        "task": args.task, "items": sum(1 for _ in open(Path(bench.include_path) / f"{args.task}.jsonl")),
        "accuracy_ours": sorted(accs["ours"]), "accuracy_lm_eval": sorted(accs["lm_eval"]),
        "accuracy_equal": accs["ours"] == accs["lm_eval"] and len(accs["ours"]) == 1,
        "wall_s_ours": [t for _, t in runs["ours"]], "wall_s_lm_eval": [t for _, t in runs["lm_eval"]],
        "median_wall_ratio_ours_over_lm_eval": median["ours"] / median["lm_eval"],
        "conditions": {"device": "cpu", "dtype": "float32", "batch_size": args.batch_size, "repeats": args.repeats},
    }
    (RESULTS / "vs_lm_eval.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
