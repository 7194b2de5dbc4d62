"""Replay coordinators against the measured grid: how fast does each find the Pareto frontier?

    python benchmarks/search.py [--table benchmarks/results/grid_smollm2_generated_mc.json] [--seeds 10]

Each "episode" looks the chosen strategy's real result up in the table (no model runs). For
k = 1..max_k: hypervolume of the frontier of the first k results, divided by the hypervolume of
the whole grid's frontier, on the experiment's frontier objectives (default: KL divergence,
accuracy, latency, memory, size; `core.search.objectives`) among rows that pass the quality gate
(degraded rows can never be members). Median over seeds. Run twice: on the grid as measured and
on a copy whose rows (and so the candidate order) are shuffled per seed, since a search must not
depend on the order of its menu. Coordinators: the planner, its TPE variant, random search, and
the `llm` coordinator when OPENAI_API_KEY (and optionally OPENAI_BASE_URL) is set.
Writes benchmarks/results/search_curve.json, search_curve.html and search_summary.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
from pathlib import Path

from greenai_dagster.core.decide import COORDINATOR_FAILURES
from greenai_dagster.core.models.spec import ModelSpec
from greenai_dagster.core.search.coordinator import CoordinatorState, LlmCoordinator, LlmSettings, Planner, RandomSearch
from greenai_dagster.core.search.objectives import directions
from greenai_dagster.core.search.pareto import feasible, hypervolume, pareto_front
from greenai_dagster.core.strategy import Step, Strategy

RESULTS = Path(__file__).resolve().parent / "results"
FALLBACKS: dict[str, int] = {}   # episodes where a coordinator failed and the planner decided instead


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
    objectives = directions((table.get("facts") or {}).get("objectives"))
    return ModelSpec.from_json(table["model_spec"]), baseline, rows, objectives


def frontier_hv(rows: list[dict], baseline: dict, objectives: dict) -> float:
    return hypervolume(pareto_front([r for r in rows if feasible(r, {})], objectives), baseline, objectives)


def replay(coordinator, spec, baseline, rows: dict, max_k: int, objectives: dict) -> list[float]:
    candidates = [Strategy(label, Strategy.from_json(r["strategy"]).steps) for label, r in rows.items()]
    grid_hv = frontier_hv(list(rows.values()), baseline, objectives)
    seen: list[dict] = []
    curve = []
    for k in range(1, max_k + 1):
        front = pareto_front([r for r in seen if feasible(r, {})], objectives)
        state = CoordinatorState(spec=spec, baseline=baseline, results=seen,
                                 frontier_ids=[r["strategy_id"] for r in front], candidates=candidates,
                                 tried_labels={r["candidate_key"] for r in seen}, episode=k,
                                 episodes_left=max_k - k + 1, budget_hours_left=1.0, objectives=objectives)
        try:
            proposal = coordinator.propose(state)
        except COORDINATOR_FAILURES:   # as in an experiment (`coordinator_fallback: planner`): the planner decides
            FALLBACKS[coordinator.name] = FALLBACKS.get(coordinator.name, 0) + 1
            proposal = Planner(seed=0).propose(state)
        if proposal is not None:
            seen.append(rows[proposal.strategy.label()])
        curve.append(frontier_hv(seen, baseline, objectives) / grid_hv)
    return curve


def shuffled(rows: dict, seed: int) -> dict:
    items = list(rows.items())
    random.Random(1000 + seed).shuffle(items)
    return dict(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", default=str(RESULTS / "grid_smollm2_generated_mc.json"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--max-k", type=int, default=12)
    parser.add_argument("--priors", default=None,
                        help="a grid table of an earlier experiment on the same model family: adds `planner+priors`, "
                             "the planner with that table's rows as prior data (core/search/coordinator/priors.py)")
    parser.add_argument("--only", default="", help="comma-separated coordinators to replay (default: all)")
    parser.add_argument("--out", default="search", help="results file prefix: <out>_summary.txt, <out>_curve.json/.html")
    parser.add_argument("--llm-seeds", type=int, default=2,
                        help="seeds for the llm coordinator (one model call per episode; the others are instant)")
    args = parser.parse_args()
    spec, baseline, rows, objectives = load_table(Path(args.table))
    makers = {"planner": lambda seed: Planner(seed=seed), "planner_tpe": lambda seed: Planner(seed=seed, sampler="tpe"),
              "random": lambda seed: RandomSearch(seed=seed)}
    if args.priors:
        from greenai_dagster.core.search.coordinator.priors import prior_rows

        _, prior_baseline, prior_table, _ = load_table(Path(args.priors))
        borrowed = prior_rows(list(prior_table.values()), prior_baseline, list(objectives), Path(args.priors).name)
        makers["planner+priors"] = lambda seed: Planner(seed=seed, priors=borrowed)
    if os.environ.get("OPENAI_API_KEY"):
        makers["llm"] = lambda seed: LlmCoordinator(LlmSettings(model=os.environ.get("GREENAI_LLM_MODEL", "gpt-4o-mini"),
                                                                timeout_s=float(os.environ.get("GREENAI_LLM_TIMEOUT_S", 60))))
    if args.only:
        makers = {k: v for k, v in makers.items() if k in args.only.split(",")}
    lines = [f"grid: {len(rows)} measured strategies ({sum(1 for r in rows.values() if r.get('degraded'))} degraded); "
             f"objectives {', '.join(objectives)}; hypervolume fraction of the grid's frontier, median of "
             f"{args.seeds} seeds" + (f" ({args.llm_seeds} for llm: {os.environ.get('GREENAI_LLM_MODEL')} at "
                                      f"{os.environ.get('OPENAI_BASE_URL', 'the OpenAI API')})" if "llm" in makers else "")]
    curves, medians = {}, {}
    for order in ("as_measured", "shuffled"):
        for name, make in makers.items():
            seeds = range(args.llm_seeds if name == "llm" else args.seeds)
            runs = [replay(make(seed), spec, baseline, rows if order == "as_measured" else shuffled(rows, seed),
                           args.max_k, objectives) for seed in seeds]
            curves[f"{name}/{order}"] = runs
            medians[f"{name}/{order}"] = [statistics.median(c[k] for c in runs) for k in range(args.max_k)]
        names = [n for n in medians if n.endswith(order)]
        lines.append(f"\n{order}:\nk      " + "  ".join(f"{n.split('/')[0]:>11}" for n in names))
        for k in range(args.max_k):
            lines.append(f"{k + 1:<6} " + "  ".join(f"{medians[n][k]:11.3f}" for n in names))
        if f"planner/{order}" not in medians or f"random/{order}" not in medians:
            continue
        planner, rand = medians[f"planner/{order}"], medians[f"random/{order}"]
        first95 = next((k + 1 for k, v in enumerate(planner) if v >= 0.95), None)
        never_below = all(planner[k] >= rand[k] for k in range(2, min(12, args.max_k)))
        above_3_6 = all(planner[k] > rand[k] for k in range(2, 6))
        lines.append(f"planner >= 0.95 at k = {first95}; never below random at k = 3..12: {never_below}; "
                     f"strictly above at k = 3..6: {above_3_6}")
    if FALLBACKS:
        lines.append(f"\nplanner fallbacks (coordinator failed, the planner decided the episode): {FALLBACKS}")
    summary = "\n".join(lines)
    print(summary)
    (RESULTS / f"{args.out}_summary.txt").write_text(summary + "\n")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}_curve.json").write_text(json.dumps({"table": Path(args.table).name, "seeds": args.seeds,
                                                            "objectives": list(objectives), "median": medians,
                                                            "all": curves}, indent=1))
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=list(range(1, args.max_k + 1)), y=v, mode="lines+markers", name=name)
                     for name, v in medians.items()])
    fig.update_layout(title=f"Frontier hypervolume vs episodes ({len(rows)}-strategy grid, median of {args.seeds} seeds)",
                      xaxis_title="episodes", yaxis_title="hypervolume / grid hypervolume", template="plotly_white")
    fig.write_html(str(RESULTS / f"{args.out}_curve.html"), include_plotlyjs="cdn")   # small file; needs the CDN to view


if __name__ == "__main__":
    main()
