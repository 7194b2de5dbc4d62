"""All 164 HumanEval problems on the default model (or --model), pass@1, through the project's task.

    python benchmarks/humaneval_full.py [--model PATH]

Writes benchmarks/results/humaneval_full.json: pass@1, which problems passed, how many greedy
completions the standard stop sequences cut to nothing, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from greenai_dagster.core.data.benchmarks import prepare_benchmark
from greenai_dagster.core.evaluation.evaluate import macro_score, run_lm_eval
from greenai_dagster.core.models.loading import DEFAULT_MODEL, load_model_and_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    model, tokenizer = load_model_and_tokenizer(args.model)
    bench = prepare_benchmark("humaneval", allow_code_execution=True)   # running this script is the opt-in
    started = time.perf_counter()
    output = run_lm_eval(model, tokenizer, bench, None, args.batch_size, log_samples=True)
    samples = output["samples"][bench.tasks[0]]
    summary = {
        "model": args.model, "pass@1": macro_score(output["results"], bench.tasks)[0], "problems": len(samples),
        "passed": sorted(s["doc"]["task_id"] for s in samples if s["pass@1"] == 1.0),
        "empty_completions": sum(1 for s in samples if not s["filtered_resps"][0].strip()),
        "wall_s": time.perf_counter() - started,
        "conditions": {"device": "cpu", "dtype": "float32", "batch_size": args.batch_size, "greedy": True},
    }
    (RESULTS / "humaneval_full.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
