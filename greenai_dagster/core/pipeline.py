"""The steps of an experiment as plain functions; the Dagster assets are thin wrappers of these.

Each step takes the results store (where it writes) and the experiment's record (core/experiment.py: its
settings, folder, spec, baseline, facts and objectives, opened once by the driver), does its work, and
writes its outputs (DuckDB rows, JSON files, checkpoints) before returning, so a rerun resumes from what is
already written and a failure loses nothing earlier. No step looks its settings up by key.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from greenai_dagster.core.compress import compress_to_checkpoint
from greenai_dagster.core.data.benchmarks import hub_available, hub_unreachable, prepare_benchmark, resolve_source
from greenai_dagster.core.errors import CompressionFailed, DiskFull, ModelLoadError, OutOfMemory
from greenai_dagster.core.evaluation.energy import track_energy
from greenai_dagster.core.evaluation.evaluate import (accuracy, evaluate_checkpoint, fidelity_reference_path,
                                                      load_sampled_reference, make_reference, make_sampled_reference,
                                                      sampled_reference_path)
from greenai_dagster.core.evaluation.fidelity import load_reference
from greenai_dagster.core.evaluation.flips import above_chance, compare
from greenai_dagster.core.experiment import Experiment, open_experiment, resolve_objectives, unknown_experiment
from greenai_dagster.core.machine import device_slot
from greenai_dagster.core.machine.gpu_memory import StagePeaks
from greenai_dagster.core.methods import get_method
from greenai_dagster.core.methods.assess import build_spec
from greenai_dagster.core.models.checkpoints import load_variant
from greenai_dagster.core.models.loading import (load_config as load_model_config, load_model_and_tokenizer,
                                                 load_skeleton, resolve_model_path)
from greenai_dagster.core.models.memory import check_fits, is_out_of_memory
from greenai_dagster.core.models.spec import GIB, ModelSpec, weights_size_bytes
from greenai_dagster.core.reporting import report
from greenai_dagster.core.search import gate
from greenai_dagster.core.search.coordinator.space import check_method_names, require_usable
from greenai_dagster.core.search.pareto import summarise
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.store import ResultsStore, now
from greenai_dagster.core.strategy import Step, Strategy

BASELINE_SUFFIX = "baseline"
VARIANT_DIR = "model"


def experiment_of(candidate_key: str) -> str:
    return candidate_key.split("/", 1)[0]


def candidate_key(experiment: str, strategy_id: str) -> str:
    return f"{experiment}/{strategy_id}"


def experiment_dir(store: ResultsStore, name: str) -> Path:
    """The folder of experiment `name`, for callers that hold a name only (a driver's log folder, the
    family priors reading other experiments' specs); the steps use their record's `folder`."""
    folder = store.experiment_folder(name)
    if folder is None:
        raise unknown_experiment(name)
    return folder


def ensure_writable(folder: Path) -> None:
    """E007 early, before any work: the output folder must be creatable and writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DiskFull(f"output directory '{folder}' is not writable ({exc.strerror}).",
                       "Choose a writable --output-dir, or free disk space.") from exc


def validate_inputs(config: ExperimentConfig) -> None:
    """Fail fast, before any run: methods known (E005), model resolvable (E002/E006) and able to fit in
    memory (E003), benchmark known (E004/E006), folder writable (E007)."""
    check_method_names(config.compression_methods)
    ensure_writable(Path(config.output_dir))
    model_config = load_model_config(config.model, config.trust_remote_code)
    # E003 before loading: the spec loads on CPU
    check_fits(config.model, model_config, "cpu", torch.float32, config.trust_remote_code)
    benchmark = prepare_benchmark(config.dataset, config.benchmark_source, config.allow_code_execution)
    if not benchmark.offline and not hub_available():
        raise hub_unreachable(benchmark)


def required_spec(exp: Experiment) -> ModelSpec:
    """The experiment's model spec; a step after setup needs it (E002 if the setup never wrote it)."""
    if exp.spec is None:
        raise ModelLoadError(f"experiment '{exp.name}' has no model spec yet.",
                             "Run its setup first (`greenai run` does; in Dagster, the model_spec asset).")
    return exp.spec


def build_model_spec(store: ResultsStore, exp: Experiment, device: str = "cpu") -> ModelSpec:
    """Write the experiment's model_spec.json (the record opened before this step has no spec: reopen it).
    The model is built on the meta device: the spec reads shapes, never weights."""
    config = exp.config
    path = resolve_model_path(config.model)
    model = load_skeleton(path, trust_remote_code=exp.trust_remote_code)
    spec = build_spec(config.model, model, checkpoint_path=path if Path(path).is_dir() else None)

    report.write_json(exp.folder / "model_spec.json", spec.to_json())
    check_methods_fit(spec, config.compression_methods)   # E005 naming what this architecture cannot take
    require_usable(spec, config.compression_methods)      # E005 now, not "converged" after 0 episodes
    return spec


def check_methods_fit(spec: ModelSpec, requested: list[str] | None) -> None:
    """E005 before any long work when the config asks for a method this architecture cannot take."""
    refused = {m: spec.unsupported_methods[m] for m in requested or [] if m in spec.unsupported_methods}
    if refused:
        usable = sorted(m for m in requested if m not in refused)
        raise CompressionFailed(
            f"{spec.model_name} ({spec.architecture or spec.model_family}) cannot be compressed with "
            + "; ".join(f"'{m}': {why}" for m, why in refused.items()) + ".",
            f"Remove {', '.join(refused)} from compression_methods"
            + (f" (left: {', '.join(usable)})." if usable else "; model_spec.json lists the reasons."))


def _result_row(key: str, experiment: str, episode: int, strategy_id: str, methods: list[str], metrics,
                energy, baseline_size_gb: float, compression: dict | None, checkpoint: str) -> dict:
    compression = compression or {}
    # the baseline compresses nothing (0.0); a candidate whose compression went unmeasured has None
    compress_kwh = compression.get("compression_energy_kwh", 0.0) if compression else 0.0
    compress_co2 = compression.get("compression_co2_grams", 0.0) if compression else 0.0
    energy_errors = [e for e in (compression.get("energy_error"), energy.error) if e]
    if energy_errors:   # recorded with the row: why energy / CO2 are null
        metrics.conditions["energy_error"] = "; ".join(energy_errors)

    def total(a, b):
        return None if a is None or b is None else a + b

    return {
        "candidate_key": key, "experiment": experiment, "episode": episode, "strategy_id": strategy_id,
        "methods": "+".join(methods), "is_baseline": episode == 0,
        **{k: getattr(metrics, k) for k in ("accuracy", "accuracy_stderr", "latency_ms", "prefill_ms",
                                             "throughput_tokens_per_s", "memory_gb", "model_size_gb",
                                             "energy_j_per_token", "task_accuracy", "item_correct", "conditions",
                                             "eval_time_s")},
        "task_chance": metrics.task_chance,
        **{k: getattr(metrics.fidelity, k) for k in ("kl_divergence", "kl_stderr", "top1_agreement", "top1_stderr",
                                                      "ppl_ratio", "ppl_ratio_low", "ppl_ratio_high", "perplexity")},
        "fidelity_tokens": metrics.fidelity.tokens,
        **({"kl_sampled": metrics.fidelity_sampled.kl_divergence, "kl_sampled_stderr": metrics.fidelity_sampled.kl_stderr,
            "top1_sampled": metrics.fidelity_sampled.top1_agreement} if metrics.fidelity_sampled else {}),
        "compression_ratio": baseline_size_gb / metrics.model_size_gb if metrics.model_size_gb else None,
        "compression_time_s": compression.get("compression_time_s", 0.0),
        "compression_energy_kwh": compress_kwh, "compression_co2_grams": compress_co2,
        "eval_energy_kwh": energy.energy_kwh, "eval_co2_grams": energy.co2_grams,
        "energy_kwh": total(compress_kwh, energy.energy_kwh), "co2_grams": total(compress_co2, energy.co2_grams),
        "checkpoint_path": checkpoint,
    }


def evaluate_baseline(store: ResultsStore, exp: Experiment, device: str = "cpu") -> dict:
    """Evaluate the uncompressed model once per experiment; later calls reuse the stored row. Writes the
    baseline row and the benchmark's facts (so the resolved objectives): reopen the record to see them."""
    name, config = exp.name, exp.config
    existing = store.baseline(name)
    if existing is not None:
        return existing
    spec = required_spec(exp)
    path = resolve_model_path(config.model)
    benchmark = prepare_benchmark(config.dataset, config.benchmark_source, config.allow_code_execution)
    peaks = StagePeaks(device)   # peak CUDA memory of the load and the references (core.machine.gpu_memory)
    load_started = time.perf_counter()
    with peaks.stage("load"):
        model, tokenizer = load_variant(path, device=device, trust_remote_code=exp.trust_remote_code)
    load_time = time.perf_counter() - load_started
    settings = config.eval.settings()
    with track_energy(config.country_iso_code) as energy:
        reference_started = time.perf_counter()
        # a forward pass: may overlap compression, never a probe
        with device_slot.shared(device), peaks.stage("reference"):
            reference = make_reference(model, tokenizer, settings,
                                       fidelity_reference_path(exp.folder))
            sampled = make_sampled_reference(model, tokenizer, settings, sampled_reference_path(exp.folder))
        reference_s = time.perf_counter() - reference_started
        metrics = evaluate_checkpoint(Path(path), model, tokenizer, benchmark, settings, reference, device,
                                      sampled_reference=sampled, trust_remote_code=exp.trust_remote_code)
    metrics.conditions.setdefault("seconds", {})["reference"] = round(reference_s, 1)
    peaks.record(metrics.conditions)
    if not Path(path).is_dir():
        metrics.model_size_gb = spec.model_size_gb
    row = _result_row(candidate_key(name, BASELINE_SUFFIX), name, 0, BASELINE_SUFFIX, [], metrics, energy,
                      metrics.model_size_gb, None, path)
    row["load_time_s"] = load_time
    row["degraded"], row["degraded_reason"] = False, None
    store.set_facts(name, benchmark_facts(metrics.item_correct, metrics.task_chance, config))
    store.write_result(row)
    return store.baseline(name)


def benchmark_facts(item_correct: dict, chance: dict, config: ExperimentConfig) -> dict:
    """Can this benchmark tell the baseline from chance at the proxy size? If not, quality is ranked
    by fidelity alone (accuracy stays in the reports, off the frontier objectives)."""
    test = above_chance(item_correct, chance)
    in_use = list(resolve_objectives(config, {"benchmark_discriminates": test["above_chance"]}))
    note = (f"baseline accuracy {test['accuracy']:.3f} vs chance {test['chance']:.3f} on {test['items']} items "
            f"(one-sided z-test p = {test['p_value']:.2g})" if test["items"] else "no scored items")
    if not test["above_chance"]:
        note += ": the benchmark cannot tell the baseline from chance at this size; quality is ranked by fidelity"
    return {"benchmark_discriminates": test["above_chance"], "above_chance": test, "benchmark_note": note,
            "objectives": in_use}


def compress_candidate(store: ResultsStore, exp: Experiment, key: str, device: str = "cpu") -> dict:
    """Apply the candidate's strategy to the base model; the checkpoint lands in its episode folder."""
    record = store.strategy(key)
    config = exp.config
    strategy = Strategy.from_json(record["strategy"])
    out_dir = report.episode_dir(exp.folder, record["episode"]) / VARIANT_DIR
    report.write_json(out_dir.parent / "strategy.json", strategy.to_json())
    store.set_strategy_status(key, "compressing")
    try:
        # compression may overlap other compressions and scoring, never a latency probe (core.machine.device_slot)
        with device_slot.shared(device) as slot:
            info = compress_to_checkpoint(resolve_model_path(config.model), strategy, required_spec(exp),
                                          out_dir, device=device, country_iso_code=config.country_iso_code,
                                          trust_remote_code=exp.trust_remote_code)
        info["slot_wait_s"] = round(slot.wait_s, 3)
    except Exception as exc:
        store.set_strategy_status(key, "failed", str(exc))
        raise
    store.set_strategy_status(key, "compressed")
    return {**info, "checkpoint_path": str(out_dir), "size_gb": weights_size_bytes(out_dir) / GIB}


def benchmark_candidate(store: ResultsStore, exp: Experiment, key: str, device: str = "cpu") -> dict:
    """Evaluate a compressed candidate against the experiment's baseline (the record must have been opened
    after the baseline was scored: its baseline row and facts decide the ratios and the quality gate)."""
    name, config, baseline = exp.name, exp.config, exp.baseline
    if baseline is None:
        raise ModelLoadError(f"experiment '{name}' has no baseline yet, so {key} has nothing to be compared with.",
                             "Run its setup first (`greenai run` does; in Dagster, the baseline asset).")
    record = store.strategy(key)
    folder = report.episode_dir(exp.folder, record["episode"]) / VARIANT_DIR
    compression = json.loads((folder / "greenai_variant.json").read_text())
    benchmark = prepare_benchmark(config.dataset, config.benchmark_source, config.allow_code_execution)
    reference = load_reference(fidelity_reference_path(exp.folder))
    peaks = StagePeaks(device)   # peak CUDA memory of loading the variant (core.machine.gpu_memory)
    load_started = time.perf_counter()
    with peaks.stage("load"):
        model, tokenizer = load_variant(folder, device=device, trust_remote_code=exp.trust_remote_code)
    load_time = time.perf_counter() - load_started
    try:
        with track_energy(config.country_iso_code) as energy:
            metrics = evaluate_checkpoint(folder, model, tokenizer, benchmark, config.eval.settings(), reference,
                                          device, sampled_reference=load_sampled_reference(exp.folder),
                                          trust_remote_code=exp.trust_remote_code)
    except Exception as exc:
        if is_out_of_memory(exc) and not isinstance(exc, OutOfMemory):   # E003 for this candidate, recorded
            exc = OutOfMemory(f"evaluating {key} ran out of memory ({str(exc).strip()[:200]}).")
        store.set_strategy_status(key, "failed", str(exc))
        raise exc
    peaks.record(metrics.conditions, earlier=compression)   # compression's stages first, as they ran
    strategy = record["strategy"]
    row = _result_row(key, name, record["episode"], strategy["strategy_id"], strategy["methods"], metrics, energy,
                      baseline["model_size_gb"], compression, str(folder))
    row["load_time_s"] = compression.get("load_time_s", 0.0) + load_time
    flips = compare(baseline.get("item_correct") or {}, metrics.item_correct)
    row["flips"] = flips.to_json() if flips else None
    row["degraded_reason"] = gate.degraded_reason(
        row, config.constraints, benchmark_discriminates=bool(exp.facts.get("benchmark_discriminates")),
        comparisons=config.episodes)
    row["degraded"] = row["degraded_reason"] is not None
    store.write_result(row)
    store.set_strategy_status(key, "done")
    report.write_episode(exp.folder, record["episode"], strategy, row)
    return store.result(key)


def frontier_summary(store: ResultsStore, exp: Experiment):
    """The frontier over the experiment's current results, on its resolved objectives and constraints."""
    return summarise(store.results(exp.name), store.baseline(exp.name), exp.objectives,
                     constraints=exp.config.constraints)


def update_frontier(store: ResultsStore, exp: Experiment):
    name = exp.name
    summary = frontier_summary(store, exp)
    members = [m["candidate_key"] for m in summary.members]
    store.write_frontier(name, members, summary.hypervolume, len(store.results(name)))
    summary = frontier_summary(store, exp)           # rows now carry is_pareto
    strategies = {s["candidate_key"]: s["strategy"] for s in store.strategies(name)}
    report.write_frontier_files(exp.folder, name, store.results(name), strategies,
                                store.baseline(name), summary, exp.facts)
    return summary


def wants_full_set(config: ExperimentConfig, device: str) -> bool:
    """`eval.full_set_for_frontier`: true/false as set; unset means on an accelerator only (on this
    kind of CPU a full pass over a 250-item-per-task benchmark takes tens of minutes per model)."""
    setting = config.eval.full_set_for_frontier
    return device != "cpu" if setting is None else setting


def evaluate_full_set(store: ResultsStore, exp: Experiment, key: str, device: str = "cpu") -> dict:
    """Score one stored result (baseline or candidate) of the experiment on every item of the benchmark."""
    row = store.result(key)
    config = exp.config
    benchmark = prepare_benchmark(config.dataset, config.benchmark_source, config.allow_code_execution)
    model, tokenizer = load_variant(row["checkpoint_path"], device=device, trust_remote_code=exp.trust_remote_code)
    settings = config.eval.settings()
    settings.limit_per_task = None
    started = time.perf_counter()
    with device_slot.shared(device):
        result = accuracy(model, tokenizer, benchmark, settings)
    store.write_full_accuracy(key, result.accuracy, result.stderr, result.per_task, time.perf_counter() - started)
    return store.result(key)


def evaluate_frontier_full_set(store: ResultsStore, exp: Experiment, device: str = "cpu") -> list[dict]:
    """The baseline and every frontier member not yet scored on the full set (resumable)."""
    keys = [candidate_key(exp.name, BASELINE_SUFFIX), *(store.frontier(exp.name) or {}).get("members", [])]
    done = []
    for key in keys:
        row = store.result(key)
        if row is not None and row.get("accuracy_full") is None:
            row = evaluate_full_set(store, exp, key, device)
        if row is not None:
            done.append(row)
    update_frontier(store, exp)   # rewrite the frontier files with the full-set figures
    return done


def finish_experiment(store: ResultsStore, exp: Experiment, reason: str) -> dict:
    name = exp.name
    rows = store.results(name)
    baseline = store.baseline(name)
    strategies = {s["candidate_key"]: s["strategy"] for s in store.strategies(name)}
    summary = frontier_summary(store, exp)
    # the frontier files again: a run stopped by a full disk after the frontier's DuckDB update, before its
    # files, would otherwise finish without pareto_frontier.json / the chart (tests/robustness/test_faults_kill.py)
    report.write_frontier_files(exp.folder, name, rows, strategies, baseline, summary, exp.facts)
    final = report.write_final_results(exp.folder, {"name": name, "model": exp.config.model,
                                                    "dataset": exp.config.dataset},
                                       rows, strategies, baseline, summary, reason, exp.facts)
    store.finish_experiment(name, reason)
    return final


def elapsed_hours(exp: Experiment) -> float:
    """Wall hours since the experiment was created (the --budget clock)."""
    created = exp.created_at
    if hasattr(created, "to_pydatetime"):  # pandas Timestamp from DuckDB's dataframe
        created = created.to_pydatetime()
    return (now() - created.replace(tzinfo=None)).total_seconds() / 3600.0



def experiment_with_chosen_candidates(store: ResultsStore, config: ExperimentConfig,
                                      choices: list[tuple[str, dict]], reasoning: str) -> list[str]:
    """An experiment whose candidates a person (or a test, or a benchmark) chose instead of a coordinator:
    created, its model spec and baseline done, and one pending strategy registered per (method, parameter
    overrides), its parameters completed from the method's defaults. Returns the candidate keys, which a
    sweep (celery_sweep.candidate_sweep) then compresses and benchmarks."""
    config = config.model_copy(update={"benchmark_source": resolve_source(config.dataset, config.benchmark_source)})
    store.create_experiment(config.name, config.model, config.dataset, config.model_dump(), config.output_dir)
    build_model_spec(store, open_experiment(store, config.name))
    evaluate_baseline(store, open_experiment(store, config.name))     # reopened: now with its spec
    keys = []
    for episode, (method, overrides) in enumerate(choices, start=1):
        step = Step(method, {**get_method(method).Params().model_dump(), **overrides})
        strategy = Strategy(Strategy(strategy_id="", steps=[step]).label(), [step], reasoning=reasoning)
        key = candidate_key(config.name, strategy.strategy_id)
        store.add_strategy(key, config.name, episode, strategy.to_json())
        keys.append(key)
    return keys
