"""Each variant of the default model in every runtime that serves it, side by side, on this CPU.

    python benchmarks/runtimes_cpu.py [--grid grid_smollm2_bigbench_above_chance] [--experiment DIR ...]
                                      [--extra NAME=CHECKPOINT ...] [--repeats 5]

Variants: the baseline, the grid's W4 (GPTQ, AWQ, RTN), W8 (GPTQ) and dynamic-int8 checkpoints
(from the grid experiment's folders, where that experiment exists here), every candidate of each
`--experiment` folder (e.g. the README's first command's), `--extra` checkpoints, the packaged Q4_1
GGUF, and the `gguf` method's llama.cpp quantizations (F16, Q8_0, Q4_K_M, Q4_0) of the baseline. Each (variant, runtime) pair is measured
by the project's own probe (`core.evaluation.runtime_probe`, a fresh process each, batch 1, 128-token prompt,
16 decoded tokens, median of `repeats`), one after another in this one run, so the ratios compare
like with like. Writes benchmarks/results/runtimes_cpu.json (a list of rows) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from greenai_dagster.core import runtimes
from greenai_dagster.core.evaluation.evaluate import EvalSettings, _probe
from greenai_dagster.core.models import gguf_files
from greenai_dagster.core.models.default_model import ensure_default_checkpoint, find_packaged_gguf
from greenai_dagster.core.runtimes.verdicts import machine_fingerprint
from greenai_dagster.core.storage.paths import data_root, experiments_dir

RESULTS = Path(__file__).resolve().parent / "results"
GRID_VARIANTS = ["gptq_w4g64_act", "awq_w4g64", "rtn_w4g64", "gptq_w8g64_act", "int8_dynamic"]


def variants(grid: str, experiments: list[Path], extra: dict[str, Path]) -> dict[str, Path]:
    folders = {"baseline": ensure_default_checkpoint()}
    for folder, wanted in [(experiments_dir() / grid, GRID_VARIANTS)] + [(Path(e), None) for e in experiments]:
        for episode in sorted(folder.glob("episode_*")):
            strategy = json.loads((episode / "strategy.json").read_text()).get("strategy_id")
            model = episode / "model"
            if (wanted is None or strategy in wanted) and (model / "config.json").exists():
                folders[strategy if wanted else f"{folder.name}/{strategy}"] = model
    folders.update(extra)
    folders["packaged_q4_1.gguf"] = find_packaged_gguf()
    ggufs = gguf_files.baseline_ggufs(folders["baseline"], data_root() / "serving" / "gguf_method")
    for qtype, path in ggufs.items():
        folders[f"gguf_{qtype.lower()}"] = path
    return folders


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", default="grid_smollm2_bigbench_above_chance")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only-runtime", default="")
    parser.add_argument("--experiment", action="append", default=[], help="an experiment folder: all its candidates")
    parser.add_argument("--extra", action="append", default=[], help="NAME=CHECKPOINT")
    args = parser.parse_args()
    extra = {n: Path(p) for n, p in (e.split("=", 1) for e in args.extra)}
    int4_shown = False
    settings = EvalSettings(latency_repeats=args.repeats, throughput_batch_size=0)   # batch-1 latency only
    rows = []
    for variant, folder in variants(args.grid, args.experiment, extra).items():
        for runtime in runtimes.pick(folder, "cpu"):
            if args.only_runtime and runtime.name != args.only_runtime:
                continue
            if runtime.name == "torch-cpu-int4" and int4_shown:
                continue   # one W4 variant shows this runtime's speed (it is the fallback behind llama.cpp)
            int4_shown = int4_shown or runtime.name == "torch-cpu-int4"
            started = time.perf_counter()
            try:
                runtime.prepare(folder)
                run = _probe(folder, "cpu", settings, runtime.name)
            except Exception as exc:  # noqa: BLE001 - a runtime that cannot serve it is a row too
                rows.append({"variant": variant, "runtime": runtime.name, "error": str(exc)})
                print(f"{variant:22s} {runtime.name:20s} FAILED {exc}", flush=True)
                continue
            rows.append({
                "variant": variant, "runtime": run["runtime"], "kernel": run["kernel"], "weights": run["dtype"],
                "device": "cpu", "threads": run["threads"],
                "decode_ms_per_token": round(run["decode_ms_per_token"], 3),
                "decode_ms_range": [round(x, 3) for x in run["decode_ms_spread"]],
                "prefill_tokens_per_s": round(run["prefill_tokens_per_s"], 1),
                "memory_gb": round(run["peak_memory_gb"], 4), "loaded_memory_gb": round(run["loaded_memory_gb"], 4),
                "energy_j_per_token": run["energy_j_per_token"] and round(run["energy_j_per_token"], 4),
                "energy_source": run["energy_source"],
                "probe_seconds": round(time.perf_counter() - started, 1),
            })
            r = rows[-1]
            print(f"{variant:22s} {r['runtime']:20s} decode {r['decode_ms_per_token']:8.2f} ms/tok  prefill "
                  f"{r['prefill_tokens_per_s']:7.0f} tok/s  mem {r['memory_gb']:.3f} GB  {r['energy_j_per_token']} J/tok",
                  flush=True)
    best = {}
    for r in rows:
        if "error" not in r and (r["variant"] not in best or r["decode_ms_per_token"] < best[r["variant"]]["decode_ms_per_token"]):
            best[r["variant"]] = r
    anchor = best.get("baseline")
    for r in rows:
        if "error" not in r and anchor:
            r["speedup_vs_baseline_best"] = round(anchor["decode_ms_per_token"] / r["decode_ms_per_token"], 2)
            r["memory_vs_baseline_best"] = round(r["memory_gb"] / anchor["memory_gb"], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "runtimes_cpu.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "runtimes_cpu_how.json").write_text(json.dumps({
        "how": __doc__.strip().splitlines()[0] + " Measured by benchmarks/runtimes_cpu.py.",
        "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count(), **machine_fingerprint()},
        "settings": {"prompt_len": settings.prompt_len, "new_tokens": settings.new_tokens, "repeats": args.repeats,
                     "batch": 1},
        "best_runtime_per_variant": {v: r["runtime"] for v, r in best.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
