"""Mixed allocations llama.cpp serves as their own integers, against its uniform Q4_0 / Q5_0 / Q8_0 (issue 15).

    python benchmarks/mixed_llama_cpp.py [--budgets 4.5,5,6,7] [--repeats 5] [--eval-tokens 4096]

On the default model, per linear: the exact knapsack (scipy milp) on the measured sensitivity table,
restricted to the widths a llama.cpp block holds exactly at group 64 (w4 -> Q4_0, w5 -> Q5_0,
w8 -> Q8_0), at each budget in average bits; and the three uniform allocations. Each is saved as a
compressed-tensors checkpoint by the `mixed` method, repacked into a GGUF with per-tensor block types
(`core.models.gguf_files.repack`, no requantization), and measured in llama.cpp on this CPU, one after another:
- KL divergence, top-1 agreement and perplexity against the float model on the held-out text, scored
  through llama.cpp's own logits (`core.evaluation.llama_cpp_scoring`, its 8-bit activation rounding included);
- decode latency and peak memory by the project's probe (`core.evaluation.runtime_probe`, a fresh process each,
  batch 1, 128-token prompt, 16 new tokens, median of `repeats`), holding the device slot, in `rounds`
  that each probe every variant once (the median over rounds is reported, with each round's);
- the GGUF's size on disk.
The sensitivity table comes from the mixed-precision benchmark's search state when present
(<data>/mixed_bench/smollm2/linear/search_state.json), else it is measured here.
Writes benchmarks/results/mixed_llama_cpp.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = ["w4", "w5", "w8"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    from greenai_dagster.core.data import corpus
    from greenai_dagster.core.evaluation import fidelity
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.models.default_model import ensure_default_checkpoint
    from greenai_dagster.core.evaluation.evaluate import EvalSettings, _probe
    from greenai_dagster.core.evaluation.llama_cpp_scoring import LlamaCppScorer
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.methods.mixed import levels as lv
    from greenai_dagster.core.methods.mixed import sensitivity, solvers
    from greenai_dagster.core.storage.paths import data_root
    from greenai_dagster.core.formats.gguf import describe
    from greenai_dagster.core.runtimes.llama_cpp import serving_file
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", default="4.5,5,6,7")
    parser.add_argument("--repeats", type=int, default=5, help="decode timings per probe (its median is kept)")
    parser.add_argument("--rounds", type=int, default=3, help="probes per variant, interleaved across variants")
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--out", default="mixed_llama_cpp.json", help="file name under benchmarks/results")
    parser.add_argument("--windows", type=int, default=2, help="sensitivity windows of 256 tokens, if measured here")
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    checkpoint = str(ensure_default_checkpoint())
    model, tokenizer = load_model_and_tokenizer(checkpoint)
    spec = build_spec("smollm2", model, checkpoint)
    unit_list = lv.units(model, "linear")
    work = data_root() / "mixed_bench" / "smollm2_llama_cpp"
    work.mkdir(parents=True, exist_ok=True)

    state_file = data_root() / "mixed_bench" / "smollm2" / "linear" / "search_state.json"
    table = json.loads(state_file.read_text())["table"] if state_file.exists() else None
    if table is None or any(level not in row for row in table.values() for level in LEVELS):
        log("measuring the sensitivity table (w4, w5, w8 per linear)")
        calib = fidelity.token_windows(tokenizer, corpus.calibration_text(), args.windows * 256, window=256)
        table = sensitivity.table(sensitivity.Quantizer(model, unit_list),
                                  sensitivity.reference_on(model, calib.tolist()), LEVELS)
        table_source = f"measured here on {calib.numel()} calibration tokens"
    else:
        table_source = f"{state_file} (the mixed-precision benchmark's measured table)"

    candidates = [(f"uniform_{level}", "uniform", lv.level_bits(level), lv.uniform(unit_list, level))
                  for level in LEVELS]
    candidates += [(f"knapsack_458_{b:g}", "knapsack", b, solvers.knapsack(table, unit_list, LEVELS, b)) for b in budgets]

    held_out = fidelity.token_windows(tokenizer, fidelity.held_out_text()[0], args.eval_tokens)
    reference = fidelity.build_reference(model, held_out)
    del model
    settings = EvalSettings(latency_repeats=args.repeats, throughput_batch_size=0)
    rows, folders = [], {}
    for label, kind, budget, allocation in candidates:
        folder = work / label
        if not (folder / "config.json").exists():
            compress_to_checkpoint(checkpoint, Strategy(label, [Step("mixed", {
                "allocation": allocation, "granularity": "linear"})]), spec, folder)
        gguf = serving_file(folder)   # the repacked GGUF llama.cpp serves (E-coded error if it cannot)
        scorer = LlamaCppScorer(gguf, n_ctx=1024)
        fid = fidelity.measure(scorer, reference)
        del scorer
        folders[label] = folder
        rows.append({
            "label": label, "model": "smollm2", "allocation_kind": kind, "budget_bits": budget,
            "avg_bits": round(lv.average_bits(allocation, unit_list), 4),
            "level_counts": {level: sum(1 for v in allocation.values() if v == level) for level in LEVELS},
            "gguf_tensor_types": describe(gguf), "gguf_size_gb": round(gguf.stat().st_size / 1e9, 4),
            "kl_divergence": fid.kl_divergence, "kl_stderr": fid.kl_stderr, "top1_agreement": fid.top1_agreement,
            "perplexity": fid.perplexity, "ppl_ratio": fid.ppl_ratio, "eval_tokens": fid.tokens,
        })
        log(f"{label}: bits {rows[-1]['avg_bits']:.3f} KL {fid.kl_divergence:.4f} ± {fid.kl_stderr:.4f} "
            f"ppl x{fid.ppl_ratio:.3f} {rows[-1]['gguf_size_gb']:.4f} GB [{rows[-1]['gguf_tensor_types']}]")
    # latency in rounds, every variant once per round: drift of the machine falls on all of them alike
    per_round: dict[str, list[dict]] = {r["label"]: [] for r in rows}
    for round_no in range(args.rounds):
        for r in rows:
            run = _probe(folders[r["label"]], "cpu", settings, "llama.cpp")
            per_round[r["label"]].append(run)
            log(f"round {round_no + 1}: {r['label']} {run['decode_ms_per_token']:.2f} ms/token")
    for r in rows:
        runs = per_round[r["label"]]
        medians = sorted(run["decode_ms_per_token"] for run in runs)
        r.update({
            "decode_ms_per_token": round(medians[len(medians) // 2], 3),
            "decode_ms_round_medians": [round(m, 3) for m in medians],
            "prefill_tokens_per_s": round(sorted(run["prefill_tokens_per_s"] for run in runs)[len(runs) // 2], 1),
            "peak_memory_gb": round(max(run["peak_memory_gb"] for run in runs), 4),
            "runtime": runs[0]["runtime"], "kernel": runs[0]["kernel"], "threads": runs[0]["threads"],
        })
        log(f"{r['label']}: {r['decode_ms_per_token']:.2f} ms/token (round medians {r['decode_ms_round_medians']}) "
            f"peak {r['peak_memory_gb']:.3f} GB")
    out = {
        "what": __doc__.strip().splitlines()[0],
        "measured_on": f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
        "sensitivity_table": table_source, "levels": {"w4": "Q4_0", "w5": "Q5_0", "w8": "Q8_0"},
        "quality": "llama.cpp logits vs the float model (transformers float32), held-out half of the corpus",
        "latency": {"prompt_len": settings.prompt_len, "new_tokens": settings.new_tokens,
                    "repeats": args.repeats, "rounds": args.rounds, "batch": 1,
                    "reported": "median over rounds of each probe's median; every round probes every variant"},
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(out, indent=1))
    log(f"wrote {RESULTS / args.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
