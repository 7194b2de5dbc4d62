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


def load_folder(folder: Path) -> dict:
    if not (folder / "pareto_frontier.json").exists() and not (folder / "model_spec.json").exists():
        raise EvaluationError(f"'{folder}' is not an experiment folder (no model_spec.json / pareto_frontier.json).",
                              "Pass a folder under data/experiments/.")
    def read(name):
        path = folder / name
        return json.loads(path.read_text()) if path.exists() else None

    episodes = []
    for ep in sorted(folder.glob("episode_*")):
        strategy = json.loads((ep / "strategy.json").read_text()) if (ep / "strategy.json").exists() else None
        result = json.loads((ep / "results.json").read_text()) if (ep / "results.json").exists() else None
        episodes.append({"episode": ep.name, "strategy": strategy, "result": result})
    return {"model_spec": read("model_spec.json"), "pareto_frontier": read("pareto_frontier.json"),
            "final_results": read("final_results.json"), "episodes": episodes}


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
