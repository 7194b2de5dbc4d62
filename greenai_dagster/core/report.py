"""The experiment folder in the seed's format, and the interactive Plotly chart.

data/experiments/<name>/
  model_spec.json  pareto_frontier.json  final_results.json  pareto_visualization.html
  episode_001/strategy.json  episode_001/results.json  episode_001/model/ (the checkpoint)
"""

from __future__ import annotations

import json
from pathlib import Path

from greenai_dagster.core.errors import DiskFull

RESULT_FIELDS = ["accuracy", "accuracy_stderr", "perplexity", "latency_ms", "prefill_ms", "throughput_tokens_per_s",
                 "memory_gb", "model_size_gb", "compression_ratio", "energy_kwh", "co2_grams",
                 "compression_time_s", "compression_energy_kwh", "compression_co2_grams", "eval_time_s", "load_time_s",
                 "accuracy_full", "accuracy_full_stderr", "full_eval_time_s"]
AXES = ["accuracy", "latency_ms", "memory_gb", "model_size_gb", "compression_ratio", "perplexity", "co2_grams"]


def write_json(path: Path, data) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(path)
    except OSError as exc:
        raise DiskFull(f"cannot write {path}: {exc.strerror}.") from exc


def episode_dir(experiment_dir: Path, episode: int) -> Path:
    return Path(experiment_dir) / f"episode_{episode:03d}"


def result_json(row: dict) -> dict:
    out = {k: _plain(row.get(k)) for k in RESULT_FIELDS}
    out.update({
        "is_pareto_optimal": bool(row.get("is_pareto")),
        "task_accuracy": row.get("task_accuracy", {}),
        "task_accuracy_full": row.get("task_accuracy_full") or {},
        "conditions": row.get("conditions", {}),
        "checkpoint_path": row.get("checkpoint_path"),
    })
    return out


def _plain(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return value


def write_episode(experiment_dir: Path, episode: int, strategy: dict, row: dict | None) -> None:
    folder = episode_dir(experiment_dir, episode)
    write_json(folder / "strategy.json", strategy)
    if row is not None:
        write_json(folder / "results.json", result_json(row))


def write_frontier_files(experiment_dir: Path, experiment: str, rows: list[dict], strategies: dict,
                         baseline: dict | None, summary) -> None:
    """pareto_frontier.json + pareto_visualization.html; also refresh every episode's results.json."""
    member_keys = {m["candidate_key"] for m in summary.members}
    solutions = [{"strategy": strategies[r["candidate_key"]], "result": result_json(r)}
                 for r in rows if r["candidate_key"] in member_keys]
    write_json(Path(experiment_dir) / "pareto_frontier.json", {
        "experiment_name": experiment,
        "objectives": {"accuracy": "max", "latency_ms": "min", "memory_gb": "min", "model_size_gb": "min"},
        "hypervolume": summary.hypervolume,
        "solutions": solutions,
        "baseline": result_json(baseline) if baseline else None,
    })
    for r in rows:
        write_episode(experiment_dir, int(r["episode"]), strategies[r["candidate_key"]], r)
    write_chart(Path(experiment_dir) / "pareto_visualization.html", experiment, rows, baseline)


def write_chart(path: Path, experiment: str, rows: list[dict], baseline: dict | None) -> None:
    """Scatter of every candidate (frontier highlighted) with dropdowns to choose the x and y axes."""
    import plotly.graph_objects as go

    points = list(rows) + ([dict(baseline, strategy_id="baseline")] if baseline else [])
    groups = {
        "Pareto-optimal": [r for r in points if r.get("is_pareto")],
        "dominated": [r for r in points if not r.get("is_pareto") and not r.get("is_baseline")],
        "baseline": [r for r in points if r.get("is_baseline")],
    }
    style = {"Pareto-optimal": ("#d62728", "star", 16), "dominated": ("#7f7f7f", "circle", 10),
             "baseline": ("#1f77b4", "diamond", 14)}
    x0, y0 = "latency_ms", "accuracy"
    fig = go.Figure()
    for label, members in groups.items():
        color, symbol, size = style[label]
        hover = ["<br>".join([f"<b>{r['strategy_id']}</b>"] + [f"{a}: {float(r[a]):.4g}" for a in AXES if r.get(a) is not None])
                 for r in members]
        fig.add_trace(go.Scatter(
            x=[r[x0] for r in members], y=[r[y0] for r in members], mode="markers+text", name=label,
            text=[r["strategy_id"] for r in members], textposition="top center", hovertext=hover, hoverinfo="text",
            marker={"color": color, "symbol": symbol, "size": size}))
    traces = list(groups.values())
    buttons_x = [{"label": a, "method": "update",
                  "args": [{"x": [[r.get(a) for r in g] for g in traces]}, {"xaxis.title.text": a}]} for a in AXES]
    buttons_y = [{"label": a, "method": "update",
                  "args": [{"y": [[r.get(a) for r in g] for g in traces]}, {"yaxis.title.text": a}]} for a in AXES]
    fig.update_layout(
        title=f"Pareto frontier: {experiment}", xaxis_title=x0, yaxis_title=y0, template="plotly_white",
        updatemenus=[
            {"buttons": buttons_x, "direction": "down", "x": 0.0, "y": 1.15, "xanchor": "left", "active": AXES.index(x0)},
            {"buttons": buttons_y, "direction": "down", "x": 0.25, "y": 1.15, "xanchor": "left", "active": AXES.index(y0)},
        ],
        annotations=[{"text": "x axis", "x": 0.0, "y": 1.2, "xref": "paper", "yref": "paper", "showarrow": False},
                     {"text": "y axis", "x": 0.25, "y": 1.2, "xref": "paper", "yref": "paper", "showarrow": False}],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def write_final_results(experiment_dir: Path, experiment: dict, rows: list[dict], strategies: dict,
                        baseline: dict | None, summary, termination_reason: str) -> dict:
    def entry(row):
        return {"strategy": strategies[row["candidate_key"]], "result": result_json(row)}

    best = summary.best_per_objective
    names = {"accuracy": "accuracy", "latency_ms": "latency", "memory_gb": "memory", "model_size_gb": "size"}
    members = summary.members
    final = {
        "experiment_name": experiment["name"],
        "model": experiment["model"],
        "dataset": experiment["dataset"],
        "episodes_completed": len(rows),
        "termination_reason": termination_reason,
        "best_solutions": {names[k]: entry(v) for k, v in best.items()},
        "frontier_summary": {
            "num_solutions": len(members),
            "best_accuracy": max((m["accuracy"] for m in members), default=None),
            "best_compression": max((m["compression_ratio"] for m in members), default=None),
            "best_latency_ms": min((m["latency_ms"] for m in members), default=None),
            "hypervolume": summary.hypervolume,
        },
        "baseline": result_json(baseline) if baseline else None,
    }
    write_json(Path(experiment_dir) / "final_results.json", final)
    return final
