"""Measure every strategy of the search space on one model + benchmark, through the project's own pipeline.

    python benchmarks/grid.py [--name grid_smollm2_bbh] [--only gptq_w4g64,...]

Each strategy is compressed and evaluated exactly as an episode would be (pipeline.compress_candidate
+ benchmark_candidate: same calibration, same proxy evaluation, same latency probe), stored in
DuckDB and the experiment folder, and the table is written to benchmarks/results/<name>.json.
Re-running resumes: finished strategies are skipped. The table feeds benchmarks/methods.py
(the methods table) and benchmarks/search.py (coordinator replay).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from greenai_dagster.core import pipeline
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.search.coordinator.space import search_space
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.paths import duckdb_path
from greenai_dagster.core.storage.store import ResultsStore

RESULTS = Path(__file__).resolve().parent / "results"

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default=None, help="default: grid_smollm2_<dataset>")
    parser.add_argument("--model", default=None)
    parser.add_argument("--dataset", default="generated_mc")
    parser.add_argument("--only", default="", help="comma-separated labels to run")
    parser.add_argument("--second-worker", action="store_true",
                        help="a second process on the same grid: walks the fast strategies from the end, numbering "
                             "its episodes from 101 so the two never share an episode folder")
    parser.add_argument("--reprobe", action="store_true",
                        help="re-measure latency/memory of every measured row in one quiet pass, then exit")
    args = parser.parse_args()
    args.name = args.name or f"grid_smollm2_{args.dataset}"
    if args.reprobe:
        reprobe(ResultsStore(duckdb_path()), args.name)
        return

    store = ResultsStore(duckdb_path())
    config = ExperimentConfig(name=args.name, dataset=args.dataset, episodes=100, budget=100.0,
                              **({"model": args.model} if args.model else {}))
    if store.experiment(args.name) is None:
        store.create_experiment(args.name, config.model, config.dataset, config.model_dump(), config.output_dir)
    pipeline.build_model_spec(store, open_experiment(store, args.name))
    pipeline.evaluate_baseline(store, open_experiment(store, args.name))     # reopened: now with its spec
    carry_forward(store, args.name)
    exp = open_experiment(store, args.name)                                  # with its baseline and facts
    spec = exp.spec
    done = {s["strategy_id"]: s for s in store.strategies(args.name)}
    wanted = set(filter(None, args.only.split(",")))
    # the whole space every coordinator searches; the slowest (AutoRound, adapter training) last, so an
    # interrupted grid still covers every other family
    slow = ("autoround", "lora", "qlora")
    order = sorted(search_space(spec), key=lambda s: any(m in slow for m in s.methods))
    if args.second_worker:
        order = [s for s in order if not any(m in slow for m in s.methods)][::-1]
    for strategy in order:
        done = {s["strategy_id"]: s for s in store.strategies(args.name)}   # the other worker may have run it
        episode = len(store.strategies(args.name)) + 1 + (100 if args.second_worker else 0)
        if wanted and strategy.strategy_id not in wanted:
            continue
        if strategy.strategy_id in done and done[strategy.strategy_id]["status"] == "done":
            continue
        key = pipeline.candidate_key(args.name, strategy.strategy_id)
        if strategy.strategy_id in done:  # an unfinished try: re-run it in its own episode folder
            episode = done[strategy.strategy_id]["episode"]
        store.add_strategy(key, args.name, episode, strategy.to_json())
        started = time.perf_counter()
        try:
            pipeline.compress_candidate(store, exp, key)
            row = pipeline.benchmark_candidate(store, exp, key)
        except Exception as exc:  # noqa: BLE001 - record and go on with the grid
            print(f"{strategy.strategy_id}: FAILED {exc}", flush=True)
            continue
        print(f"{strategy.strategy_id}: KL {row['kl_divergence']:.4f} acc {row['accuracy']:.3f} ppl x{row['ppl_ratio']:.2f} "
              f"lat {row['latency_ms']:.1f} size {row['model_size_gb']:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
        export(store, args.name)
    pipeline.update_frontier(store, exp)
    export(store, args.name)


def carry_forward(store: ResultsStore, name: str) -> None:
    """Rows of the committed table that this machine's DuckDB lacks come back as results, so a grid resumes
    on a fresh checkout instead of re-measuring hours of finished strategies. Each carried row says so in
    its conditions (`carried_from`) and has no checkpoint here (no reprobe). The baseline is never carried:
    it is measured afresh, and the fidelity reference it writes is deterministic, so carried and new KL
    figures share one reference."""
    table = RESULTS / f"{name}.json"
    if not table.exists():
        return
    known = {s["strategy_id"] for s in store.strategies(name)}
    committed = json.loads(table.read_text())
    for episode, entry in enumerate(committed["rows"]):   # row 0 is the baseline
        sid = entry["strategy_id"]
        if sid == pipeline.BASELINE_SUFFIX or sid in known:
            continue
        key = pipeline.candidate_key(name, sid)
        store.add_strategy(key, name, episode, {"strategy_id": sid, "steps": entry.get("steps", []),
                                                "reasoning": "carried from the committed grid table"})
        row = {k: entry.get(k) for k in entry if k not in ("steps", "runtime", "kernel", "benchmark", "is_pareto")}
        row.update(candidate_key=key, experiment=name, episode=episode, is_baseline=False, checkpoint_path=None,
                   conditions={"runtime": entry.get("runtime"), "kernel": entry.get("kernel"),
                               "carried_from": f"benchmarks/results/{table.name}"})
        store.write_result(row)
        store.set_strategy_status(key, "done")
        print(f"{sid}: carried from {table.name}", flush=True)


def reprobe(store: ResultsStore, name: str) -> None:
    """Latency and memory of every row again, back to back, so no row carries another job's load."""
    from greenai_dagster.core.evaluation.evaluate import runtime

    exp = open_experiment(store, name)
    settings = exp.config.eval.settings()
    for row in store.results(name, include_baseline=True):
        if not isinstance(row.get("checkpoint_path"), str) or not Path(row["checkpoint_path"]).exists():
            print(f"{row['strategy_id']}: no checkpoint here (carried row), not re-probed", flush=True)
            continue
        figures = runtime(Path(row["checkpoint_path"]), "cpu", settings, exp.trust_remote_code)
        row.update(latency_ms=figures["decode_ms_per_token"], prefill_ms=figures["prefill_ms"],
                   throughput_tokens_per_s=figures["throughput_tokens_per_s"], memory_gb=figures["peak_memory_gb"],
                   energy_j_per_token=figures.get("energy_j_per_token"))
        row["conditions"].update({k: figures.get(k) for k in (
            "runtime", "kernel", "runtime_fallback", "dtype", "threads", "memory_source", "loaded_memory_gb",
            "prefill_tokens_per_s", "decode_ms_spread", "energy_source", "latency_path", "load_average_1m")})
        row["conditions"]["remeasured"] = "benchmarks/grid.py --reprobe"   # the load above is this probe's own
        store.write_result(row)
        print(f"{row['strategy_id']}: decode {row['latency_ms']:.1f} ms/token, prefill {row['prefill_ms']:.0f} ms, "
              f"memory {row['memory_gb']:.3f} GB ({figures.get('runtime')})", flush=True)
    pipeline.update_frontier(store, exp)
    export(store, name)


