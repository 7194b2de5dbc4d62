"""Which cheap signal ranks variants like the full benchmark does? Proxy accuracy vs fidelity on two texts.

    python benchmarks/fidelity_tau.py [--device cuda] [--dataset generated_mc | --tasks-from above_chance.json]

Over variants of the default model made by the project's own methods (near-lossless to
destroyed), measures once per variant: every item of the benchmark (per-item correctness), and
per-position fidelity on two texts: up to 32k tokens of the corpus's held-out prose (disjoint from
the calibration half, `core.data.corpus`) and up to 8k tokens the baseline sampled itself (`core.evaluation.sampled_text`:
16 prompts across domains, temperature 1; no method calibrates on it). Every smaller measurement is a
prefix of those (the proxy is the first N items of each task's stratified order; KL on T tokens is the
first T positions), so the table compares exactly what a run with those settings would see:

  (a) Kendall tau of proxy accuracy at 10/20/40/80 items per task vs full-set accuracy;
  (b) Kendall tau of KL divergence (and top-1 agreement, perplexity ratio) on each text vs full-set accuracy;
  (c) Kendall tau of KL on fewer tokens vs KL on the most tokens, per text;
  plus the error of the stored top-k approximation of KL against the exact KL, and each variant's paired
  full-set verdict against the baseline (McNemar, `core.evaluation.flips.compare`), which `core.search.gate` uses.

Writes benchmarks/results/fidelity_tau.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
PROXY_SIZES = (10, 20, 40, 80)
TOKEN_SIZES = (1024, 4096, 16384, 32768)     # the held-out prose has ~48k tokens of SmolLM2's tokenizer
SAMPLED_SIZES = (1024, 2048, 4096, 8192)     # tokens the baseline sampled (prefixes of one draw)

# Variants of the default model: (id, steps). Near-lossless, moderate and broken ones.
VARIANTS = [   # in the order they run (a deadline keeps the first ones)
    ("rtn_w8g64", [("rtn", {"bits": 8, "group_size": 64})]),
    ("gptq_w4g64_act", [("gptq", {"bits": 4, "group_size": 64})]),
    ("rtn_w4g64", [("rtn", {"bits": 4, "group_size": 64})]),
    ("rtn_w3g64", [("rtn", {"bits": 3, "group_size": 64})]),
    ("rtn_w2g64", [("rtn", {"bits": 2, "group_size": 64})]),
    ("magnitude_s30", [("magnitude", {"sparsity": 0.3})]),
    ("magnitude_s50", [("magnitude", {"sparsity": 0.5})]),
    ("sparsegpt_s50", [("sparsegpt", {"sparsity": 0.5})]),
    ("wanda_2of4", [("wanda", {"sparsity": 0.5, "mask_structure": "2:4"})]),
    ("structured_s30", [("structured", {"sparsity": 0.3})]),
    ("structured_s50", [("structured", {"sparsity": 0.5})]),
    ("asvd_r80", [("asvd", {"param_ratio": 0.8})]),
    ("asvd_r50", [("asvd", {"param_ratio": 0.5})]),
    ("awq_w4g64", [("awq", {"bits": 4, "group_size": 64})]),
    ("gptq_w8g64_act", [("gptq", {"bits": 8, "group_size": 64})]),
    ("gptq_w4g32_act", [("gptq", {"bits": 4, "group_size": 32})]),
    ("magnitude_2of4", [("magnitude", {"sparsity": 0.5, "mask_structure": "2:4"})]),
    ("gptq_w3g64_act", [("gptq", {"bits": 3, "group_size": 64})]),
    ("int8", [("int8", {})]),
    ("autoround_w4g64", [("autoround", {"bits": 4, "group_size": 64})]),
    ("autoround_w3g64", [("autoround", {"bits": 3, "group_size": 64})]),
]


def proxy_accuracy(item_correct: dict[str, str], n: int | None) -> float:
    """Macro mean over tasks of the first n items' accuracy (n=None: every item)."""
    scores = [bits[:n].count("1") / len(bits[:n]) for bits in item_correct.values() if bits]
    return sum(scores) / len(scores)


