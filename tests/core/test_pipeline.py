"""The pipeline's steps (core/pipeline.py): an unmeasured energy is null in the result row, with its reason
in the conditions, and keeps the candidate off a frontier that has energy among its objectives."""

from __future__ import annotations


def test_unmeasured_energy_is_null_in_the_row_and_keeps_it_off_an_energy_frontier():
    from types import SimpleNamespace

    from greenai_dagster.core.evaluation.energy import EnergyReading
    from greenai_dagster.core.evaluation.fidelity import Fidelity
    from greenai_dagster.core.search.pareto import summarise
    from greenai_dagster.core.pipeline import _result_row

    fid = Fidelity(kl_divergence=0.1, kl_stderr=0.01, top1_agreement=0.9, top1_stderr=0.01, ppl_ratio=1.1,
                   ppl_ratio_low=1.0, ppl_ratio_high=1.2, perplexity=12.0, tokens=512)
    metrics = SimpleNamespace(accuracy=0.5, accuracy_stderr=None, latency_ms=1.0, prefill_ms=1.0,
                              throughput_tokens_per_s=None, memory_gb=0.1, model_size_gb=0.1, energy_j_per_token=None,
                              task_accuracy={}, item_correct={}, conditions={}, eval_time_s=1.0, task_chance={},
                              fidelity=fid, fidelity_sampled=None)
    row = _result_row("e/s", "e", 1, "s", ["int8"], metrics, EnergyReading(error="codecarbon could not start (x)"),
                      0.2, {"compression_energy_kwh": 0.001, "compression_co2_grams": 0.5}, "/x")
    assert row["energy_kwh"] is None and row["co2_grams"] is None and row["eval_energy_kwh"] is None
    assert row["conditions"]["energy_error"] == "codecarbon could not start (x)"
    measured = dict(row, candidate_key="e/m", energy_kwh=0.002, kl_divergence=0.1)
    summary = summarise([dict(row, kl_divergence=0.1), measured], {"energy_kwh": 0.01, "kl_divergence": 0.0},
                        {"energy_kwh": False, "kl_divergence": False})
    assert [m["candidate_key"] for m in summary.members] == ["e/m"]
    assert summary.excluded[0]["reason"] == "not measured: energy_kwh"
