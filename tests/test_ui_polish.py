"""What a person reads in the Dagster UI, checked without a browser: the Launchpad's config schema
(descriptions, enums, the settable fields), the frontier metadata (rounded table with fidelity,
perplexity ratio, throughput, energy and runtime; hypervolume explained; best per objective; the
termination reason), the full-set asset's reason for not running, the chart's figure, and the
throughput measurement (batched decode, prefill excluded)."""

from __future__ import annotations

import re

import pytest

from greenai_dagster.core.reporting import frontier_text
from greenai_dagster.core.search.objectives import OBJECTIVES
from greenai_dagster.core.search.pareto import summarise


def op_config_fields() -> dict:
    from dagster._config import Noneable

    from greenai_dagster.jobs import launch_experiment

    schema = launch_experiment.run_config_schema.config_type
    config = schema.fields["ops"].config_type.fields["create_experiment"].config_type.fields["config"].config_type

    def inner(field):
        kind = field.config_type
        return kind.inner_type if isinstance(kind, Noneable) else kind

    return {name: (field, inner(field)) for name, field in config.fields.items()}


def test_every_launchpad_field_is_documented_and_the_choices_are_enums():
    fields = op_config_fields()
    for name, (field, kind) in fields.items():
        assert field.description and len(field.description) > 20, name
    for name, field in fields["eval"][1].fields.items():
        assert field.description, f"eval.{name}"
    # the settable things the issue listed: proxy items, full evaluation, benchmark source, objectives
    assert {"limit_per_task", "full_set_for_frontier"} <= set(fields["eval"][1].fields)
    assert {"benchmark_source", "objectives", "constraints", "coordinator"} <= set(fields)

    from greenai_dagster.core.settings.config import ExperimentConfig

    coordinator = fields["coordinator"][1]
    values = {v.config_value for v in coordinator.enum_values}
    assert values == {"planner", "llm", "random"}
    for value in values:                      # every choice the Launchpad offers is one the experiment accepts
        assert ExperimentConfig(coordinator=value).coordinator == value
    assert {v.config_value for v in fields["benchmark_source"][1].enum_values} == {"auto", "offline", "hub"}
    constraints = fields["constraints"][0].description
    for key in ("min_accuracy", "max_latency_ms", "max_memory_gb", "max_kl", "max_ppl_ratio"):
        assert key in constraints, key
    assert all(name in fields["objectives"][0].description for name in OBJECTIVES)


def test_a_coordinator_outside_the_enum_is_refused_by_the_launchpad_schema(data_root):
    from dagster import DagsterInvalidConfigError

    from greenai_dagster.jobs import launch_experiment
    from greenai_dagster.resources import resources_for

    with pytest.raises(DagsterInvalidConfigError, match="coordinator"):
        launch_experiment.execute_in_process(
            run_config={"ops": {"create_experiment": {"config": {"coordinator": "oracle"}}}}, resources=resources_for())


def test_the_launch_job_creates_the_experiment_with_the_chosen_enums(data_root, tiny_model_dir, tiny_benchmark):
    from dagster import DagsterInstance

    from greenai_dagster.core.storage.paths import duckdb_path
    from greenai_dagster.core.storage.store import ResultsStore
    from greenai_dagster.jobs import launch_experiment
    from greenai_dagster.resources import resources_for

    config = {"model": str(tiny_model_dir), "dataset": str(tiny_benchmark), "name": "launchpad_enums",
              "coordinator": "random", "benchmark_source": "offline", "episodes": 1,
              "objectives": ["kl_divergence", "latency_ms"], "constraints": {"max_latency_ms": 50.0},
              "eval": {"limit_per_task": 3, "full_set_for_frontier": True}}
    result = launch_experiment.execute_in_process(run_config={"ops": {"create_experiment": {"config": config}}},
                                                  instance=DagsterInstance.get(), resources=resources_for())
    assert result.success
    stored = ResultsStore(duckdb_path()).experiment("launchpad_enums")["config"]
    assert stored["coordinator"] == "random" and stored["benchmark_source"] == "offline"
    assert stored["objectives"] == ["kl_divergence", "latency_ms"] and stored["constraints"] == {"max_latency_ms": 50.0}
    assert stored["eval"]["limit_per_task"] == 3 and stored["eval"]["full_set_for_frontier"] is True


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


def test_the_experiment_status_is_its_termination_reason_once_it_ends():
    from greenai_dagster.assets.frontier import experiment_status

    assert experiment_status({"termination_reason": "converged", "config": {"episodes": 5}}, 3) == "converged"
    running = experiment_status({"termination_reason": float("nan"), "config": {"episodes": 5}}, 3)
    assert running.startswith("running: 3 of 5 episodes done")


def test_the_full_set_asset_says_why_it_may_never_be_materialized():
    from greenai_dagster.assets.frontier import frontier_full_evaluation

    spec = frontier_full_evaluation.specs_by_key[frontier_full_evaluation.key]
    for text in (spec.description, spec.metadata["materialized_when"]):
        assert "--full-eval" in text and "full_set_for_frontier" in text and "on CPU off by default" in text


def test_the_chart_has_accuracy_error_bars_units_and_says_the_frontier_is_multidimensional():
    from greenai_dagster.core.reporting.report import chart_figure

    summary, baseline = frontier()
    rows = [dict(r, is_pareto=r["candidate_key"] in {m["candidate_key"] for m in summary.members})
            for r in [row("ep001_int8_dynamic", 0.0123456789, 20.1, "torch-int8-dynamic"),
                      row("ep002_gptq_w4g64", 0.0456789, 12.3, "llama.cpp", memory_gb=0.11, model_size_gb=0.05)]]
    fig = chart_figure("exp", rows, baseline, summary)
    assert fig.layout.xaxis.title.text == "kl_divergence (nats/token)"
    assert fig.layout.yaxis.title.text == "accuracy (fraction)"
    [pareto] = [t for t in fig.data if t.name == "Pareto-optimal"]
    assert pareto.error_y.visible and list(pareto.error_y.array) == pytest.approx([1.96 * 0.0503] * 2)
    assert list(pareto.error_y.arrayminus) == pytest.approx([1.96 * 0.0503] * 2)
    # an interval is clipped where the figure ends: accuracy 0.95 +- 0.098 stays below 1, KL above 0
    edge = chart_figure("exp", [dict(rows[0], accuracy=0.95, kl_divergence=0.001, is_pareto=True)], None, summary)
    [point] = [t for t in edge.data if t.name == "Pareto-optimal"]
    assert point.error_y.array[0] == pytest.approx(0.05) and point.error_y.arrayminus[0] == pytest.approx(1.96 * 0.0503)
    assert point.error_x.arrayminus[0] == pytest.approx(0.001) and point.error_x.array[0] == pytest.approx(1.96 * 0.001)
    menus, labels = fig.layout.updatemenus, fig.layout.annotations      # the axis menus sit under the title
    assert all(m.y > 1 and m.yanchor == "bottom" for m in menus) and fig.layout.margin.t >= 200
    assert menus[0].x > labels[0].x and menus[1].x > labels[1].x
    assert pareto.cliponaxis is False and fig.layout.xaxis.automargin and fig.layout.yaxis.automargin
    title = fig.layout.title.text
    assert "Frontier over 4 objectives" in title and "not a frontier member" in title and "95%" in title
    # every axis choice in the dropdowns carries its unit
    for menu in fig.layout.updatemenus:
        for button in menu.buttons:
            name = button.label
            titled = button.args[1].get("xaxis.title.text") or button.args[1].get("yaxis.title.text")
            assert titled == f"{name} ({OBJECTIVES[name].unit})"
