"""The methods table: one row per compression method on the default model, from the measured grid.

    python benchmarks/grid.py            # measures (resumable; ~1-2 h on a 2-core CPU)
    python benchmarks/methods.py         # prints the table below from benchmarks/results/<grid>.json

Columns: strategy, compression wall time, size on disk, compression ratio, KL divergence from the
baseline (nats/token), top-1 agreement, perplexity ratio, proxy accuracy with its 95 % interval,
the paired verdict against the baseline (McNemar), decode latency, and the quality gate. Then the
expected orderings are printed as measured (AutoRound <= GPTQ <= RTN KL at W4 g64; SparseGPT 2:4
better than magnitude 2:4; structured 30% smaller and faster).
Writes benchmarks/results/methods_table.txt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", default=str(RESULTS / "grid_smollm2_bigbench_above_chance.json"))
    args = parser.parse_args()
    table = json.loads(Path(args.table).read_text())
    rows = {r["strategy_id"]: r for r in table["rows"]}
    base = rows["baseline"]
    lines = [f"model {table['model']}, benchmark {table['dataset']}; {table['how']}",
             f"evaluation settings: {json.dumps(table.get('eval', {}))}"]
    header = (f"{'strategy':<40} {'time s':>7} {'size MB':>8} {'ratio':>6} {'KL':>8} {'±':>6} {'top1':>6} {'ppl x':>8} "
              f"{'acc [95% CI]':>19} {'vs baseline':>14} {'ms/tok':>7}  gate")
    lines += [header, "-" * len(header)]
    for sid, r in sorted(rows.items(), key=lambda kv: kv[1].get("kl_divergence") or 0.0):
        half = 1.96 * (r.get("accuracy_stderr") or 0.0)
        flips = r.get("flips") or {}
        verdict = f"{flips['verdict']} p={flips['p_value']:.2f}" if flips else "-"
        gate = ("DEGRADED: " + str(r.get("degraded_reason"))) if r.get("degraded") else ("frontier" if r.get("is_pareto") else "ok")
        lines.append(f"{sid:<40} {r['compression_time_s'] or 0:7.1f} {r['model_size_gb'] * 1024:8.1f} "
                     f"{r['compression_ratio']:6.2f} {r['kl_divergence']:8.4f} {r['kl_stderr'] or 0:6.4f} "
                     f"{r['top1_agreement']:6.3f} {r['ppl_ratio']:8.3g} "
                     f"{r['accuracy']:.3f} [{max(0, r['accuracy'] - half):.2f},{min(1, r['accuracy'] + half):.2f}] "
                     f"{verdict:>14} {r['latency_ms']:7.1f}  {gate}")

    def kl(sid):
        return rows[sid]["kl_divergence"] if sid in rows else float("nan")

    lines.append("\nexpected orderings, as measured (KL divergence from the baseline, nats/token):")
    lines.append(f"  W4 g64: autoround {kl('autoround_w4g64_i50'):.4f}, gptq act order {kl('gptq_w4g64_act'):.4f}, "
                 f"gptq no act order {kl('gptq_w4g64'):.4f}, awq {kl('awq_w4g64'):.4f}, rtn {kl('rtn_w4g64'):.4f}")
    lines.append(f"  2:4: sparsegpt {kl('sparsegpt_2of4'):.4f}, wanda {kl('wanda_2of4'):.4f}, magnitude {kl('magnitude_2of4'):.4f}")
    if "structured_s30" in rows:
        s = rows["structured_s30"]
        lines.append(f"  structured 30%: size {s['model_size_gb'] / base['model_size_gb']:.3f} of baseline, "
                     f"decode {s['latency_ms'] / base['latency_ms']:.3f}x, prefill {s['prefill_ms'] / base['prefill_ms']:.3f}x "
                     "of the baseline's time")
    text = "\n".join(lines)
    print(text)
    (RESULTS / "methods_table.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
