"""`greenai analyze`: read an experiment folder (the seed's format) and describe it."""

from __future__ import annotations

import json
from pathlib import Path

from greenai_dagster.core.errors import EvaluationError

from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.methods import REGISTRY
from greenai_dagster.core.reporting.report import hover_text, write_text_atomic
from greenai_dagster.core.search import objectives as registry
from greenai_dagster.core.search.objectives import OBJECTIVES
from greenai_dagster.core.settings.sweep import is_member

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


# --- a sweep: every experiment of it side by side (`greenai analyze --sweep NAME`) -----------------------
# Size buckets compare models of different sizes: a candidate's weight files as a fraction of its baseline's.
SIZE_BUCKETS = [(0.30, "size <=30%"), (0.50, "size 30-50%"), (0.80, "size 50-80%"), (float("inf"), "size >80%")]
_FAMILY_SYMBOLS = {"quantization": "circle", "pruning": "square", "low_rank": "diamond", "recovery": "triangle-up"}


def sweep_experiments(store, sweep: str) -> list[dict]:
    """The newest experiment of each model x benchmark of `sweep` (from `--now` or any schedule tick)."""
    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT name, model, dataset, status, termination_reason, created_at FROM experiments "
                           "WHERE starts_with(name, ?) ORDER BY created_at, name", [f"{sweep}-"]).fetchall()
    newest: dict[tuple[str, str], dict] = {}
    for name, model, dataset, status, reason, created in rows:
        if is_member(sweep, name, model, dataset):
            newest[(model, dataset)] = {"name": name, "model": model, "dataset": dataset, "status": status,
                                        "termination_reason": reason, "created_at": created}
    return sorted(newest.values(), key=lambda e: e["name"])


def method_family(methods: str | None) -> str:
    """`magnitude+gptq` (a results row's `methods`) -> `pruning+quantization`: the families (core/methods)
    of a chain's steps."""
    names = [m for m in (methods or "").split("+") if m]
    families = [REGISTRY[m].family if m in REGISTRY else m for m in names]
    return "+".join(dict.fromkeys(families)) or "none"


def size_bucket(row: dict, baseline: dict | None) -> str | None:
    if not baseline or not baseline.get("model_size_gb") or row.get("model_size_gb") is None:
        return None
    fraction = row["model_size_gb"] / baseline["model_size_gb"]
    return next(label for bound, label in SIZE_BUCKETS if fraction <= bound)


def _better(objective, a: dict, b: dict) -> bool:
    return a[objective.name] > b[objective.name] if objective.maximise else a[objective.name] < b[objective.name]


def experiment_wins(store, name: str) -> dict:
    """One experiment's frontier, best member per objective and lowest-KL candidate per size bucket
    (degraded candidates never win: they are beyond the quality gate). The objectives are the experiment's
    resolved ones (core/experiment.py): no "best accuracy" where the benchmark could not tell the baseline
    from chance."""
    record = store.experiment(name)
    rows = [dict(r, family=method_family(r.get("methods"))) for r in store.results(name)]
    baseline = store.baseline(name)
    usable = [r for r in rows if not r.get("degraded")]
    frontier = [r for r in usable if r.get("is_pareto")]
    best = {}
    for objective in (registry.get(n) for n in open_experiment(store, name).objectives):
        scored = [r for r in frontier if r.get(objective.name) is not None]
        for r in scored:
            if objective.name not in best or _better(objective, r, best[objective.name]):
                best[objective.name] = r
    lowest_kl: dict[str, dict] = {}
    for r in usable:
        bucket = size_bucket(r, baseline)
        if bucket and r.get("kl_divergence") is not None and (
                bucket not in lowest_kl or r["kl_divergence"] < lowest_kl[bucket]["kl_divergence"]):
            lowest_kl[bucket] = r
    stored = store.frontier(name)
    return {"name": name, "record": record, "baseline": baseline, "rows": rows, "frontier": frontier,
            "best": best, "lowest_kl": {label: lowest_kl[label] for _, label in SIZE_BUCKETS if label in lowest_kl},
            "hypervolume": stored["hypervolume"] if stored else None}


