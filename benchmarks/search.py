"""Replay coordinators against the measured grid: how fast does each find the Pareto frontier?

    python benchmarks/search.py [--table benchmarks/results/grid_smollm2_bbh.json] [--seeds 10] [--max-k 12]

Each "episode" looks the chosen strategy's real result up in the table (no model runs). For
k = 1..max_k: hypervolume of the frontier of the first k results, divided by the hypervolume of
the whole grid's frontier (objectives: accuracy up; latency, memory, size down; normalised by
the baseline, moocore's hypervolume). Median over seeds. Coordinators: the planner, random
search, and the `llm` coordinator when OPENAI_API_KEY (and optionally OPENAI_BASE_URL) is set.
Writes benchmarks/results/search_curve.json and search_curve.html.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from greenai_dagster.core.coordinator import CoordinatorState, LlmCoordinator, LlmSettings, Planner, RandomSearch
from greenai_dagster.core.pareto import hypervolume, pareto_front
from greenai_dagster.core.spec import ModelSpec
from greenai_dagster.core.strategy import Step, Strategy

RESULTS = Path(__file__).resolve().parent / "results"


def load_table(path: Path):
    table = json.loads(path.read_text())
    if "model_spec" not in table:  # tables exported before the spec was included
        table["model_spec"] = json.loads((Path("data/experiments") / path.stem / "model_spec.json").read_text())
    baseline = next(r for r in table["rows"] if r["strategy_id"] == "baseline")
    rows = {}
    for r in table["rows"]:
        if r["strategy_id"] == "baseline" or not r["steps"]:
            continue
        strategy = Strategy(r["strategy_id"], [Step(s["method"], s["params"]) for s in r["steps"]])
        rows[strategy.label()] = dict(r, strategy=strategy.to_json(), candidate_key=strategy.label())
    return ModelSpec.from_json(table["model_spec"]), baseline, rows


def replay(coordinator, spec, baseline, rows, max_k: int) -> list[float]:
    candidates = [Strategy(label, Strategy.from_json(r["strategy"]).steps) for label, r in rows.items()]
    grid_hv = hypervolume(pareto_front(list(rows.values())), baseline)
    seen: list[dict] = []
    curve = []
    for k in range(1, max_k + 1):
        state = CoordinatorState(spec=spec, baseline=baseline, results=seen,
                                 frontier_ids=[r["strategy_id"] for r in pareto_front(seen)], candidates=candidates,
                                 tried_labels={r["candidate_key"] for r in seen}, episode=k,
                                 episodes_left=max_k - k + 1, budget_hours_left=1.0)
        proposal = coordinator.propose(state)
        if proposal is not None:
            seen.append(rows[proposal.strategy.label()])
        curve.append(hypervolume(pareto_front(seen), baseline) / grid_hv)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", default=str(RESULTS / "grid_smollm2_bbh.json"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--max-k", type=int, default=12)
    args = parser.parse_args()
    spec, baseline, rows = load_table(Path(args.table))
    makers = {"planner": lambda seed: Planner(seed=seed), "planner_tpe": lambda seed: Planner(seed=seed, sampler="tpe"),
              "random": lambda seed: RandomSearch(seed=seed)}
    if os.environ.get("OPENAI_API_KEY"):
        makers["llm"] = lambda seed: LlmCoordinator(LlmSettings(model=os.environ.get("GREENAI_LLM_MODEL", "gpt-4o-mini")))
    curves = {name: [replay(make(seed), spec, baseline, rows, args.max_k) for seed in range(args.seeds)]
              for name, make in makers.items()}
    medians = {name: [statistics.median(c[k] for c in runs) for k in range(args.max_k)] for name, runs in curves.items()}
    print(f"grid: {len(rows)} measured strategies; hypervolume fraction of the grid's frontier, median of {args.seeds} seeds")
    print("k      " + "  ".join(f"{name:>8}" for name in medians))
    for k in range(args.max_k):
        print(f"{k + 1:<6} " + "  ".join(f"{medians[name][k]:8.3f}" for name in medians))
    if "random" in medians:
        beats = all(medians["planner"][k] > medians["random"][k] for k in range(2, min(12, args.max_k)))
        first95 = next((k + 1 for k, v in enumerate(medians["planner"]) if v >= 0.95), None)
        print(f"planner >= 0.95 of the grid's hypervolume at k = {first95}; beats random at every k in 3..12: {beats}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_curve.json").write_text(json.dumps({"table": args.table, "seeds": args.seeds, "median": medians,
                                                            "all": curves}, indent=2))
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=list(range(1, args.max_k + 1)), y=v, mode="lines+markers", name=name)
                     for name, v in medians.items()])
    fig.update_layout(title=f"Frontier hypervolume vs episodes ({len(rows)}-strategy grid, median of {args.seeds} seeds)",
                      xaxis_title="episodes", yaxis_title="hypervolume / grid hypervolume", template="plotly_white")
    fig.write_html(str(RESULTS / "search_curve.html"))


if __name__ == "__main__":
    main()
