"""The experiment folder in the seed's format, and the interactive Plotly chart.

data/experiments/<name>/
  model_spec.json  pareto_frontier.json  final_results.json  pareto_visualization.html
  episode_001/strategy.json  episode_001/results.json  episode_001/model/ (the checkpoint)
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

from greenai_dagster.core.errors import DiskFull
from greenai_dagster.core.redact import redact, redact_obj

from greenai_dagster.core.evaluation.flips import accuracy_interval, interval_text
from greenai_dagster.core.search.objectives import OBJECTIVES

RESULT_FIELDS = ["accuracy", "accuracy_stderr", "kl_divergence", "kl_stderr", "kl_sampled", "kl_sampled_stderr",
                 "top1_agreement", "top1_stderr", "top1_sampled",
                 "ppl_ratio", "ppl_ratio_low", "ppl_ratio_high", "perplexity", "fidelity_tokens",
                 "latency_ms", "prefill_ms", "throughput_tokens_per_s",
                 "memory_gb", "model_size_gb", "compression_ratio", "energy_j_per_token", "energy_kwh", "co2_grams",
                 "compression_time_s", "compression_energy_kwh", "compression_co2_grams", "eval_time_s", "load_time_s",
                 "accuracy_full", "accuracy_full_stderr", "full_eval_time_s"]
AXES = ["kl_divergence", "kl_sampled", "accuracy", "latency_ms", "memory_gb", "model_size_gb", "top1_agreement", "ppl_ratio",
        "compression_ratio", "co2_grams"]


def write_json(path: Path, data) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    write_text_atomic(path, redact(json.dumps(redact_obj(data), indent=2, default=str)))


def write_text_atomic(path: Path, text: str) -> None:
    """`path.tmp`, then rename: a full disk or a kill leaves the old file (or none), never half of one;
    the partial temporary file is removed so it does not hold on to the little space left."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        full = exc.errno == errno.ENOSPC
        raise DiskFull(f"{'disk full while writing' if full else 'cannot write'} {path}"
                       f"{'' if full else f': {exc.strerror}'}.",
                       "Free disk space (or choose another --output-dir), then re-run with the same --name: "
                       "the experiment resumes and results written before are kept." if full else None) from exc


def episode_dir(experiment_dir: Path, episode: int) -> Path:
    return Path(experiment_dir) / f"episode_{episode:03d}"


