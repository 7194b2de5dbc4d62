"""Benchmarks as config: resolve a benchmark name to lm-eval tasks, preparing offline data.

Names come from `greenai_dagster/benchmarks.yaml`. Besides registered names, a path to a JSONL
file of multiple-choice items (`{"question", "choices", "gold"}`) is a benchmark of its own.
Offline BIG-bench tasks are taken from the `bigbench==1.0.0` sdist (fetched once with
`pip download --no-deps`, checksum verified, only the needed task.json files unpacked) and
written as JSONL + an lm-eval task YAML under `data/benchmarks/`. Items are shuffled with a
fixed seed when written, so lm-eval's `limit=N` takes a seeded random subset (the proxy set).
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from greenai_dagster.core.errors import EvaluationError, NetworkError
from greenai_dagster.core.paths import benchmarks_dir

REGISTRY_FILE = Path(__file__).resolve().parent.parent / "benchmarks.yaml"
BIGBENCH_SDIST = "bigbench-1.0.0.tar.gz"
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
SHUFFLE_SEED = 1234
MAX_ITEMS_PER_TASK = 1000


@dataclass
class PreparedBenchmark:
    name: str
    tasks: list[str]          # lm-eval task names
    include_path: str | None  # folder of our task YAMLs, or None for lm-eval's built-in tasks
    offline: bool
    offline_alternative: str | None = None


def registry() -> dict:
    return yaml.safe_load(REGISTRY_FILE.read_text())


def multiple_choice_task_yaml(task_name: str, jsonl_path: Path) -> dict:
    return {
        "task": task_name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(jsonl_path)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }


def write_task(task_name: str, items: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / f"{task_name}.jsonl"
    jsonl.write_text("".join(json.dumps(item) + "\n" for item in items))
    (folder / f"{task_name}.yaml").write_text(yaml.safe_dump(multiple_choice_task_yaml(task_name, jsonl)))


def bigbench_items(task_json: dict) -> list[dict]:
    """BIG-bench JSON examples -> multiple-choice items, formatted as BIG-bench formats prompts."""
    prefix = task_json.get("task_prefix", "")
    in_prefix = task_json.get("example_input_prefix", "\nQ: ")
    out_prefix = task_json.get("example_output_prefix", "\nA: ").rstrip()
    items = []
    for example in task_json["examples"]:
        scores = example.get("target_scores")
        if not scores:
            continue
        choices = list(scores)
        gold = max(range(len(choices)), key=lambda i: scores[choices[i]])
        question = f"{prefix}{in_prefix}{example['input']}{out_prefix}".strip()
        items.append({"question": question, "choices": choices, "gold": gold})
    random.Random(SHUFFLE_SEED).shuffle(items)
    return items[:MAX_ITEMS_PER_TASK]


def fetch_bigbench_sdist(dest: Path) -> Path:
    """`pip download --no-deps bigbench==1.0.0` into `dest`, then verify its checksum."""
    sdist = dest / BIGBENCH_SDIST
    if not sdist.exists():
        dest.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "bigbench==1.0.0", "-d", str(dest)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not sdist.exists():
            raise NetworkError(
                "could not download the BIG-bench sdist (bigbench==1.0.0) from PyPI.",
                f"Check access to PyPI, or place {BIGBENCH_SDIST} in {dest} by hand.",
            )
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != BIGBENCH_SHA256:
        sdist.unlink()
        raise NetworkError(f"{BIGBENCH_SDIST} checksum mismatch ({digest[:12]}...); the file was removed.",
                           "Run again to re-download it.")
    return sdist


def task_id(bigbench_task: str) -> str:
    """lm-eval task name for a BIG-bench task path (`elementary_math_qa/question_only` -> `bb_elementary_math_qa__question_only`)."""
    return "bb_" + bigbench_task.replace("/", "__")


def prepare_bigbench(task_names: list[str], out_dir: Path) -> None:
    missing = [t for t in task_names if not (out_dir / f"{task_id(t)}.yaml").exists()]
    if not missing:
        return
    with tempfile.TemporaryDirectory() as tmp:
        sdist = fetch_bigbench_sdist(benchmarks_dir() / "_downloads")
        wanted = {f"bigbench-1.0.0/bigbench/benchmark_tasks/{t}/task.json": t for t in missing}
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                if member.name in wanted:
                    archive.extract(member, tmp, filter="data")
        for path, task in wanted.items():
            source = Path(tmp) / path
            if not source.exists():
                raise EvaluationError(f"BIG-bench task '{task}' is not in the sdist.", "Check the task name.")
            write_task(task_id(task), bigbench_items(json.loads(source.read_text())), out_dir)


def prepare_benchmark(name: str) -> PreparedBenchmark:
    """Resolve `name` (registered name or JSONL path) to runnable lm-eval tasks."""
    path = Path(name)
    if path.suffix == ".jsonl" and path.exists():
        folder = benchmarks_dir() / "local" / path.stem
        items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        write_task(f"local_{path.stem}", items, folder)
        return PreparedBenchmark(name, [f"local_{path.stem}"], str(folder), offline=True)
    entries = registry()
    if name not in entries:
        raise EvaluationError(
            f"unknown benchmark '{name}'.",
            f"Use one of: {', '.join(sorted(entries))}, or a path to a multiple-choice .jsonl file.",
        )
    entry = entries[name]
    if entry["source"] == "bigbench_json":
        folder = benchmarks_dir() / "bigbench"
        prepare_bigbench(entry["tasks"], folder)
        return PreparedBenchmark(name, [task_id(t) for t in entry["tasks"]], str(folder), offline=True)
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
            folder = benchmarks_dir() / "bigbench"
            ready = all((folder / f"{task_id(t)}.yaml").exists() for t in entry["tasks"])
            sdist = (benchmarks_dir() / "_downloads" / BIGBENCH_SDIST).exists()
            status = "offline: ready" if ready else ("offline: sdist cached, unpacks on first use" if sdist
                                                    else "offline: fetched from PyPI on first use")
        else:
            hub = hub_reachable() if hub is None else hub
            status = ("hub reachable" if hub else f"needs the Hugging Face hub (unreachable); offline alternative: "
                      f"{entry.get('offline', 'none')}")
        rows.append({"name": name, "source": entry["source"], "tasks": len(entry["tasks"]), "status": status})
    return rows
