"""The candidate assets (assets/candidates.py): the plausibility check finds NaN and inf in any column, and a
result failing the blocking check stops its run with a clear E004 naming the check."""

from __future__ import annotations

import math

import pytest

from greenai_dagster.core.errors import EvaluationError


def test_the_plausibility_check_rejects_nan_and_inf_in_any_column(tmp_path):
    from greenai_dagster.assets.candidates import plausibility_problems
    from greenai_dagster.core.storage.store import ResultsStore

    store = ResultsStore(tmp_path / "r.duckdb")
    good = {"candidate_key": "e/ok", "experiment": "e", "episode": 1, "strategy_id": "ok", "accuracy": 0.5,
            "kl_divergence": 0.1, "top1_agreement": 0.9, "ppl_ratio": 1.1, "model_size_gb": 0.1, "latency_ms": 5.0,
            "memory_gb": 0.2, "perplexity": 12.0, "energy_kwh": None, "kl_stderr": None}   # NULL: not measured
    store.write_result(good)
    assert plausibility_problems(store, "e/ok") == []
    bad = dict(good, candidate_key="e/bad", compression_ratio=math.inf, kl_stderr=math.nan, energy_kwh=math.nan,
               co2_grams=-math.inf, task_accuracy={"t": math.nan})
    store.write_result(bad)
    problems = plausibility_problems(store, "e/bad")
    for column in ("compression_ratio", "kl_stderr", "energy_kwh", "co2_grams", "task_accuracy[t]"):
        assert any(p.startswith(column) for p in problems), (column, problems)
    store.write_result(dict(good, candidate_key="e/nan_acc", accuracy=math.nan))
    assert any(p.startswith("accuracy ") for p in plausibility_problems(store, "e/nan_acc"))


def test_a_result_failing_the_blocking_check_stops_its_run_with_a_clear_error(data_root, tmp_path, monkeypatch):
    from greenai_dagster import runner
    from greenai_dagster.core import pipeline
    from greenai_dagster.core.storage.store import ResultsStore
    from greenai_dagster.resources import GpuResource, ResultsStoreResource

    store = ResultsStore(tmp_path / "r.duckdb")
    store.create_experiment("nan_exp", "m", "d", {}, str(tmp_path))     # the steps open its record first
    key = "nan_exp/ep001_int8_dynamic"
    row = {"candidate_key": key, "experiment": "nan_exp", "episode": 1, "strategy_id": "ep001_int8_dynamic",
           "accuracy": 0.5, "kl_divergence": 0.1, "top1_agreement": 0.9, "ppl_ratio": 1.1, "model_size_gb": 0.1,
           "latency_ms": 5.0, "memory_gb": 0.2, "perplexity": 12.0, "compression_ratio": math.inf,
           "checkpoint_path": str(tmp_path)}

    def fake_benchmark(results_store, exp, candidate_key, device="cpu"):
        results_store.write_result(row)
        return results_store.result(candidate_key)

    def fake_compress(results_store, exp, candidate_key, device="cpu"):   # the check under test follows the benchmark
        return {"strategy": {"strategy_id": "ep001_int8_dynamic", "steps": []}, "compression_time_s": 0.0,
                "compression_energy_kwh": 0.0, "size_gb": 0.1, "checkpoint_path": str(tmp_path)}

    monkeypatch.setattr(pipeline, "benchmark_candidate", fake_benchmark)
    monkeypatch.setattr(pipeline, "compress_candidate", fake_compress)
    instance = runner.dagster_instance()     # `_run_stage` registers the candidate's (experiment, strategy) keys
    resources = {"store": ResultsStoreResource(path=str(store.path)), "gpu": GpuResource(device="cpu")}
    with pytest.raises(EvaluationError) as err:
        runner._run_stage("candidate", key, instance, resources)
    assert err.value.code == "E004" and "benchmark_result_is_plausible" in str(err.value)
    assert "compression_ratio is not finite" in str(err.value)
