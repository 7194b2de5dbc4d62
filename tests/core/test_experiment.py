"""The experiment record (core/experiment.py): opened once, objectives resolved in one place, opt-ins as fields.

The reports follow the record: when the benchmark cannot tell the baseline from chance, accuracy leaves the
frontier's objectives, and neither final_results.json nor `greenai analyze --sweep` may then name a "best
accuracy" (before the record, analyze worked the objectives out from the config alone, and final_results.json
took the maximum accuracy of the frontier whatever the objectives were).
"""

from __future__ import annotations

import json

import pytest

from greenai_dagster.core import pipeline
from greenai_dagster.core.errors import ModelLoadError
from greenai_dagster.core.experiment import Experiment, open_experiment, resolve_objectives
from greenai_dagster.core.reporting import analyze
from greenai_dagster.core.reporting.report import write_json
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.store import RESULT_COLUMNS, ResultsStore

ALL_DEFAULT = ["kl_divergence", "accuracy", "latency_ms", "memory_gb", "model_size_gb"]


def _row(sid: str, episode: int, accuracy: float, kl: float, size: float) -> dict:
    row = {c: None for c in RESULT_COLUMNS}
    row.update(candidate_key=f"sw-exp/{sid}", experiment="sw-exp", episode=episode, strategy_id=sid, methods="gptq",
               is_baseline=episode == 0, accuracy=accuracy, kl_divergence=kl, latency_ms=10.0, memory_gb=1.0,
               model_size_gb=size, compression_ratio=1.0 / size, ppl_ratio=1.0, task_accuracy={}, conditions={},
               degraded=False)
    return row


def _experiment(tmp_path, tiny_spec=None, facts=None, **config) -> ResultsStore:
    """An experiment named `sw-exp` (a member of sweep `sw`) with a baseline and two candidates that are
    both on the frontier: one keeps more accuracy, the other is closer to the baseline (lower KL)."""
    store = ResultsStore(tmp_path / "r.duckdb")
    settings = ExperimentConfig(model="m", dataset="d", episodes=2, name="sw-exp", output_dir=str(tmp_path), **config)
    store.create_experiment("sw-exp", "m", "d", settings.model_dump(), str(tmp_path))
    if tiny_spec is not None:
        write_json(tmp_path / "sw-exp" / "model_spec.json", tiny_spec.to_json())
    if facts:
        store.set_facts("sw-exp", facts)
    store.write_result(_row("baseline", 0, 0.30, 0.0, 1.0))
    for episode, (sid, accuracy, kl) in enumerate([("ep001_a", 0.34, 0.20), ("ep002_b", 0.26, 0.05)], start=1):
        store.add_strategy(f"sw-exp/{sid}", "sw-exp", episode,
                           {"strategy_id": sid, "steps": [{"method": "gptq", "params": {}}], "reasoning": "r"})
        store.set_strategy_status(f"sw-exp/{sid}", "done")
        store.write_result(_row(sid, episode, accuracy, kl, 0.5))
    return store


# ---- the record ----------------------------------------------------------------------------------------------

def test_an_experiment_is_opened_once_with_everything_its_steps_need(tmp_path, tiny_spec):
    store = _experiment(tmp_path, tiny_spec, facts={"benchmark_note": "n"}, constraints={"max_kl": 0.4})
    exp = open_experiment(store, "sw-exp")
    assert isinstance(exp, Experiment) and exp.name == "sw-exp"
    assert exp.config.constraints == {"max_kl": 0.4} and exp.config.episodes == 2
    assert exp.folder == tmp_path / "sw-exp"
    assert exp.spec is not None and exp.spec.to_json() == tiny_spec.to_json()
    assert exp.baseline["candidate_key"] == "sw-exp/baseline"
    assert exp.facts == {"benchmark_note": "n"}
    assert list(exp.objectives) == ALL_DEFAULT and exp.objectives["accuracy"] is True
    with pytest.raises(Exception):      # a record, not a handle to change: frozen
        exp.name = "other"


