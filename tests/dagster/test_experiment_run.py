"""One experiment end to end through Dagster `materialize(...)`: tiny model, tiny benchmark.

Checks the asset graph runs on a real instance, the folder is in the seed's format, DuckDB and
the folder agree, and a finished experiment is not re-run.
"""

import json

import pytest

from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.paths import duckdb_path
from greenai_dagster.core.storage.store import ResultsStore

FAST_EVAL = {"limit_per_task": 4, "min_items_for_a_file": None, "full_set_for_frontier": True, "batch_size": 4, "fidelity_tokens": 512, "prompt_len": 16,
             "new_tokens": 4, "latency_repeats": 2, "throughput_batch_size": 2}


@pytest.fixture(scope="module")
def finished_run(data_root, tiny_model_dir, tiny_benchmark):
    from greenai_dagster.runner import run_experiment

    config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=2, name="tiny_exp",
                              output_dir=str(data_root / "experiments"), eval=FAST_EVAL)
    lines: list[str] = []
    outcome = run_experiment(config, interactive=True, echo=lines.append)
    return outcome, lines, data_root / "experiments" / "tiny_exp"


def test_run_finishes_with_two_distinct_episodes(finished_run):
    outcome, lines, folder = finished_run
    assert outcome["termination_reason"] == "max_episodes_reached"
    strategies = [json.loads((folder / f"episode_00{i}" / "strategy.json").read_text()) for i in (1, 2)]
    assert [s["methods"] for s in strategies] == [["gptq"], ["int8"]]
    assert any(line.startswith("[Coordinator] Decision: gptq") for line in lines)
    assert any(line.startswith("[Evaluation] Accuracy:") for line in lines)


def test_search_scores_the_proxy_and_the_frontier_gets_the_full_set(finished_run, tiny_model, tiny_benchmark):
    from tests.core.data.test_benchmarks_offline import predicted_choice

    outcome, lines, folder = finished_run
    store = ResultsStore(duckdb_path())
    rows = {r["strategy_id"]: r for r in store.results("tiny_exp", include_baseline=True)}
    members = set(store.frontier("tiny_exp")["members"])
    model, tokenizer = tiny_model
    items = [json.loads(line) for line in tiny_benchmark.read_text().splitlines()]
    hand = [predicted_choice(model, tokenizer, item) == item["gold"] for item in items]
    order_by_gold = rows["baseline"]["conditions"]["accuracy_items_per_task"]
    assert order_by_gold == 4
    assert rows["baseline"]["accuracy_full"] == pytest.approx(sum(hand) / 6, abs=1e-12)   # all six items
    for row in rows.values():
        scored = row["candidate_key"] in members or row["is_baseline"]
        assert (row["accuracy_full"] is not None) == scored
        assert row["accuracy"] * 4 == pytest.approx(round(row["accuracy"] * 4))          # proxy: 4 items
    assert any(line.startswith("[Full set] baseline: accuracy") for line in lines)
    frontier_json = json.loads((folder / "pareto_frontier.json").read_text())
    assert all(sol["result"]["accuracy_full"] is not None for sol in frontier_json["solutions"])


def test_folder_in_seed_format_agrees_with_duckdb(finished_run):
    _, _, folder = finished_run
    for name in ("model_spec.json", "pareto_frontier.json", "final_results.json", "pareto_visualization.html"):
        assert (folder / name).exists(), name
    final = json.loads((folder / "final_results.json").read_text())
    assert final["episodes_completed"] == 2 and final["termination_reason"] == "max_episodes_reached"
    frontier = json.loads((folder / "pareto_frontier.json").read_text())
    store = ResultsStore(duckdb_path())
    rows = {r["strategy_id"]: r for r in store.results("tiny_exp")}
    assert len(rows) == 2
    members = {s["strategy"]["strategy_id"] for s in frontier["solutions"]}
    assert members == {sid for sid, r in rows.items() if r["is_pareto"]} and members
    for sid, row in rows.items():
        episode = json.loads((folder / f"episode_00{row['episode']}" / "results.json").read_text())
        assert episode["accuracy"] == pytest.approx(row["accuracy"])
        assert episode["model_size_gb"] == pytest.approx(row["model_size_gb"])
        assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_ms"] > 0 and row["memory_gb"] > 0
        assert (folder / f"episode_00{row['episode']}" / "model" / "config.json").exists()
    baseline = store.baseline("tiny_exp")
    assert baseline["compression_ratio"] == pytest.approx(1.0)
    int8 = next(r for r in rows.values() if r["methods"] == "int8")
    assert int8["compression_ratio"] > 1.0
    html = (folder / "pareto_visualization.html").read_text()
    assert "plotly" in html.lower() and "updatemenus" in html


