"""Offline BIG-bench tasks: the `bigbench==1.0.0` sdist's task.json files as lm-eval tasks.

The sdist is fetched once with `pip download --no-deps` (PyPI is the one network this tool may
rely on), its sha256 is checked, and only the wanted task.json files are unpacked. Each task is
written as JSONL items plus an lm-eval task YAML (`core.task_files`) under
`data/benchmarks/bigbench_v2/`:

- tasks with `target_scores` are multiple choice, scored by log-likelihood (lm-eval `acc`), as
  BIG-bench's `multiple_choice_grade`;
- tasks with only `target` strings (object_counting, word_sorting), and tasks listed as
  `generative` in the registry (dyck_languages, whose 84 options BBH also turns into free
  generation), are generated greedily and scored by exact match against any of the targets.

Prompts follow BIG-bench's own formatting (task prefix, input prefix, output prefix), zero-shot.
Items are put in a seeded stratified order (`core.subsets`) and capped at FULL_ITEMS_PER_TASK,
the size BBH itself samples per task, so the written file is the full set and every prefix a
stratified proxy.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from greenai_dagster.core import task_files
from greenai_dagster.core.errors import EvaluationError, NetworkError
from greenai_dagster.core.subsets import stratified_order

SDIST = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
TASKS_IN_SDIST = "bigbench-1.0.0/bigbench/benchmark_tasks"
ORDER_SEED = 1234
FULL_ITEMS_PER_TASK = 250      # BBH's own per-task sample size
FOLDER_NAME = "bigbench_v2"    # bump when the written format or order changes


def task_id(bigbench_task: str) -> str:
    """lm-eval task name for a BIG-bench task path (`logical_deduction/three_objects` -> `bb_logical_deduction__three_objects`)."""
    return "bb_" + bigbench_task.replace("/", "__")


def _prompt(task_json: dict, example: dict) -> str:
    prefix = task_json.get("task_prefix") or ""
    in_prefix = task_json.get("example_input_prefix")
    out_prefix = task_json.get("example_output_prefix")
    in_prefix = "\nQ: " if in_prefix is None else in_prefix
    out_prefix = "\nA: " if out_prefix is None else out_prefix
    return f"{prefix}{in_prefix}{example['input']}{out_prefix.rstrip()}".strip()


def multiple_choice_items(task_json: dict) -> list[dict]:
    """Examples with `target_scores` -> {"question", "choices", "gold"}; the best-scored option is gold."""
    items = []
    for example in task_json["examples"]:
        scores = example.get("target_scores")
        if not scores:
            continue
        choices = list(scores)
        gold = max(range(len(choices)), key=lambda i: scores[choices[i]])
        items.append({"question": _prompt(task_json, example), "choices": choices, "gold": gold})
    return items


def generative_items(task_json: dict) -> list[dict]:
    """Examples -> {"question", "targets"}: `target` strings, or the best option of `target_scores`."""
    items = []
    for example in task_json["examples"]:
        targets = example.get("target")
        if targets is None and example.get("target_scores"):
            scores = example["target_scores"]
            targets = [max(scores, key=scores.get)]
        if targets is None:
            continue
        targets = [targets] if isinstance(targets, str) else list(targets)
        items.append({"question": _prompt(task_json, example), "targets": targets})
    return items


def task_items(task_json: dict, generative: bool) -> tuple[str, list[dict]]:
    """(kind, items in stratified order, capped): kind is "multiple_choice" or "generate"."""
    has_choices = any(e.get("target_scores") for e in task_json["examples"])
    if has_choices and not generative:
        kind, items, stratum = "multiple_choice", multiple_choice_items(task_json), (lambda it: it["gold"])
    else:
        kind, items, stratum = "generate", generative_items(task_json), (lambda it: 0)
    return kind, stratified_order(items, stratum, ORDER_SEED)[:FULL_ITEMS_PER_TASK]


def fetch_sdist(dest: Path) -> Path:
    """`pip download --no-deps bigbench==1.0.0` into `dest`, then verify its checksum."""
    sdist = dest / SDIST
    if not sdist.exists():
        dest.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "bigbench==1.0.0", "-d", str(dest)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not sdist.exists():
            raise NetworkError(
                "could not download the BIG-bench sdist (bigbench==1.0.0) from PyPI.",
                f"Check access to PyPI, or place {SDIST} in {dest} by hand.",
            )
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        sdist.unlink()
        raise NetworkError(f"{SDIST} checksum mismatch ({digest[:12]}...); the file was removed.",
                           "Run again to re-download it.")
    return sdist


def prepare(task_names: list[str], out_dir: Path, downloads: Path, generative: set[str]) -> None:
    """Write every missing task of `task_names` to `out_dir` (idempotent; each file written atomically)."""
    missing = [t for t in task_names if not (out_dir / f"{task_id(t)}.yaml").exists()]
    if not missing:
        return
    sdist = fetch_sdist(downloads)
    wanted = {f"{TASKS_IN_SDIST}/{t}/task.json": t for t in missing}
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                if member.name in wanted:
                    archive.extract(member, tmp, filter="data")
        for path, task in wanted.items():
            source = Path(tmp) / path
            if not source.exists():
                raise EvaluationError(f"BIG-bench task '{task}' is not in the sdist.", "Check the task name.")
            kind, items = task_items(json.loads(source.read_text()), generative=task in generative)
            if kind == "multiple_choice":
                task_files.write_multiple_choice(task_id(task), items, out_dir)
            else:
                task_files.write_generative(task_id(task), items, out_dir)


def multiple_choice_tasks(sdist: Path) -> list[str]:
    """Every task (or subtask) path in the sdist whose task.json has examples with `target_scores`."""
    found = []
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if not (member.name.startswith(TASKS_IN_SDIST + "/") and member.name.endswith("/task.json")):
                continue
            task_json = json.load(archive.extractfile(member))
            if any(e.get("target_scores") for e in task_json.get("examples", [])):
                found.append(member.name[len(TASKS_IN_SDIST) + 1 : -len("/task.json")])
    return sorted(found)
