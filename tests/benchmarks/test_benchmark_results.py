"""The committed quality tables say what issue 26 asks of them: every mixed row names its model and is paired
with the strongest uniform row of its size; the tau table holds both fidelity texts and the gate's rows."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

RESULTS = REPO / "benchmarks" / "results"


def test_every_mixed_row_is_compared_with_the_best_uniform_row_of_its_size():
    rows = json.loads((RESULTS / "mixed_precision.json").read_text())
    # gemma3-270m.search2: Gemma's second, longer search at 3 bits; smollm2.autoround: SmolLM2 with AutoRound
    # levels (each with its own uniform rows, measured in the same run)
    assert {r["model"] for r in rows} == {"smollm2", "gemma3-270m", "gemma3-270m.search2", "smollm2.autoround"}
    for row in rows:
        if row["allocation_kind"] == "uniform":
            continue
        versus = row["kl_vs_best_uniform"]
        same_size = [u for u in rows if u["model"] == row["model"] and u["allocation_kind"] == "uniform"
                     and u["avg_bits"] == row["avg_bits"]]
        best = min(same_size, key=lambda u: u["kl_divergence"])
        assert versus["uniform"] == best["label"], row["label"]
        assert {u["algorithm"] for u in same_size} >= {"gptq", "autoround"}     # not RTN only
        assert abs(versus["size_gb"] - best["size_gb"]) / best["size_gb"] < 0.01   # the same size on disk
        if versus["low"] is None:    # unpaired: the ratio of the two means, and it says so
            assert versus["paired"] is False
            assert versus["ratio"] == pytest.approx(row["kl_divergence"] / best["kl_divergence"])
        else:
            assert versus["low"] < versus["ratio"] < versus["high"]
            assert versus["ratio"] == pytest.approx(row["kl_divergence"] / best["kl_divergence"], rel=0.02)


def test_the_tau_table_measures_both_texts_and_the_gate():
    tau = json.loads((RESULTS / "fidelity_tau.json").read_text())
    assert tau["benchmark"]["name"] == "generated_mc" and tau["device"] == "cuda"
    assert set(tau["tau"]["neg_kl_sampled_vs_full_accuracy"]) == {"1024", "2048", "4096", "8192"}
    for row in tau["rows"]:
        assert row["fidelity"]["4096"]["tokens"] == 4096 and row["fidelity_sampled"]["2048"]["tokens"] == 2048
    assert set(tau["gate"]["rows"]) == {r["variant"] for r in tau["rows"]} - {"baseline"}