def test_runs_are_recorded_on_the_dagster_instance(finished_run):
    from dagster import AssetKey, DagsterInstance

    instance = DagsterInstance.get()
    assert "tiny_exp" in instance.get_dynamic_partitions("experiments")
    # candidates are partitioned experiment x strategy (partitions.py): each run materialized its own cell
    assert {"ep001_gptq_w4g64_act", "ep002_int8_dynamic"} <= set(instance.get_dynamic_partitions("strategies"))
    for key in ("compressed_variant", "benchmark_result"):
        done = {k for k in instance.get_materialized_partitions(AssetKey(key)) if k.startswith("tiny_exp|")}
        assert done == {"tiny_exp|ep001_gptq_w4g64_act", "tiny_exp|ep002_int8_dynamic"}, key
    for key in ("model_spec", "baseline", "compressed_variant", "benchmark_result", "pareto_frontier"):
        assert instance.get_latest_materialization_event(AssetKey(key)) is not None, key
    from dagster import RunsFilter

    runs = instance.get_runs(RunsFilter(tags={"greenai/experiment": "tiny_exp"}))
    by_job = {}
    for run in runs:                      # named jobs, not __ASSET_JOB; tagged with experiment and candidate
        by_job.setdefault(run.job_name, []).append(run)
    assert set(by_job) == {"setup", "candidate", "frontier", "frontier_full_set"}
    assert len(by_job["candidate"]) == 2 and len(by_job["frontier"]) == 2
    assert {r.tags["greenai/candidate"] for r in by_job["candidate"]} == {
        "tiny_exp/ep001_gptq_w4g64_act", "tiny_exp/ep002_int8_dynamic"}
    assert all(r.tags["greenai/source"] == "cli" for r in runs)


def test_finished_experiment_is_not_run_again(finished_run, tiny_model_dir, tiny_benchmark, data_root):
    from greenai_dagster.runner import run_experiment

    config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=2, name="tiny_exp",
                              output_dir=str(data_root / "experiments"), eval=FAST_EVAL)
    outcome = run_experiment(config, echo=lambda _: None)
    assert outcome["resumed"] is False and outcome["termination_reason"] == "max_episodes_reached"
    assert len(ResultsStore(duckdb_path()).results("tiny_exp")) == 2


def test_analyze_prints_the_frontier(finished_run, capsys):
    from greenai_dagster.cli import main

    _, _, folder = finished_run
    assert main(["analyze", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Pareto frontier" in out and "(baseline)" in out
    assert main(["analyze", str(folder), "--format", "detailed"]) == 0
    detailed = capsys.readouterr().out
    assert "ep001_gptq_w4g64_act" in detailed and "ep002_int8_dynamic" in detailed and "reasoning:" in detailed
    assert main(["analyze", str(folder), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["final_results"]["episodes_completed"] == 2


def test_query_reads_duckdb(finished_run, capsys):
    from greenai_dagster.cli import main

    assert main(["query", "SELECT strategy_id FROM results WHERE experiment = 'tiny_exp' AND is_pareto"]) == 0
    assert "ep00" in capsys.readouterr().out


def test_export_packs_a_checkpoint_that_reloads(finished_run, tmp_path):
    import tarfile

    from greenai_dagster.cli import main
    from greenai_dagster.core.models.checkpoints import load_variant

    out = tmp_path / "model.tar.gz"
    assert main(["export", "tiny_exp", "ep002_int8_dynamic", "-o", str(out)]) == 0
    with tarfile.open(out) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    model, _ = load_variant(tmp_path / "unpacked" / "ep002_int8_dynamic")
    assert model.config.num_hidden_layers == 2


def test_each_episode_reports_fidelity_accuracy_interval_and_frontier(finished_run):
    _, lines, _ = finished_run
    assert sum(line.startswith("[Fidelity] KL: ") and "(held-out prose)" in line for line in lines) == 2
    assert sum(line.startswith("[Fidelity] KL on the baseline's own samples") for line in lines) == 2
    assert any(line.startswith("[Evaluation] Accuracy: ") and "95% CI" in line and "vs baseline:" in line
               for line in lines)
    assert sum(line.startswith("[Frontier] ") for line in lines) == 2
    assert any(line.startswith("[Benchmark] baseline accuracy") for line in lines)
    rows = ResultsStore(duckdb_path()).results("tiny_exp", include_baseline=True)
    base = next(r for r in rows if r["is_baseline"])
    assert base["kl_divergence"] == 0.0 and base["top1_agreement"] == 1.0
    assert base["kl_sampled"] == 0.0 and base["top1_sampled"] == 1.0     # the baseline on its own samples
    for row in rows:
        assert row["kl_divergence"] >= 0.0 and row["fidelity_tokens"] == 511
        assert row["kl_sampled"] >= 0.0 and "sampled from the baseline" in row["conditions"]["sampled_text"]
        if not row["is_baseline"]:
            assert row["flips"]["items"] == 4 and row["flips"]["verdict"] in ("better", "worse", "no difference")


def test_a_candidate_beyond_the_quality_gate_is_degraded_and_kept_off_the_frontier(data_root, tiny_model_dir,
                                                                                    tiny_benchmark):
    from greenai_dagster.runner import run_experiment

    config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=1, name="tiny_gate",
                              output_dir=str(data_root / "experiments"), eval={**FAST_EVAL, "full_set_for_frontier": False},
                              constraints={"max_kl": 1e-12})
    lines: list[str] = []
    run_experiment(config, interactive=True, echo=lines.append)
    store = ResultsStore(duckdb_path())
    [row] = store.results("tiny_gate")
    assert row["degraded"] and "kl_divergence" in row["degraded_reason"]
    assert store.frontier("tiny_gate")["members"] == [] and not row["is_pareto"]
    assert any("degraded" in line and "kept off the frontier" in line for line in lines)
    frontier = json.loads((data_root / "experiments" / "tiny_gate" / "pareto_frontier.json").read_text())
    assert frontier["solutions"] == [] and frontier["excluded"][0]["reason"].startswith("kl_divergence")