def test_a_fresh_experiment_has_no_spec_or_baseline_yet(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    config = ExperimentConfig(model="m", name="fresh", output_dir=str(tmp_path))
    store.create_experiment("fresh", "m", "d", config.model_dump(), str(tmp_path))
    exp = open_experiment(store, "fresh")
    assert exp.spec is None and exp.baseline is None and exp.facts == {}


def test_an_unknown_experiment_is_a_clear_error_naming_it(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    with pytest.raises(ModelLoadError) as err:
        open_experiment(store, "never-made")
    assert err.value.code == "E002" and "'never-made'" in str(err.value) and "greenai run" in str(err.value)


def test_trust_remote_code_is_a_field_of_the_record_and_not_read_from_the_environment(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "r.duckdb")
    for name, allowed in (("trusting", True), ("careful", False)):
        config = ExperimentConfig(model="m", name=name, output_dir=str(tmp_path), trust_remote_code=allowed)
        store.create_experiment(name, "m", "d", config.model_dump(), str(tmp_path))
    monkeypatch.setenv("GREENAI_INTERNAL_TRUST_REMOTE_CODE", "1")     # the old process-wide switch: ignored
    assert open_experiment(store, "careful").trust_remote_code is False
    monkeypatch.delenv("GREENAI_INTERNAL_TRUST_REMOTE_CODE")
    assert open_experiment(store, "trusting").trust_remote_code is True


# ---- the one objectives resolution ---------------------------------------------------------------------------

def test_objectives_are_the_chosen_ones_while_the_benchmark_discriminates():
    config = ExperimentConfig(objectives=["accuracy", "model_size_gb"])
    assert resolve_objectives(config, {}) == {"accuracy": True, "model_size_gb": False}
    assert resolve_objectives(config, {"benchmark_discriminates": True}) == {"accuracy": True, "model_size_gb": False}
    assert list(resolve_objectives(ExperimentConfig(), None)) == ALL_DEFAULT


def test_accuracy_is_dropped_when_the_benchmark_cannot_tell_the_baseline_from_chance():
    config = ExperimentConfig(objectives=["accuracy", "kl_divergence"])
    assert resolve_objectives(config, {"benchmark_discriminates": False}) == {"kl_divergence": False}
    # the facts written when the baseline was scored carry the decision: they win over the config
    stored = {"benchmark_discriminates": False, "objectives": ["kl_divergence", "latency_ms"]}
    assert resolve_objectives(config, stored) == {"kl_divergence": False, "latency_ms": False}


def test_the_baseline_step_stores_the_same_resolution_as_its_facts():
    chance = {"t": 0.5}
    at_chance = {"t": "10" * 10}          # per task, one character per item: half right on two-way items
    facts = pipeline.benchmark_facts(at_chance, chance, ExperimentConfig())
    assert facts["benchmark_discriminates"] is False
    assert facts["objectives"] == [o for o in ALL_DEFAULT if o != "accuracy"]
    assert facts["objectives"] == list(resolve_objectives(ExperimentConfig(), {"benchmark_discriminates": False}))


# ---- the reports follow the record ---------------------------------------------------------------------------

DROPPED = {"benchmark_discriminates": False, "benchmark_note": "at chance",
           "objectives": [o for o in ALL_DEFAULT if o != "accuracy"]}


@pytest.mark.parametrize("facts", [DROPPED, {"benchmark_discriminates": False}], ids=["stored", "fact-only"])
def test_no_best_accuracy_is_reported_after_accuracy_was_dropped(tmp_path, tiny_spec, facts):
    store = _experiment(tmp_path, tiny_spec, facts=facts)
    exp = open_experiment(store, "sw-exp")
    pipeline.update_frontier(store, exp)
    final = pipeline.finish_experiment(store, exp, "max_episodes_reached")
    written = json.loads((tmp_path / "sw-exp" / "final_results.json").read_text())
    for report in (final, written):
        assert "accuracy" not in report["objectives"] and "accuracy" not in report["best_solutions"]
        assert report["frontier_summary"]["best_accuracy"] is None
        assert report["frontier_summary"]["best_kl_divergence"] == 0.05
    wins = analyze.experiment_wins(store, "sw-exp")
    # ranked without accuracy, the closer candidate dominates: one member, and no best accuracy among it
    assert [r["strategy_id"] for r in wins["frontier"]] == ["ep002_b"]
    assert "accuracy" not in wins["best"] and "kl_divergence" in wins["best"]
    assert "best acc" not in analyze.describe_sweep("sw", [wins])


def test_best_accuracy_is_reported_while_the_benchmark_discriminates(tmp_path, tiny_spec):
    store = _experiment(tmp_path, tiny_spec, facts={"benchmark_discriminates": True})
    exp = open_experiment(store, "sw-exp")
    pipeline.update_frontier(store, exp)
    final = pipeline.finish_experiment(store, exp, "max_episodes_reached")
    assert final["frontier_summary"]["best_accuracy"] == 0.34 and "accuracy" in final["best_solutions"]
    assert analyze.experiment_wins(store, "sw-exp")["best"]["accuracy"]["strategy_id"] == "ep001_a"


def test_the_steps_take_the_record_and_never_look_their_settings_up_by_key():
    """The issue's 14 `experiment_config(store, name)` lookups: gone, and with them the function."""
    import inspect

    from greenai_dagster.core import decide, engine

    assert not hasattr(pipeline, "experiment_config")
    for module in (pipeline, decide, engine, analyze):
        assert "experiment_config(" not in inspect.getsource(module), module.__name__
    for step in (pipeline.build_model_spec, pipeline.evaluate_baseline, pipeline.compress_candidate,
                 pipeline.benchmark_candidate, pipeline.update_frontier, pipeline.finish_experiment,
                 decide.decide_next, decide.decide_or_fall_back):
        assert list(inspect.signature(step).parameters)[1] == "exp", step.__name__


def test_the_remote_code_opt_in_is_an_argument_and_no_environment_variable_opens_it(tiny_model_dir, tmp_path,
                                                                                     monkeypatch):
    """The opt-in used to be a process-wide variable set around each step; now it is the record's field, passed
    to whatever loads, and the old variable (or any) opens nothing."""
    from tests.robustness.test_security import _remote_code_folder

    from greenai_dagster.core.models import loading
    from greenai_dagster.core.models.checkpoints import load_variant

    marker = tmp_path / "remote_code_ran"
    folder = _remote_code_folder(tiny_model_dir, tmp_path / "remote", marker)
    monkeypatch.setenv("GREENAI_INTERNAL_TRUST_REMOTE_CODE", "1")
    for load in (loading.load_config, load_variant):
        with pytest.raises(ModelLoadError) as err:
            load(str(folder))
        assert err.value.code == "E002" and "--trust-remote-code" in str(err.value)
    assert not marker.exists()
    assert not hasattr(loading, "remote_code_allowed") and not hasattr(loading, "trust_remote_code")
    assert loading.load_config(str(folder), trust_remote_code=True).model_type == "tiny_remote"
    assert marker.exists()


def test_no_module_reads_an_opt_in_from_the_environment():
    from pathlib import Path

    import greenai_dagster

    package = Path(greenai_dagster.__file__).parent
    readers = [str(p.relative_to(package)) for p in package.rglob("*.py") if "TRUST_REMOTE_CODE" in p.read_text()]
    assert readers == []


def test_the_latency_probe_is_handed_the_opt_in_on_its_command_line(monkeypatch, tmp_path):
    """The probe is a fresh process: it once inherited the opt-in through the environment; now its command says."""
    import subprocess
    from contextlib import contextmanager
    from types import SimpleNamespace

    from greenai_dagster.core.evaluation import evaluate
    from greenai_dagster.core.evaluation.eval_settings import EvalSettings

    commands = []

    def fake_run(cmd, **_):
        commands.append(cmd)
        return SimpleNamespace(returncode=0, stdout='{"decode_ms_per_token": 1.0}\n', stderr="")

    @contextmanager
    def free_slot(_device):      # the real slot waits for whatever else measures on this machine
        yield SimpleNamespace(fd=-1, wait_s=0.0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(evaluate.device_slot, "exclusive", free_slot)
    for allowed in (False, True):
        evaluate._probe(tmp_path, "cpu", EvalSettings(), "torch-eager", trust_remote_code=allowed)
    assert "--trust-remote-code" not in commands[0] and "--trust-remote-code" in commands[1]
