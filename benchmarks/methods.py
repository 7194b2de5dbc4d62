"""The methods table: one row per compression method on the default model, from the measured grid.

    python benchmarks/grid.py            # measures (resumable; ~1-2 h on a 2-core CPU)
    python benchmarks/methods.py         # prints the table below from benchmarks/results/<grid>.json

Columns: method, params, compression wall time, size on disk, compression ratio, perplexity,
proxy accuracy (40 seeded items per BBH task), decode latency. Then the expected orderings are
checked and printed as measured (AutoRound <= GPTQ <= RTN perplexity at W4 g64; SparseGPT 2:4
better than magnitude 2:4; structured 30% >= 25% smaller and faster; ASVD 0.5 halves the
linear parameters).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", default=str(RESULTS / "grid_smollm2_bbh.json"))
    args = parser.parse_args()
    table = json.loads(Path(args.table).read_text())
    rows = {r["strategy_id"]: r for r in table["rows"]}
    base = rows["baseline"]
    print(f"model {table['model']}, benchmark {table['dataset']}; {table['how']}")
    header = f"{'strategy':<44} {'time s':>7} {'size MB':>8} {'ratio':>6} {'ppl':>7} {'acc':>6} {'ms/tok':>7}"
    print(header)
    print("-" * len(header))
    for sid, r in rows.items():
        params = "; ".join(f"{s['method']}({', '.join(f'{k}={v}' for k, v in s['params'].items())})" for s in r["steps"])
        print(f"{sid:<44} {r['compression_time_s'] or 0:7.1f} {r['model_size_gb'] * 1024:8.1f} "
              f"{r['compression_ratio']:6.2f} {r['perplexity']:7.2f} {r['accuracy']:6.3f} {r['latency_ms']:7.1f}")
        if params:
            print(f"    {params}")

    def ppl(sid):
        return rows[sid]["perplexity"] if sid in rows else float("nan")

    print("\nexpected orderings, as measured:")
    print(f"  W4 g64 perplexity: autoround {ppl('autoround_w4g64_i50'):.2f}, gptq act order {ppl('gptq_w4g64_act'):.2f}, gptq no act order {ppl('gptq_w4g64'):.2f}, "
          f"rtn {ppl('rtn_w4g64'):.2f}")
    print(f"  2:4 perplexity: sparsegpt {ppl('sparsegpt_2of4'):.2f}, wanda {ppl('wanda_2of4'):.2f}, "
          f"magnitude {ppl('magnitude_2of4'):.2f}")
    if "structured_s30" in rows:
        s = rows["structured_s30"]
        print(f"  structured 30%: size {s['model_size_gb'] / base['model_size_gb']:.3f} of baseline, "
              f"decode {s['latency_ms'] / base['latency_ms']:.3f}x, prefill {s['prefill_ms'] / base['prefill_ms']:.3f}x "
              "of the baseline's time")


if __name__ == "__main__":
    main()