def kendall(x: list[float], y: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def benchmark_from(args):
    from greenai_dagster.core.data import bigbench
    from greenai_dagster.core.data.benchmarks import PreparedBenchmark, bigbench_folder, prepare_benchmark
    from greenai_dagster.core.data.task_files import rehome

    if args.tasks_from:
        report = json.loads(Path(args.tasks_from).read_text())
        tasks = report.get("default_tasks") or report["tasks_above_chance"]
        rehome(bigbench_folder())
        return PreparedBenchmark("bigbench_above_chance", [bigbench.task_id(t) for t in tasks], str(bigbench_folder()), True)
    return prepare_benchmark(args.dataset, "offline")


def main() -> None:
    from greenai_dagster.core.evaluation import fidelity, sampled_text
    from greenai_dagster.core.search import gate
    from greenai_dagster.core.models.checkpoints import load_variant, save_variant
    from greenai_dagster.core.compress import apply_strategy
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint
    from greenai_dagster.core.evaluation.evaluate import EvalSettings, accuracy
    from greenai_dagster.core.evaluation.flips import compare
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.storage.paths import data_root
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="generated_mc")
    parser.add_argument("--tasks-from", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--only", default="")
    parser.add_argument("--out", default=str(RESULTS / "fidelity_tau.json"))
    parser.add_argument("--smoke", action="store_true", help="1k/2k tokens of each text only: a quick check of the "
                                                                "script on a CPU, not a table")
    parser.add_argument("--max-prose-tokens", type=int, default=None, help="largest prose size measured (a CPU run)")
    parser.add_argument("--max-sampled-tokens", type=int, default=None, help="largest sampled size measured")
    parser.add_argument("--no-exact-kl", action="store_true", help="skip the exact-vs-top-k KL check (a CPU run)")
    parser.add_argument("--deadline-s", type=float, default=None, help="start no new variant after this many seconds")
    args = parser.parse_args()
    global TOKEN_SIZES, SAMPLED_SIZES
    if args.smoke:
        TOKEN_SIZES, SAMPLED_SIZES = (1024, 2048), (1024, 2048)
    TOKEN_SIZES = tuple(t for t in TOKEN_SIZES if t <= (args.max_prose_tokens or t))
    SAMPLED_SIZES = tuple(t for t in SAMPLED_SIZES if t <= (args.max_sampled_tokens or t))
    script_started = time.perf_counter()
    done_file = Path(args.out).with_suffix(".rows.jsonl")       # resumable: one line per finished variant
    done = {json.loads(line)["variant"]: json.loads(line) for line in
            (done_file.read_text().splitlines() if done_file.exists() else [])}

    bench = benchmark_from(args)
    base_dir = ensure_default_checkpoint()
    base, tokenizer = load_model_and_tokenizer(str(base_dir), device=args.device, dtype=torch.float32)
    spec = build_spec("default", base, str(base_dir))
    text, source = fidelity.held_out_text()
    windows = fidelity.token_windows(tokenizer, text, max(TOKEN_SIZES))
    t0 = time.perf_counter()
    reference = fidelity.build_reference(base, windows)
    reference_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampled_windows = sampled_text.sample_windows(base, tokenizer, max(SAMPLED_SIZES))
    sampled_reference = fidelity.build_reference(base, sampled_windows)
    sampled_s = time.perf_counter() - t0
    settings = EvalSettings(limit_per_task=None, batch_size=args.batch_size)
    t0 = time.perf_counter()
    base_acc = accuracy(base, tokenizer, bench, settings)
    full_eval_s = time.perf_counter() - t0
    rows = [{"variant": "baseline", "full_accuracy": base_acc.accuracy, "item_correct": base_acc.item_correct,
             "fidelity": {str(t): fidelity.measure(base, reference, t).to_json() for t in TOKEN_SIZES},
             "fidelity_sampled": {str(t): fidelity.measure(base, sampled_reference, t).to_json() for t in SAMPLED_SIZES}}]
    if done and next(iter(done.values())).get("sampled_digest") != fidelity.reference_digest(sampled_reference):
        raise SystemExit(f"{done_file} holds rows measured on other sampled tokens; move it away to start afresh")
    work = data_root() / "checkpoints" / "fidelity_tau"
    wanted = set(filter(None, args.only.split(",")))
    failed: dict[str, str] = {}
    for variant, steps in VARIANTS:
        if wanted and variant not in wanted:
            continue
        if variant in done:
            rows.append(done[variant])
            continue
        if args.deadline_s and time.perf_counter() - script_started > args.deadline_s:
            print(f"deadline reached before {variant}; rerun to resume", flush=True)
            break
        folder = work / variant
        started = time.perf_counter()
        try:
            strategy = validate_strategy(Strategy(variant, [Step(m, dict(p)) for m, p in steps]), spec)
            model, tok = load_model_and_tokenizer(str(base_dir), device=args.device, dtype=torch.float32)
            model, reports, fmt = apply_strategy(model, tok, strategy, spec, args.device)
            save_variant(model, tok, folder, fmt, {"strategy": strategy.to_json(), "step_reports": reports})
            del model
            model, _ = load_variant(folder, device=args.device, dtype=torch.float32)
            compress_s = time.perf_counter() - started
            t0 = time.perf_counter()
            values = fidelity.per_position(model, reference)
            fid_s = time.perf_counter() - t0
            fid = {str(t): fidelity.summarise({k: v[:t] for k, v in values.items()}, reference["nll"][:t]).to_json()
                   for t in TOKEN_SIZES}
            values = fidelity.per_position(model, sampled_reference)
            fid_sampled = {str(t): fidelity.summarise({k: v[:t] for k, v in values.items()},
                                                      sampled_reference["nll"][:t]).to_json() for t in SAMPLED_SIZES}
            t0 = time.perf_counter()
            acc = accuracy(model, tokenizer, bench, settings)
            acc_s = time.perf_counter() - t0
            approx = None if args.no_exact_kl else fidelity.exact_vs_topk_kl(base, model, windows[:4])
        except Exception as exc:  # noqa: BLE001 - one failed variant must not lose the table
            print(f"{variant}: FAILED {type(exc).__name__}: {exc}", flush=True)
            failed[variant] = f"{type(exc).__name__}: {exc}"
            continue
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        rows.append({"variant": variant, "steps": steps, "full_accuracy": acc.accuracy, "item_correct": acc.item_correct,
                     "fidelity": fid, "fidelity_sampled": fid_sampled, "topk_vs_exact_kl": approx,
                     "sampled_digest": fidelity.reference_digest(sampled_reference),
                     "seconds": {"compress": compress_s, "fidelity_all_tokens": fid_s, "full_set": acc_s}})
        with done_file.open("a") as handle:
            handle.write(json.dumps(rows[-1]) + "\n")
        print(f"{variant}: full acc {acc.accuracy:.3f} KL prose {fid[str(TOKEN_SIZES[1])]['kl_divergence']:.4f} "
              f"KL sampled {fid_sampled[str(SAMPLED_SIZES[1])]['kl_divergence']:.4f} "
              f"ppl x{fid[str(TOKEN_SIZES[1])]['ppl_ratio']:.2f} ({time.perf_counter() - started:.0f} s)", flush=True)

    full = [r["full_accuracy"] for r in rows]
    tau = {"proxy_vs_full_accuracy": {str(n): kendall([proxy_accuracy(r["item_correct"], n) for r in rows], full)
                                      for n in PROXY_SIZES},
           "neg_kl_vs_full_accuracy": {str(t): kendall([-r["fidelity"][str(t)]["kl_divergence"] for r in rows], full)
                                       for t in TOKEN_SIZES},
           "top1_vs_full_accuracy": {str(t): kendall([r["fidelity"][str(t)]["top1_agreement"] for r in rows], full)
                                     for t in TOKEN_SIZES},
           "neg_ppl_ratio_vs_full_accuracy": {str(t): kendall([-r["fidelity"][str(t)]["ppl_ratio"] for r in rows], full)
                                              for t in TOKEN_SIZES},
           "kl_vs_kl_at_max_tokens": {str(t): kendall([r["fidelity"][str(t)]["kl_divergence"] for r in rows],
                                                      [r["fidelity"][str(max(TOKEN_SIZES))]["kl_divergence"] for r in rows])
                                      for t in TOKEN_SIZES},
           "neg_kl_sampled_vs_full_accuracy": {
               str(t): kendall([-r["fidelity_sampled"][str(t)]["kl_divergence"] for r in rows], full) for t in SAMPLED_SIZES},
           "top1_sampled_vs_full_accuracy": {
               str(t): kendall([r["fidelity_sampled"][str(t)]["top1_agreement"] for r in rows], full) for t in SAMPLED_SIZES},
           "kl_sampled_vs_kl_sampled_at_max_tokens": {
               str(t): kendall([r["fidelity_sampled"][str(t)]["kl_divergence"] for r in rows],
                               [r["fidelity_sampled"][str(max(SAMPLED_SIZES))]["kl_divergence"] for r in rows])
               for t in SAMPLED_SIZES},
           "kl_sampled_vs_kl_prose": kendall([r["fidelity_sampled"][str(max(SAMPLED_SIZES))]["kl_divergence"] for r in rows],
                                             [r["fidelity"][str(max(TOKEN_SIZES))]["kl_divergence"] for r in rows])}
    verdicts = {r["variant"]: compare(base_acc.item_correct, r["item_correct"]).to_json()
                for r in rows if r["variant"] != "baseline"}
    # the quality gate on each variant (prose KL at the run's default token count): fidelity bounds alone, and
    # with the accuracy rule (full-set McNemar, Bonferroni over the variants): the rows the accuracy rule changes
    gate_tokens = str(EvalSettings().fidelity_tokens)
    gate_rule = {}
    for r in rows[1:]:
        fid = r["fidelity"].get(gate_tokens) or r["fidelity"][str(min(TOKEN_SIZES))]
        row = {**fid, "flips": verdicts[r["variant"]]}
        gate_rule[r["variant"]] = {
            "fidelity_only": gate.degraded_reason(row, {"max_accuracy_drop": 1.0}),
            "with_accuracy": gate.degraded_reason(row, benchmark_discriminates=True, comparisons=len(rows) - 1)}
    items_per_task = {t: len(b) for t, b in base_acc.item_correct.items()}
    report = {
        "how": "benchmarks/fidelity_tau.py: variants of the default model made by the project's methods (float32), "
               f"each scored on every item of '{bench.name}' ({len(bench.tasks)} tasks) and on "
               f"{int(reference['nll'].numel())} held-out positions ({source}) and on "
               f"{int(sampled_reference['nll'].numel())} positions of {sampled_text.source(*sampled_windows.shape)}; "
               "smaller sizes are prefixes. "
               "Kendall tau-b over the variants and the baseline (scipy).",
        "device": args.device, "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "benchmark": {"name": bench.name, "tasks": bench.tasks, "items_per_task": items_per_task},
        "held_out_positions": int(reference["nll"].numel()),
        "sampled_positions": int(sampled_reference["nll"].numel()),
        "seconds": {"reference": reference_s, "sampled_reference": sampled_s, "baseline_full_set": full_eval_s},
        "full_set_vs_baseline": verdicts,
        "gate": {"how": f"core.search.gate.degraded_reason on KL/perplexity ratio at {gate_tokens} prose tokens and the "
                        "full-set flips; fidelity_only = max_accuracy_drop 1.0 (the rule before issue 26)",
                 "changed_by_accuracy": sorted(v for v, g in gate_rule.items()
                                               if bool(g["fidelity_only"]) != bool(g["with_accuracy"])),
                 "rows": gate_rule},
        "variants": len(rows) - 1, "tau": tau,
        "not_measured": failed | {v: "not reached before the deadline" for v, _ in VARIANTS
                                  if v not in failed and v not in {r["variant"] for r in rows}},
        "rows": [{k: v for k, v in r.items() if k != "item_correct"} | {
            "proxy_accuracy": {str(n): proxy_accuracy(r["item_correct"], n) for n in PROXY_SIZES}} for r in rows],
        "item_correct": {r["variant"]: r["item_correct"] for r in rows},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(tau, indent=1))


if __name__ == "__main__":
    main()
