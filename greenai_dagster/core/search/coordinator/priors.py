"""Knowledge reuse: earlier experiments on the same model family as the planner's prior data.

An earlier experiment's measured rows say how each strategy behaved relative to *its* baseline
(size x0.27, latency x0.55, accuracy x0.97, KL 0.16). On a model of the same family those ratios
are a good first guess, so the planner's Gaussian processes start from them instead of from nothing
and can skip the hand-written first picks. Rows are stored already transformed the way the planner
models objectives (`planner._target_transform`: a ratio to the row's own baseline, or the value as
is for absolute-scale objectives such as KL); a prior never enters the frontier or the hypervolume,
and a strategy measured in the current experiment replaces its prior row.
"""

from __future__ import annotations

import json

from greenai_dagster.core.search.objectives import get as objective
from greenai_dagster.core.strategy import Strategy


def prior_rows(results: list[dict], baseline: dict, objectives: list[str], source: str) -> list[dict]:
    """Transformed prior rows from one earlier experiment: {label, strategy, source, values}. Degraded
    rows are kept (knowing a strategy breaks the model is worth as much as knowing one works); values
    the experiment did not measure (an objective added since) are left out, per objective."""
    out = []
    for row in results:
        if row.get("strategy_id") == "baseline" or not row.get("strategy"):
            continue
        values = {}
        for name in objectives:
            value = row.get(name)
            if value is None or value != value:
                continue
            if objective(name).scale == "absolute":
                values[name] = float(value)
            elif baseline.get(name):
                values[name] = float(value) / float(baseline[name])
        if values:
            out.append({"label": Strategy.from_json(row["strategy"]).label(), "strategy": row["strategy"],
                        "source": source, "values": values})
    return out


def family_priors(store, experiment: str, objectives: list[str]) -> list[dict]:
    """Prior rows from every other experiment in the store whose model has the same family
    (`model_spec.model_family`, e.g. `llama`), newest experiment first; one row per strategy."""
    family = _family(store, experiment)
    if family is None:
        return []
    rows: dict[str, dict] = {}
    with store.connect(read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT name FROM experiments WHERE name != ? ORDER BY created_at DESC",
                                           [experiment]).fetchall()]
    for name in names:
        if _family(store, name) != family:
            continue
        baseline = store.baseline(name)
        if baseline is None:
            continue
        strategies = {s["candidate_key"]: s["strategy"] for s in store.strategies(name)}
        results = [dict(r, strategy=strategies.get(r["candidate_key"])) for r in store.results(name)]
        for prior in prior_rows([r for r in results if r["strategy"]], baseline, objectives, name):
            rows.setdefault(prior["label"], prior)
    return list(rows.values())


def _family(store, name: str) -> str | None:
    """The model family an experiment's spec names (None before its spec is written)."""
    folder = store.experiment_folder(name)
    spec_file = folder / "model_spec.json" if folder is not None else None
    return json.loads(spec_file.read_text()).get("model_family") if spec_file is not None and spec_file.exists() \
        else None
