"""The frontier as text (core/reporting/frontier_text.py), what the UI's frontier metadata shows: tables with
fidelity, perplexity ratio, throughput, energy and runtime in rounded numbers; the hypervolume explained;
the best per objective named with its value."""

from __future__ import annotations

import re

from greenai_dagster.core.reporting import frontier_text
from greenai_dagster.core.search.pareto import summarise


def row(name: str, kl: float, latency: float, runtime: str, **extra) -> dict:
    base = {"candidate_key": f"e/{name}", "strategy_id": name, "kl_divergence": kl, "kl_stderr": 0.001,
            "accuracy": 0.28750000000000003, "accuracy_stderr": 0.0503, "latency_ms": latency,
            "memory_gb": 0.2412345678, "model_size_gb": 0.0812345678, "top1_agreement": 0.9312345,
            "ppl_ratio": 1.0412345678, "throughput_tokens_per_s": 41.2345678, "energy_j_per_token": 0.0812345678,
            "conditions": {"runtime": runtime, "kernel": "k", "device": "cpu", "threads": 2}}
    return {**base, **extra}


FOUR = {"kl_divergence": False, "latency_ms": False, "memory_gb": False, "model_size_gb": False}


def frontier():
    rows = [row("ep001_int8_dynamic", 0.0123456789, 20.123456, "torch-int8-dynamic"),
            row("ep002_gptq_w4g64", 0.0456789, 12.3456789, "llama.cpp", memory_gb=0.11, model_size_gb=0.05),
            row("ep003_bad", 0.9, 10.0, "torch-eager", degraded=True, degraded_reason="kl_divergence 0.9 > 0.5")]
    baseline = row("baseline", 0.0, 19.87654321, "torch-eager", memory_gb=0.5, model_size_gb=0.25, is_baseline=True)
    return summarise(rows, baseline, FOUR), baseline


def test_the_frontier_tables_have_fidelity_ppl_energy_runtime_and_rounded_numbers():
    summary, baseline = frontier()
    table = frontier_text.frontier_markdown(summary, baseline)
    headers = [line for line in table.splitlines() if line.startswith("| strategy")]
    assert len(headers) == 2                              # quality, then serving cost: each fits the panel
    for column in ("KL nats/tok", "ppl ratio", "top-1", "accuracy [95% CI]", "size GiB"):
        assert column in headers[0], column
    for column in ("ms/tok", "tok/s", "J/tok", "mem GiB", "runtime"):
        assert column in headers[1], column
    lines = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| strategy")]
    assert [line.split("|")[1].strip() for line in lines] == ["(baseline)", "ep001_int8_dynamic",
                                                              "ep002_gptq_w4g64"] * 2
    assert "| ep001_int8_dynamic | 0.0123 | 1.041 | 0.931 | 0.288 [0.19-0.39] | 0.0812 |" in table
    assert "| ep001_int8_dynamic | 20.1 | 41.2 | 0.0812 | 0.241 | torch-int8-dynamic |" in table
    assert not re.search(r"\d\.\d{5,}", table), "a raw float in the table"
    assert max(len(line) for line in lines) < 90
    assert "not a frontier member" in table and "- llama.cpp: llama.cpp (k) on cpu, 2 threads" in table
    assert "- ep003_bad: kl_divergence 0.9 > 0.5" in table


def test_the_hypervolume_is_explained_and_the_best_per_objective_is_named_with_its_value():
    summary, _ = frontier()
    text = frontier_text.hypervolume_text(summary)
    assert f"Hypervolume = {frontier_text.num(summary.hypervolume)}" in text and "Larger is better" in text
    assert "reference" in text and "latency_ms / baseline" in text and "kl_divergence as is" in text
    best = frontier_text.best_per_objective(summary)
    assert best == {"kl_divergence": "ep001_int8_dynamic (0.01235 nats/token)",
                    "latency_ms": "ep002_gptq_w4g64 (12.35 ms/token)",
                    "memory_gb": "ep002_gptq_w4g64 (0.11 GiB)", "model_size_gb": "ep002_gptq_w4g64 (0.05 GiB)"}


def test_numbers_are_rounded_to_four_significant_digits():
    assert frontier_text.num(0.28750000000000003) == "0.2875"
    assert frontier_text.num(1.0391269446796743) == "1.039"
    assert frontier_text.num(0.00017084088) == "0.0001708"
    assert frontier_text.num(1.032312644822366e-06) == "1.032e-06"
    assert frontier_text.num(None) == "-" and frontier_text.num(0.0) == "0"