def result_json(row: dict) -> dict:
    out = {k: _plain(row.get(k)) for k in RESULT_FIELDS}
    if row.get("accuracy") is not None:    # null where lm-eval reported no standard error ("N/A")
        out["accuracy_ci95"] = (list(accuracy_interval(row["accuracy"], row["accuracy_stderr"]))
                                if row.get("accuracy_stderr") is not None else None)
    out.update({
        "is_pareto_optimal": bool(row.get("is_pareto")),
        "degraded": bool(row.get("degraded")),
        "degraded_reason": row.get("degraded_reason"),
        "flips": row.get("flips") or None,
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


def objectives_json(summary) -> dict:
    return {n: {"direction": OBJECTIVES[n].direction, "unit": OBJECTIVES[n].unit} for n in summary.objectives}


def write_frontier_files(experiment_dir: Path, experiment: str, rows: list[dict], strategies: dict,
                         baseline: dict | None, summary, facts: dict | None = None) -> None:
    """pareto_frontier.json + pareto_visualization.html; also refresh every episode's results.json."""
    facts = facts or {}
    member_keys = {m["candidate_key"] for m in summary.members}
    solutions = [{"strategy": strategies[r["candidate_key"]], "result": result_json(r)}
                 for r in rows if r["candidate_key"] in member_keys]
    write_json(Path(experiment_dir) / "pareto_frontier.json", {
        "experiment_name": experiment,
        "objectives": objectives_json(summary),
        "hypervolume": summary.hypervolume,
        "solutions": solutions,
        "excluded": summary.excluded,
        "benchmark_note": facts.get("benchmark_note"),
        "baseline": result_json(baseline) if baseline else None,
    })
    for r in rows:
        write_episode(experiment_dir, int(r["episode"]), strategies[r["candidate_key"]], r)
    write_chart(Path(experiment_dir) / "pareto_visualization.html", experiment, rows, baseline, summary, facts)


ERROR_COLUMNS = {"accuracy": "accuracy_stderr", "kl_divergence": "kl_stderr", "kl_sampled": "kl_sampled_stderr",
                 "top1_agreement": "top1_stderr"}
ERROR_BOUNDS = {"accuracy": (0.0, 1.0), "top1_agreement": (0.0, 1.0), "kl_divergence": (0.0, float("inf")),
                "kl_sampled": (0.0, float("inf"))}


def axis_title(name: str) -> str:
    unit = OBJECTIVES[name].unit if name in OBJECTIVES else ""
    return f"{name} ({unit})" if unit else name


def hover_text(r: dict) -> str:
    lines = [f"<b>{r['strategy_id']}</b>"]
    if r.get("accuracy") is not None:
        lines.append(f"accuracy: {r['accuracy']:.3f} ({interval_text(r['accuracy'], r.get('accuracy_stderr'))})")
    if r.get("kl_divergence") is not None:
        lines.append(f"KL: {r['kl_divergence']:.4f} ± {r.get('kl_stderr') or 0:.4f} nats/token (held-out prose)")
    if r.get("kl_sampled") is not None:
        lines.append(f"KL: {r['kl_sampled']:.4f} ± {r.get('kl_sampled_stderr') or 0:.4f} nats/token (baseline's samples)")
    lines += [f"{a}: {float(r[a]):.4g}" for a in AXES
              if a not in ("accuracy", "kl_divergence", "kl_sampled") and r.get(a) is not None]
    if (r.get("flips") or {}).get("verdict"):
        f = r["flips"]
        lines.append(f"vs baseline: {f['verdict']} (flips {f['flip_rate']:.2f}, McNemar p={f['p_value']:.2g})")
    if r.get("degraded"):
        lines.append(f"DEGRADED: {r.get('degraded_reason')}")
    runtime = measured_by(r)
    if runtime:
        lines.append(f"measured: {runtime}")
    return "<br>".join(lines)


def measured_by(row: dict) -> str:
    """'llama.cpp (ggml CPU kernels; ...) on cpu, 2 threads': the runtime that timed a row."""
    c = row.get("conditions") or {}
    if c.get("runtime"):
        return f"{c['runtime']} ({c.get('kernel')}) on {c.get('device')}, {c.get('threads')} threads"
    return str(c.get("latency_path") or "")


def write_chart(path: Path, experiment: str, rows: list[dict], baseline: dict | None, summary=None,
                facts: dict | None = None) -> None:
    """The chart (`chart_figure`) as one self-contained HTML file, written atomically (a full disk
    leaves the previous chart, never half of a new one)."""
    fig = chart_figure(experiment, rows, baseline, summary, facts)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, fig.to_html(include_plotlyjs=True, full_html=True))


def chart_figure(experiment: str, rows: list[dict], baseline: dict | None, summary=None, facts: dict | None = None):
    """Scatter of every candidate (frontier highlighted, degraded ones marked) with dropdowns for the
    axes, error bars (95 %) where a figure has a standard error, axis titles with units, and a note
    that the frontier spans more objectives than two axes show and that the baseline is no member."""
    import plotly.graph_objects as go

    points = list(rows) + ([dict(baseline, strategy_id="baseline")] if baseline else [])
    groups = {
        "Pareto-optimal": [r for r in points if r.get("is_pareto")],
        "dominated": [r for r in points if not r.get("is_pareto") and not r.get("is_baseline") and not r.get("degraded")],
        "degraded (off the frontier)": [r for r in points if r.get("degraded") and not r.get("is_baseline")],
        "baseline": [r for r in points if r.get("is_baseline")],
    }
    style = {"Pareto-optimal": ("#d62728", "star", 16), "dominated": ("#7f7f7f", "circle", 10),
             "degraded (off the frontier)": ("#bbbbbb", "x", 10), "baseline": ("#1f77b4", "diamond", 14)}
    x0, y0 = "kl_divergence", "accuracy"

    def errors(group, axis):
        """95 % bars, clipped to where the figure can be (a fraction stays in [0, 1], KL above 0)."""
        column = ERROR_COLUMNS.get(axis)
        low, high = ERROR_BOUNDS.get(axis, (float("-inf"), float("inf")))
        up, down = [], []
        for r in group:
            value, half = r.get(axis), 1.96 * (r.get(column) or 0.0) if column else 0.0
            up.append(min(high, value + half) - value if value is not None else 0.0)
            down.append(value - max(low, value - half) if value is not None else 0.0)
        return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "visible": bool(column)}

    fig = go.Figure()
    for label, members in groups.items():
        color, symbol, size = style[label]
        fig.add_trace(go.Scatter(
            x=[r.get(x0) for r in members], y=[r.get(y0) for r in members], mode="markers+text", name=label,
            error_x=errors(members, x0), error_y=errors(members, y0),
            text=[r["strategy_id"] for r in members], hovertext=[hover_text(r) for r in members],
            textposition="bottom center" if label == "baseline" else "top center",   # apart from a member on top of it
            hoverinfo="text", cliponaxis=False, marker={"color": color, "symbol": symbol, "size": size}))
    traces = list(groups.values())
    buttons_x = [{"label": a, "method": "update",
                  "args": [{"x": [[r.get(a) for r in g] for g in traces], "error_x": [errors(g, a) for g in traces]},
                           {"xaxis.title.text": axis_title(a)}]} for a in AXES]
    buttons_y = [{"label": a, "method": "update",
                  "args": [{"y": [[r.get(a) for r in g] for g in traces], "error_y": [errors(g, a) for g in traces]},
                           {"yaxis.title.text": axis_title(a)}]} for a in AXES]
    names = list(summary.objectives) if summary is not None else []
    note = (f"Frontier over {len(names)} objectives ({', '.join(names)}): a starred point may look dominated in any "
            f"two-axis view.<br>The baseline is a reference, not a frontier member. Error bars: 95% intervals. "
            f"Degraded = beyond the quality gate (never on the frontier).")
    if (facts or {}).get("benchmark_note"):
        note += "<br>" + facts["benchmark_note"]
    fig.update_layout(
        # title and note at the top, the axis menus in their own band under them (nothing overlaps)
        title={"text": f"Pareto frontier: {experiment}<br><sup>{note}</sup>", "y": 0.98, "yanchor": "top"},
        xaxis={"title": {"text": axis_title(x0)}, "automargin": True},
        yaxis={"title": {"text": axis_title(y0)}, "automargin": True}, template="plotly_white",
        margin={"t": 210, "l": 90, "r": 60, "b": 80}, height=760,
        updatemenus=[
            {"buttons": buttons_x, "direction": "down", "x": 0.07, "y": 1.06, "xanchor": "left", "yanchor": "bottom",
             "active": AXES.index(x0)},
            {"buttons": buttons_y, "direction": "down", "x": 0.42, "y": 1.06, "xanchor": "left", "yanchor": "bottom",
             "active": AXES.index(y0)},
        ],
        annotations=[{"text": "x axis", "x": 0.0, "y": 1.075, "xref": "paper", "yref": "paper", "showarrow": False,
                      "xanchor": "left", "yanchor": "bottom"},
                     {"text": "y axis", "x": 0.35, "y": 1.075, "xref": "paper", "yref": "paper", "showarrow": False,
                      "xanchor": "left", "yanchor": "bottom"}],
    )
    return fig


