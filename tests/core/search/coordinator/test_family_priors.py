"""Knowledge reuse: the planner's prior rows come from earlier experiments on the same model family."""

import json

from greenai_dagster.core.search.coordinator.priors import family_priors
from greenai_dagster.core.storage.store import ResultsStore
from greenai_dagster.core.strategy import Step, Strategy


def _experiment(store, root, name, family, results):
    store.create_experiment(name, "m", "d", {}, str(root))
    (root / name).mkdir(parents=True)
    (root / name / "model_spec.json").write_text(json.dumps({"model_family": family}))
    base = {"candidate_key": f"{name}/baseline", "experiment": name, "episode": 0, "strategy_id": "baseline",
            "is_baseline": True, "accuracy": 0.6, "latency_ms": 40.0, "memory_gb": 0.3, "model_size_gb": 0.25,
            "kl_divergence": 0.0}
    store.write_result(base)
    for episode, (strategy, kl, size) in enumerate(results, start=1):
        key = f"{name}/{strategy.label()}"
        store.add_strategy(key, name, episode, strategy.to_json())
        store.write_result(dict(base, candidate_key=key, episode=episode, strategy_id=strategy.label(),
                                is_baseline=False, kl_divergence=kl, model_size_gb=size))


def test_priors_come_from_the_same_family_only_and_a_later_experiment_wins(tmp_path):
    store = ResultsStore(tmp_path / "g.duckdb")
    gptq = Strategy("gptq_w4g64", [Step("gptq", {"bits": 4, "group_size": 64})])
    rtn = Strategy("rtn_w8g64", [Step("rtn", {"bits": 8, "group_size": 64})])
    _experiment(store, tmp_path, "older_llama", "llama", [(gptq, 0.30, 0.10), (rtn, 0.002, 0.15)])
    _experiment(store, tmp_path, "newer_llama", "llama", [(gptq, 0.20, 0.10)])
    _experiment(store, tmp_path, "a_gemma", "gemma3", [(rtn, 0.5, 0.2)])
    _experiment(store, tmp_path, "current", "llama", [])
    priors = {p["label"]: p for p in family_priors(store, "current", ["kl_divergence", "model_size_gb"])}
    assert set(priors) == {gptq.label(), rtn.label()}
    assert priors[gptq.label()]["source"] == "newer_llama" and priors[gptq.label()]["values"]["kl_divergence"] == 0.20
    assert priors[rtn.label()]["source"] == "older_llama"
    assert priors[rtn.label()]["values"]["model_size_gb"] == 0.15 / 0.25
    assert family_priors(store, "a_gemma", ["kl_divergence"]) == []      # no other gemma experiment
