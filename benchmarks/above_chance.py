"""Which multiple-choice tasks can tell the default model from chance?

    python benchmarks/above_chance.py generated [--device cuda]  # the generated families (the default benchmark)
    python benchmarks/above_chance.py prepare            # every MC JSON task of the BIG-bench sdist -> task files
    python benchmarks/above_chance.py run [--device cuda] [--batch-size 64] --out benchmarks/results/above_chance_bigbench.json

`generated` scores the default model on every item of every family of `core.data.generated_tasks` and
keeps the families above chance (same test as below) as the default benchmark (`generated_mc`);
it also tests the proxy the search scores (the first `limit_per_task` items of each kept family)
against chance at PROXY_ALPHA. Writes benchmarks/results/above_chance.json.

`run` scores the default model (SmolLM2-135M-Instruct, float32) on every item of every
multiple-choice task (each task file is the task's first 250 items in the seeded stratified
order, as for every offline benchmark) with lm-eval, and tests each task's accuracy against its
chance rate (mean 1/options): one-sided z-test, Holm-Bonferroni over all tasks at family-wise
alpha 0.05, and an effect of at least MIN_MARGIN above chance. The tasks that pass become the
`bigbench_above_chance` benchmark (benchmarks.yaml). Writes the file named by --out
(benchmarks/results/above_chance_bigbench.json for this screen).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MIN_MARGIN = 0.05      # accuracy - chance, absolute
ALPHA = 0.05
PROXY_ALPHA = 0.01     # the items the search scores must tell the default model from chance at this level


def prepare() -> list[str]:
    from greenai_dagster.core.data import bigbench
    from greenai_dagster.core.data.benchmarks import bigbench_folder
    from greenai_dagster.core.storage.paths import benchmarks_dir

    downloads = benchmarks_dir() / "_downloads"
    tasks = bigbench.multiple_choice_tasks(bigbench.fetch_sdist(downloads))
    bigbench.prepare(tasks, bigbench_folder(), downloads, generative=set())
    (bigbench_folder() / "multiple_choice_tasks.json").write_text(json.dumps(tasks, indent=1))
    print(f"{len(tasks)} multiple-choice tasks written to {bigbench_folder()}")
    return tasks


def holm(p_values: dict[str, float], alpha: float = ALPHA) -> set[str]:
    """Names rejected by Holm's step-down procedure (family-wise error <= alpha)."""
    ordered = sorted(p_values, key=p_values.get)
    rejected = set()
    for i, name in enumerate(ordered):
        if p_values[name] > alpha / (len(ordered) - i):
            break
        rejected.add(name)
    return rejected


def screen_tasks(task_ids: dict[str, str], result) -> tuple[list[dict], list[str]]:
    """(a row per task: items, accuracy, chance, z, p, above_chance; the names above chance): each task's
    accuracy against its chance rate, Holm over all of them at ALPHA, and a margin of MIN_MARGIN.
    `task_ids`: name -> lm-eval task id; `result`: `evaluate.accuracy`'s, with per-item correctness."""
    from greenai_dagster.core.evaluation.flips import above_chance

    rows, p_values = [], {}
    for name, tid in task_ids.items():
        test = above_chance({tid: result.item_correct[tid]}, {tid: result.chance[tid]})
        p_values[name] = test["p_value"]
        rows.append({"task": name, "items": test["items"], "accuracy": test["accuracy"], "chance": test["chance"],
                     "z": test["z"], "p_value": test["p_value"]})
    significant = holm(p_values)
    for row in rows:
        row["above_chance"] = row["task"] in significant and row["accuracy"] - row["chance"] >= MIN_MARGIN
    return rows, [r["task"] for r in rows if r["above_chance"]]


def one_per_family(rows: list[dict]) -> list[str]:
    """The default benchmark: of the tasks above chance, the strongest subtask of each BIG-bench task
    family (lowest p-value), so 44 near-identical multiemo subtasks do not drown the other 18 families."""
    best: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r["p_value"]):
        family = row["task"].split("/")[0]
        if row["above_chance"] and family not in best:
            best[family] = row
    return sorted(r["task"] for r in best.values())


