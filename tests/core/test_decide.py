"""decide_next: termination reasons, and a config's allowed methods and constraints are obeyed."""

import json

import pytest

from greenai_dagster.core.decide import decide_next, frontier_unchanged_for
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.reporting import report
from greenai_dagster.core.search.coordinator import Planner
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.store import RESULT_COLUMNS, ResultsStore
from greenai_dagster.core.strategy import Step, Strategy


def row(key, episode, acc, lat, size, experiment="exp"):
    r = {c: None for c in RESULT_COLUMNS}
    r.update(candidate_key=f"{experiment}/{key}", experiment=experiment, episode=episode, strategy_id=key,
             is_baseline=episode == 0, accuracy=acc, latency_ms=lat, memory_gb=0.5, model_size_gb=size,
             perplexity=12.0, compression_ratio=0.25 / size, task_accuracy={}, conditions={}, kl_divergence=0.01, ppl_ratio=1.01)
    return r


def opened(store):
    """(store, record): the record opened now, as the engine opens it before each decision."""
    return store, open_experiment(store, "exp")


@pytest.fixture()
def experiment(tmp_path, tiny_spec):
    def make(**overrides):
        store = ResultsStore(tmp_path / "db.duckdb")
        config = ExperimentConfig(model="tiny", name="exp", output_dir=str(tmp_path), **overrides)
        store.create_experiment("exp", "tiny", "d", config.model_dump(), str(tmp_path))
        report.write_json(tmp_path / "exp" / "model_spec.json", tiny_spec.to_json())
        store.write_result(row("baseline", 0, 0.5, 30.0, 0.25))
        return store
    return make


def add_done(store, episode, label, steps, acc, lat, size, status="done"):
    strategy = Strategy(f"ep{episode:03d}_{label}", [Step(m, p) for m, p in steps])
    key = f"exp/{strategy.strategy_id}"
    store.add_strategy(key, "exp", episode, strategy.to_json())
    store.set_strategy_status(key, status)
    if status == "done":
        store.write_result(row(strategy.strategy_id, episode, acc, lat, size))


def test_first_decision_is_a_valid_new_strategy(experiment):
    decision = decide_next(*opened(experiment(episodes=3)), Planner())
    assert decision.termination_reason is None
    assert decision.proposal.strategy.strategy_id == "ep001_gptq_w4g64_act" and decision.episode == 1
    assert decision.proposal.strategy.reasoning


def test_max_episodes_reached(experiment):
    store = experiment(episodes=1)
    add_done(store, 1, "gptq_w4g64", [("gptq", {"bits": 4, "group_size": 64})], 0.5, 30, 0.1)
    assert decide_next(*opened(store), Planner()).termination_reason == "max_episodes_reached"


def test_budget_exhausted(experiment):
    store = experiment(episodes=5, budget=1e-9)
    assert decide_next(*opened(store), Planner()).termination_reason == "budget_exhausted"


def test_three_failures_in_a_row_is_error(experiment):
    store = experiment(episodes=9)
    for i, bits in enumerate((4, 8), start=1):
        add_done(store, i, f"gptq_w{bits}", [("gptq", {"bits": bits, "group_size": 64})], 0, 0, 0, status="failed")
    add_done(store, 3, "int8", [("int8", {})], 0, 0, 0, status="failed")
    assert decide_next(*opened(store), Planner()).termination_reason == "error"


def test_constraints_met_when_asked(experiment):
    store = experiment(episodes=5, constraints={"min_accuracy": 0.4}, stop_when_constraints_met=True)
    add_done(store, 1, "gptq_w4g64", [("gptq", {"bits": 4, "group_size": 64})], 0.45, 30, 0.1)
    assert decide_next(*opened(store), Planner()).termination_reason == "constraints_met"


def test_converged_when_frontier_stops_changing(experiment):
    store = experiment(episodes=10, convergence_patience=2)
    add_done(store, 1, "gptq_w4g64", [("gptq", {"bits": 4, "group_size": 64})], 0.5, 10, 0.1)
    add_done(store, 2, "gptq_w8g64", [("gptq", {"bits": 8, "group_size": 64})], 0.4, 20, 0.2)
    add_done(store, 3, "rtn_w4g64", [("rtn", {"bits": 4, "group_size": 64})], 0.3, 30, 0.3)
    assert frontier_unchanged_for(store.results("exp")) == 2
    assert decide_next(*opened(store), Planner()).termination_reason == "converged"


def test_config_file_allowed_methods_and_constraints_are_obeyed(experiment, tmp_path):
    from greenai_dagster.core.settings.config import load_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"compression_methods": ["rtn", "awq"], "constraints": {"max_latency_ms": 50.0},
                                "episodes": 6}))
    config = load_config({}, str(path))
    assert config.compression_methods == ["rtn", "awq"] and config.constraints == {"max_latency_ms": 50.0}
    store = experiment(**{k: getattr(config, k) for k in ("compression_methods", "constraints", "episodes")})
    planner = Planner()
    for episode in range(1, 5):
        decision = decide_next(*opened(store), planner)
        strategy = decision.proposal.strategy
        assert set(strategy.methods) <= {"rtn", "awq"}
        add_done(store, episode, strategy.label(), [(s.method, s.params) for s in strategy.steps], 0.4, 40 + episode, 0.1)