def export(store: ResultsStore, name: str) -> None:
    keep = ["strategy_id", "methods", "kl_divergence", "kl_stderr", "kl_sampled", "kl_sampled_stderr", "top1_sampled",
            "top1_agreement", "top1_stderr", "ppl_ratio",
            "ppl_ratio_low", "ppl_ratio_high", "perplexity", "accuracy", "accuracy_stderr", "flips", "degraded",
            "degraded_reason", "is_pareto", "latency_ms", "prefill_ms",
            "throughput_tokens_per_s", "memory_gb", "model_size_gb", "compression_ratio", "compression_time_s",
            "eval_time_s", "energy_j_per_token", "energy_kwh", "co2_grams", "task_accuracy"]
    strategies = {s["candidate_key"]: s["strategy"] for s in store.strategies(name)}
    rows = []
    for row in store.results(name, include_baseline=True):
        entry = {k: row.get(k) for k in keep}
        entry["steps"] = strategies.get(row["candidate_key"], {}).get("steps", [])
        entry["runtime"] = (row.get("conditions") or {}).get("runtime") or "torch-eager (before core/runtimes)"
        entry["kernel"] = (row.get("conditions") or {}).get("kernel")
        # how the row's latency was taken: a row measured under load says so (load_average_1m, remeasured)
        entry["conditions"] = {k: (row.get("conditions") or {}).get(k) for k in (
            "runtime", "threads", "load_average_1m", "remeasured", "runtime_fallback", "decode_ms_spread",
            "carried_from", "device_slot_wait_s")}
        entry["benchmark"] = store.experiment(name)["dataset"]
        rows.append(entry)
    RESULTS.mkdir(parents=True, exist_ok=True)
    experiment = store.experiment(name)
    exp = open_experiment(store, name)
    (RESULTS / f"{name}.json").write_text(json.dumps({
        "how": "benchmarks/grid.py: each strategy compressed and evaluated by the project's pipeline, CPU float32: "
               "fidelity against the baseline on the first held-out tokens (eval.fidelity_tokens) and on text the "
               "baseline sampled itself (eval.sampled_tokens, kl_sampled), proxy accuracy "
               "(eval.limit_per_task items per task, stratified) with flips vs the baseline, latency and memory probed "
               "in a fresh process in the serving runtime each row names (`runtime`, core/runtimes); degraded = "
               "beyond the quality gate (core/search/gate.py)",
        "eval": exp.config.eval.model_dump(),
        "facts": store.facts(name),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "model": experiment["model"], "dataset": experiment["dataset"],
        "model_spec": json.loads((exp.folder / "model_spec.json").read_text()),
        "rows": rows,
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