def run(device: str, batch_size: int, out: Path, max_options: int | None = None, items: int | None = None,
        dtype: str = "float32") -> dict:
    from greenai_dagster.core.data import bigbench
    from greenai_dagster.core.data.benchmarks import PreparedBenchmark, bigbench_folder
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint
    from greenai_dagster.core.evaluation.evaluate import EvalSettings, accuracy
    from greenai_dagster.core.evaluation.flips import above_chance
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.data.task_files import rehome

    folder = bigbench_folder()
    rehome(folder)
    tasks = json.loads((folder / "multiple_choice_tasks.json").read_text())
    if max_options:
        tasks = [t for t in tasks if max(len(json.loads(line)["choices"]) for line in
                                         (folder / f"{bigbench.task_id(t)}.jsonl").read_text().splitlines()) <= max_options]
    import torch

    model, tokenizer = load_model_and_tokenizer(str(ensure_default_checkpoint()), device=device,
                                                dtype=getattr(torch, dtype))
    started = time.perf_counter()
    bench = PreparedBenchmark("all_mc", [bigbench.task_id(t) for t in tasks], str(folder), offline=True)
    result = accuracy(model, tokenizer, bench, EvalSettings(limit_per_task=items, batch_size=batch_size))
    elapsed = time.perf_counter() - started
    rows, chosen = screen_tasks({t: bigbench.task_id(t) for t in tasks}, result)
    report = {
        "how": "benchmarks/above_chance.py: default model (SmolLM2-135M-Instruct, float32) on every item of each "
               "BIG-bench multiple-choice JSON task (task files: first 250 items in the seeded stratified order), "
               "lm-eval log-likelihood acc, zero-shot; one-sided z-test vs chance (mean 1/options), Holm-Bonferroni "
               f"over {len(tasks)} tasks at alpha {ALPHA}, and accuracy - chance >= {MIN_MARGIN}",
        "screen": {"items_per_task": items or "all (<= 250)", "max_options": max_options, "dtype": dtype},
        "device": device, "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "wall_time_s": round(elapsed, 1), "tasks_measured": len(tasks), "tasks_above_chance": chosen,
        "default_tasks": one_per_family(rows),
        "rows": sorted(rows, key=lambda r: r["p_value"]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"{len(chosen)} of {len(tasks)} tasks above chance in {elapsed:.0f} s: {', '.join(chosen)}")
    return report


def score_tasks(task_ids: list[str], folder: Path, device: str, batch_size: int, items: int | None,
                dtype: str = "float32"):
    """lm-eval accuracy of the default model on `task_ids` (per-item correctness and chance rates)."""
    import torch

    from greenai_dagster.core.data.benchmarks import PreparedBenchmark
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint
    from greenai_dagster.core.evaluation.evaluate import EvalSettings, accuracy
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(ensure_default_checkpoint()), device=device,
                                                dtype=getattr(torch, dtype))
    bench = PreparedBenchmark("all_mc", task_ids, str(folder), offline=True)
    return accuracy(model, tokenizer, bench, EvalSettings(limit_per_task=items, batch_size=batch_size))


def run_generated(device: str, batch_size: int, out: Path, dtype: str = "float32") -> dict:
    """Every item of every generated family; the families above chance become `generated_mc`."""
    from greenai_dagster.core.data import generated_tasks
    from greenai_dagster.core.data.benchmarks import generated_folder
    from greenai_dagster.core.evaluation.eval_settings import EvalSettings
    from greenai_dagster.core.evaluation.flips import above_chance

    families = list(generated_tasks.FAMILIES)
    generated_tasks.prepare(families, generated_folder())
    started = time.perf_counter()
    result = score_tasks([generated_tasks.task_id(f) for f in families], generated_folder(), device, batch_size,
                         None, dtype)
    elapsed = time.perf_counter() - started
    rows, chosen = screen_tasks({f: generated_tasks.task_id(f) for f in families}, result)
    proxy_items = EvalSettings().limit_per_task
    proxy = above_chance({f: result.item_correct[generated_tasks.task_id(f)][:proxy_items] for f in chosen},
                         {f: result.chance[generated_tasks.task_id(f)] for f in chosen})
    report = {
        "how": "benchmarks/above_chance.py generated: default model (SmolLM2-135M-Instruct dequantized from the "
               f"packaged Q4_1 GGUF, {dtype}) on every item of each family of core/data/generated_tasks.py (seed "
               f"{generated_tasks.SEED}, <= {generated_tasks.ITEMS_PER_FAMILY} distinct items a family, seeded "
               "stratified order), lm-eval log-likelihood acc, zero-shot; one-sided z-test vs chance (mean "
               f"1/options), Holm-Bonferroni over {len(families)} families at alpha {ALPHA}, and accuracy - chance "
               f">= {MIN_MARGIN}. proxy: the first {proxy_items} items of each kept family (what the search scores), "
               f"one z-test of the total against chance, bar p < {PROXY_ALPHA}",
        "source": "generated", "seed": generated_tasks.SEED, "folder": generated_tasks.FOLDER_NAME,
        "device": device, "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "wall_time_s": round(elapsed, 1), "tasks_measured": len(families), "tasks_above_chance": chosen,
        "default_tasks": chosen,
        "proxy": {"items_per_task": proxy_items, **proxy, "bar_p": PROXY_ALPHA, "passes": proxy["p_value"] < PROXY_ALPHA},
        "rows": sorted(rows, key=lambda r: r["p_value"]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"{len(chosen)} of {len(families)} families above chance in {elapsed:.0f} s: {', '.join(chosen)}; "
          f"proxy ({proxy['items']} items) accuracy {proxy['accuracy']:.3f} vs chance {proxy['chance']:.3f}, "
          f"p = {proxy['p_value']:.2g}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["generated", "prepare", "run", "choose"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=str(RESULTS / "above_chance.json"))
    parser.add_argument("--max-options", type=int, default=None, help="skip tasks with more answer options")
    parser.add_argument("--items", type=int, default=None, help="first N items of each task (default: all)")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    if args.action == "generated":
        run_generated(args.device, args.batch_size, Path(args.out), args.dtype)
    elif args.action == "prepare":
        prepare()
    elif args.action == "choose":      # re-derive the default tasks from a stored report
        report = json.loads(Path(args.out).read_text())
        report["default_tasks"] = one_per_family(report["rows"])
        Path(args.out).write_text(json.dumps(report, indent=1))
        print("\n".join(report["default_tasks"]))
    else:
        run(args.device, args.batch_size, Path(args.out), args.max_options, args.items, args.dtype)


if __name__ == "__main__":
    main()