def _cell(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def describe_sweep(sweep: str, wins: list[dict]) -> str:
    """The text report: per experiment its frontier and winners, then which family wins where across the sweep."""
    lines = [f"Sweep {sweep}: {len(wins)} experiment(s) (the newest of each model x benchmark)"]
    tally: dict[str, dict[str, int]] = {}
    for w in wins:
        record = w["record"]
        state = record["status"] + (f" ({record['termination_reason']})" if record.get("termination_reason") else "")
        lines.append(f"\n== {w['name']}\n   model {record['model']}, benchmark {record['dataset']}; {state}; "
                     f"{len(w['rows'])} candidate(s)" + (f"; hypervolume {w['hypervolume']:.4f}"
                                                         if w["hypervolume"] is not None else ""))
        if not w["frontier"]:
            lines.append("   no frontier yet")
            continue
        lines.append(f"   {'frontier member':<30} {'family':<22} {'KL':>8} {'acc':>6} {'ms/tok':>8} {'size GB':>8}")
        for r in sorted(w["frontier"], key=lambda r: r.get("model_size_gb") or 0.0):
            lines.append(f"   {r['strategy_id']:<30} {r['family']:<22} {_cell(r.get('kl_divergence')):>8} "
                         f"{_cell(r.get('accuracy'), 3):>6} {_cell(r.get('latency_ms')):>8} "
                         f"{_cell(r.get('model_size_gb')):>8}")
        lines.append("   best per objective: " + "; ".join(
            f"{OBJECTIVES[o].header()} {r['strategy_id']} ({r['family']})" for o, r in w["best"].items()))
        lines.append("   lowest KL by size: " + ("; ".join(
            f"{bucket} {r['strategy_id']} ({r['family']}, KL {r['kl_divergence']:.4g})"
            for bucket, r in w["lowest_kl"].items()) or "-"))
        for where, r in [*((f"best {OBJECTIVES[o].header()}", r) for o, r in w["best"].items()),
                         *((f"lowest KL at {b}", r) for b, r in w["lowest_kl"].items())]:
            tally.setdefault(where, {}).setdefault(r["family"], 0)
            tally[where][r["family"]] += 1
    if tally:
        lines.append("\nWhich method family wins where (experiments won of those with a frontier):")
        for where, counts in tally.items():
            lines.append(f"   {where:<26}  " + ", ".join(f"{family} {n}" for family, n in
                                                         sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
    return "\n".join(lines)


def sweep_figure(sweep: str, wins: list[dict]):
    """Frontiers side by side: KL and accuracy against size as a fraction of each baseline (so models of
    different sizes share an axis), one colour per experiment, one marker per method family."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("KL divergence from the baseline (lower is better)", "accuracy (higher is better)"))
    for i, w in enumerate(wins):
        base_size = (w["baseline"] or {}).get("model_size_gb")
        members = sorted((r for r in w["frontier"] if base_size and r.get("model_size_gb") is not None),
                         key=lambda r: r["model_size_gb"])
        colour = qualitative.Plotly[i % len(qualitative.Plotly)]
        for col, axis in ((1, "kl_divergence"), (2, "accuracy")):
            fig.add_trace(go.Scatter(
                x=[r["model_size_gb"] / base_size for r in members], y=[r.get(axis) for r in members],
                mode="lines+markers", name=w["name"], legendgroup=w["name"], showlegend=col == 1,
                line={"color": colour, "width": 1}, hoverinfo="text",
                hovertext=[f"{w['name']}<br>family: {r['family']}<br>" + hover_text(r) for r in members],
                marker={"color": colour, "size": 11,
                        "symbol": [_FAMILY_SYMBOLS.get(r["family"], "x") for r in members]}), row=1, col=col)
    fig.update_xaxes(title_text="size / baseline size", tickformat=".0%")
    fig.update_yaxes(title_text="KL (nats/token)", row=1, col=1)
    fig.update_yaxes(title_text="accuracy (fraction)", row=1, col=2)
    symbols = ", ".join(f"{family}: {symbol}" for family, symbol in _FAMILY_SYMBOLS.items())
    fig.update_layout(title={"text": f"Sweep {sweep}: Pareto frontiers across models and benchmarks<br><sup>Frontier "
                                     f"members only (degraded candidates are never members). Markers: {symbols}; "
                                     f"chains of families: x.</sup>"},
                      template="plotly_white", height=620, legend={"orientation": "h", "y": -0.2})
    return fig


def analyze_sweep(sweep: str, html_path: Path, store) -> str:
    """`greenai analyze --sweep NAME`: the text report; the comparison page is written to `html_path`
    (plotly.js embedded once, so it opens offline, like each experiment's chart). `store` is the
    deployment's (the CLI opens it through the resources), never a file path guessed here."""
    if not store.path.exists() and not store.results_dir.is_dir():    # row files alone are results too
        raise EvaluationError(f"no results database at {store.path}.", "Run `greenai sweep FILE --now` first.")
    members = sweep_experiments(store, sweep)
    if not members:
        raise EvaluationError(f"no experiment of sweep '{sweep}' in the results store.",
                              "Start it with `greenai sweep FILE --now` or its schedule; the name is the file's `name`.")
    wins = [experiment_wins(store, m["name"]) for m in members]
    write_text_atomic(Path(html_path), sweep_figure(sweep, wins).to_html(include_plotlyjs=True, full_html=True))
    return describe_sweep(sweep, wins) + f"\n\nComparison page: {html_path}"
