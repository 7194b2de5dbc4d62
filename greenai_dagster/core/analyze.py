"""`greenai analyze`: read an experiment folder (the seed's format) and describe it."""

from __future__ import annotations

import json
from pathlib import Path

from greenai_dagster.core.errors import EvaluationError

from greenai_dagster.core.objectives import OBJECTIVES

# column, header, width: headers come from the objectives registry where the column is an objective
_WIDTHS = [("strategy_id", 28), ("kl_divergence", 8), ("top1_agreement", 6), ("ppl_ratio", 7), ("accuracy", 19),
           ("accuracy_full", 8), ("latency_ms", 8), ("memory_gb", 8), ("model_size_gb", 8), ("compression_ratio", 6),
           ("co2_grams", 8)]
_HEADERS = {"strategy_id": "strategy", "accuracy": "acc [95% CI]", "accuracy_full": "acc full"}
COLUMNS = [(c, _HEADERS.get(c) or OBJECTIVES[c].header(), w) for c, w in _WIDTHS]


def _read_json(path: Path, kind=dict):
    """A JSON file of the experiment folder, or E004 naming the file (never a traceback)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"'{path}' is not valid JSON ({str(exc).splitlines()[0]}).",
                              "Restore the file from the run (re-run with the same --name), or remove it.") from None
    except OSError as exc:
        raise EvaluationError(f"'{path}' cannot be read ({exc.strerror}).", "Check the file and its permissions.") from None
    if not isinstance(data, kind):
        raise EvaluationError(f"'{path}' holds a JSON {type(data).__name__}, not an object.",
                              "Restore the file from the run (re-run with the same --name), or remove it.")
    return data


def load_folder(folder: Path) -> dict:
    if not folder.is_dir() or (not (folder / "pareto_frontier.json").exists()
                               and not (folder / "model_spec.json").exists()):
        raise EvaluationError(f"'{folder}' is not an experiment folder (no model_spec.json / pareto_frontier.json).",
                              "Pass a folder under data/experiments/.")
    episodes = []
    for ep in sorted(p for p in folder.glob("episode_*") if p.is_dir()):
        episodes.append({"episode": ep.name, "strategy": _read_json(ep / "strategy.json"),
                         "result": _read_json(ep / "results.json")})
    return {"model_spec": _read_json(folder / "model_spec.json"),
            "pareto_frontier": _read_json(folder / "pareto_frontier.json"),
            "final_results": _read_json(folder / "final_results.json"), "episodes": episodes}


def _row(strategy_id: str, result: dict, pareto: bool) -> str:
    cells = []
    for key, _, width in COLUMNS:
        value = strategy_id if key == "strategy_id" else result.get(key)
        if key == "accuracy" and value is not None and result.get("accuracy_ci95"):
            low, high = result["accuracy_ci95"]
            text = f"{value:.3f} [{low:.2f},{high:.2f}]"
        else:
            text = value if isinstance(value, str) else ("-" if value is None else f"{value:.4g}")
        cells.append(f"{text:<{width}}")
    flag = " *" if pareto else (" degraded: " + str(result.get("degraded_reason")) if result.get("degraded") else "")
    return " ".join(cells) + flag


def analyze_folder(folder: Path, fmt: str = "summary") -> str:
    data = load_folder(Path(folder))
    if fmt == "json":
        return json.dumps(data, indent=2)
    try:
        return _describe(folder, data, fmt)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise EvaluationError(f"'{folder}' has files in an unexpected shape ({what}).",
                              "Re-run the experiment with the same --name to rewrite its reports, or use "
                              "--format json to see the raw files.") from None


def _describe(folder: Path, data: dict, fmt: str) -> str:
    lines = []
    final, frontier, spec = data["final_results"], data["pareto_frontier"], data["model_spec"]
    name = (final or frontier or {}).get("experiment_name", Path(folder).name)
    lines.append(f"Experiment: {name}")
    if spec:
        lines.append(f"Model: {spec['model_name']} ({spec['model_family']}, {spec['parameter_count']} params, "
                     f"{spec['model_size_gb']:.3f} GB)")
    if final:
        lines.append(f"Episodes: {final['episodes_completed']}   termination: {final['termination_reason']}")
    note = (final or frontier or {}).get("benchmark_note")
    if note:
        lines.append(f"Benchmark: {note}")
    objectives = (final or frontier or {}).get("objectives")
    if isinstance(objectives, dict):
        lines.append("Frontier objectives: " + ", ".join(f"{k} ({v['direction'] if isinstance(v, dict) else v})"
                                                          for k, v in objectives.items()))
    header = " ".join(f"{label:<{width}}" for _, label, width in COLUMNS)
    if frontier:
        lines.append(f"\nPareto frontier ({len(frontier['solutions'])} solutions, hypervolume {frontier['hypervolume']:.4f}):")
        lines.append(header)
        if frontier.get("baseline"):
            lines.append(_row("(baseline)", frontier["baseline"], False))
        for sol in frontier["solutions"]:
            lines.append(_row(sol["strategy"]["strategy_id"], sol["result"], True))
    if fmt == "detailed":
        lines.append("\nAll episodes (* = Pareto-optimal):")
        lines.append(header)
        for ep in data["episodes"]:
            if ep["result"] and ep["strategy"]:
                lines.append(_row(ep["strategy"]["strategy_id"], ep["result"], ep["result"]["is_pareto_optimal"]))
        for ep in data["episodes"]:
            if ep["strategy"]:
                lines.append(f"\n{ep['episode']}: {ep['strategy']['strategy_id']}  steps={json.dumps(ep['strategy']['steps'])}")
                lines.append(f"  reasoning: {ep['strategy'].get('reasoning', '')}")
                if ep["result"]:
                    lines.append(f"  task accuracy: {json.dumps(ep['result'].get('task_accuracy', {}))}")
                    lines.append(f"  conditions: {json.dumps(ep['result'].get('conditions', {}).get('units', {}))}")
        if final:
            lines.append("\nBest per objective:")
            for objective, entry in final["best_solutions"].items():
                lines.append(f"  {objective:<10} {entry['strategy']['strategy_id']}")
    return "\n".join(lines)