def write_final_results(experiment_dir: Path, experiment: dict, rows: list[dict], strategies: dict,
                        baseline: dict | None, summary, termination_reason: str, facts: dict | None = None) -> dict:
    def entry(row):
        return {"strategy": strategies[row["candidate_key"]], "result": result_json(row)}

    best = summary.best_per_objective
    names = {"accuracy": "accuracy", "latency_ms": "latency", "memory_gb": "memory", "model_size_gb": "size",
             "kl_divergence": "fidelity"}
    members = summary.members
    final = {
        "experiment_name": experiment["name"],
        "model": experiment["model"],
        "dataset": experiment["dataset"],
        "episodes_completed": len(rows),
        "termination_reason": termination_reason,
        "best_solutions": {names.get(k, k): entry(v) for k, v in best.items()},
        "objectives": objectives_json(summary),
        "benchmark_note": (facts or {}).get("benchmark_note"),
        "excluded_from_frontier": summary.excluded,
        "frontier_summary": {
            "num_solutions": len(members),
            "best_kl_divergence": min((m["kl_divergence"] for m in members), default=None),
            # none where the benchmark cannot tell the baseline from chance: accuracy left the objectives
            # (core/experiment.py resolve_objectives), and a "best" of chance-level figures would mislead
            "best_accuracy": (None if (facts or {}).get("benchmark_discriminates") is False
                              else max((m["accuracy"] for m in members if m["accuracy"] is not None), default=None)),
            "best_compression": max((m["compression_ratio"] for m in members), default=None),
            "best_latency_ms": min((m["latency_ms"] for m in members), default=None),
            "hypervolume": summary.hypervolume,
        },
        "baseline": result_json(baseline) if baseline else None,
    }
    write_json(Path(experiment_dir) / "final_results.json", final)
    return final


def metrics_summary(row: dict) -> dict:
    """The figures a person wants beside a result (asset metadata): rounded, with units and intervals."""
    out = {}
    if row.get("accuracy") is not None:
        out["accuracy"] = f"{row['accuracy']:.3f} ({interval_text(row['accuracy'], row.get('accuracy_stderr'))}, "\
                          f"{(row.get('conditions') or {}).get('accuracy_items_per_task', '?')} items/task)"
    if row.get("kl_divergence") is not None:
        out["kl_divergence"] = f"{row['kl_divergence']:.4f} ± {row.get('kl_stderr') or 0:.4f} nats/token " \
                               f"({row.get('fidelity_tokens')} tokens)"
        out["top1_agreement"] = round(float(row["top1_agreement"]), 4)
        out["ppl_ratio"] = f"{row['ppl_ratio']:.3f} (95% CI {row['ppl_ratio_low']:.3f}-{row['ppl_ratio_high']:.3f})"
    for key in ("perplexity", "latency_ms", "prefill_ms", "throughput_tokens_per_s", "memory_gb", "model_size_gb",
                "compression_ratio", "energy_j_per_token", "energy_kwh", "co2_grams"):
        if row.get(key) is not None:
            out[key] = round(float(row[key]), 4)
    if row.get("flips"):
        f = row["flips"]
        out["vs_baseline"] = (f"{f['verdict']}: {f['correct_to_wrong']} right->wrong, {f['wrong_to_correct']} "
                              f"wrong->right of {f['items']} items (McNemar p={f['p_value']:.2g})")
    out["degraded"] = row.get("degraded_reason") or "no"
    out["measured_by"] = measured_by(row) or "?"
    return out
