"""Drive one experiment as a sequence of real Dagster runs on the persistent instance.

Used by `greenai run`. Each stage is an in-process execution of the project's named asset job for
that stage with a partition key, so every run shows in the Dagster UI exactly as if launched there:
  1. `setup`: model_spec + baseline                                  (experiment partition)
  2. per episode `candidate`: compressed_variant + benchmark_result  (candidate partition), then `frontier`
  3. `frontier_full_set` where the final frontier is scored on the full set
Re-running with the same --name resumes: finished episodes are kept, unfinished ones re-run.
"""

from __future__ import annotations

import time
from typing import Callable

from dagster import DagsterInstance, Definitions

from greenai_dagster.core import gate, pipeline
from greenai_dagster.core.flips import interval_text
from greenai_dagster.core.benchmarks import resolve_source
from greenai_dagster.core.config import ExperimentConfig
from greenai_dagster.core.decide import decide_or_fall_back
from greenai_dagster.core.errors import DiskFull, EvaluationError, GreenAIError, UnexpectedError
from greenai_dagster.core.pipeline import validate_inputs
from greenai_dagster.core.paths import duckdb_path
from greenai_dagster.core.store import ResultsStore
from greenai_dagster.core.strategy import Strategy
from greenai_dagster.definitions import ALL_ASSETS, ALL_CHECKS
from greenai_dagster.instance import CANDIDATE_TAG, EXPERIMENT_TAG, SOURCE_TAG, dagster_instance
from greenai_dagster.jobs import STAGE_JOBS
from greenai_dagster.observations import record_finish
from greenai_dagster.partitions import candidates_partitions, experiments_partitions
from greenai_dagster.resources import resources_for


# The CLI prints its own progress; Dagster's per-event console log stays in the UI's run view.
# A failed step's error comes back as the project's E00N line (`_error_from_message`); Dagster's own console
# line for it would add a stack trace, so the console shows nothing below CRITICAL (the UI keeps everything).
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _run_stage(job_name: str, partition_key: str, instance: DagsterInstance, resources: dict) -> float:
    """Run one stage's named job for one partition; re-raise the project's own error if a step failed."""
    started = time.perf_counter()
    stage_defs = Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=list(STAGE_JOBS.values()),
                             resources=resources)
    experiment = pipeline.experiment_of(partition_key)
    tags = {SOURCE_TAG: "cli", EXPERIMENT_TAG: experiment}
    if "/" in partition_key:
        tags[CANDIDATE_TAG] = partition_key
    result = stage_defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=partition_key, raise_on_error=False, tags=tags, run_config=QUIET_RUN_CONFIG)
    if not result.success:
        for event in result.all_events:   # a blocking check that failed: say what it found
            if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
                evaluation = event.event_specific_data
                found = evaluation.metadata.get("problems")
                problems = found.value if found is not None else []
                raise EvaluationError(
                    f"the result of {partition_key} failed the check {evaluation.check_name}: "
                    f"{'; '.join(map(str, problems)) or 'see the Dagster UI'}.",
                    "The figures are impossible (NaN/inf or out of range), so the candidate is recorded as failed and "
                    "kept off the frontier; check the method and the evaluation settings.")
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data.user_failure_data is None:
                error = event.step_failure_data.error
                cause = error.cause if error and error.cause else error
                message = cause.message.strip() if cause else "step failed"
                raise _error_from_message(message)
        raise UnexpectedError(f"the Dagster run for {partition_key} failed without an error message.")
    return time.perf_counter() - started


def _error_from_message(message: str) -> GreenAIError:
    """Rebuild the project's error from the failure text Dagster recorded (`E00N: ... Remedy: ...`)."""
    from greenai_dagster.core import errors

    text = message.split(": ", 1)[-1] if message.startswith(("greenai", "Greenai")) else message
    for cls in errors.GreenAIError.__subclasses__():
        marker = f"{cls.code}: "
        if marker in text:
            body = text.split(marker, 1)[1]
            what, _, remedy = body.partition(" Remedy: ")
            return cls(what.strip(), remedy.strip().splitlines()[0] if remedy else None)
    return errors.UnexpectedError(text.splitlines()[0] if text.strip() else "a step failed without a message.")


def run_experiment(config: ExperimentConfig, interactive: bool = False, echo: Callable[[str], None] = print) -> dict:
    from greenai_dagster.core.redact import redact

    raw_echo = echo
    echo = lambda line: raw_echo(redact(line))   # noqa: E731 - progress lines never carry a secret
    run_started = time.perf_counter()
    store = ResultsStore(duckdb_path())
    name = config.experiment_name()
    existing = store.experiment(name)
    if existing is not None and existing["status"] != "active":
        echo(f"Experiment {name} already finished ({existing['termination_reason']}); results are in {existing['output_dir']}/{name}")
        return {"experiment": name, "termination_reason": existing["termination_reason"], "resumed": False}
    if existing is not None:
        config = ExperimentConfig(**existing["config"])
        echo(f"Resuming experiment {name}")
    else:
        config = config.model_copy(update={"benchmark_source": resolve_source(config.dataset, config.benchmark_source)})
    validate_inputs(config)
    config.make_coordinator()  # E001 now, before any work, if the llm coordinator has no key
    store.create_experiment(name, config.model, config.dataset, config.model_dump(), config.output_dir)
    instance = dagster_instance()
    resources = resources_for()
    instance.add_dynamic_partitions(experiments_partitions.name, [name])

    _run_stage("setup", name, instance, resources)
    spec = pipeline.load_spec(store, name)
    baseline = store.baseline(name)
    echo(f"Experiment {name}: model {config.model} ({spec.parameter_count} params), benchmark {config.dataset}")
    for line in spec_notes(spec):
        echo(line)
    echo(f"[Baseline] Accuracy: {accuracy_text(baseline)} | Perplexity: {baseline['perplexity']:.2f} "
         f"({baseline['fidelity_tokens']} held-out tokens) | Latency: {baseline['latency_ms']:.1f} ms/token | "
         f"Memory: {baseline['memory_gb']:.3f} GB | Size: {baseline['model_size_gb']:.3f} GB")
    facts = store.facts(name)
    echo(f"[Benchmark] {facts.get('benchmark_note', '')}")
    echo(f"[Objectives] frontier over {', '.join(facts.get('objectives', []))}; quality gate "
         f"{', '.join(f'{k} <= {v:g}' for k, v in gate.bounds(config.constraints).items())}")

    coordinator = config.make_coordinator()
    while True:
        unfinished = [s for s in store.strategies(name) if s["status"] not in ("done", "failed")]
        if unfinished:  # resume an episode a killed run left behind
            record = unfinished[0]
            strategy = Strategy.from_json(record["strategy"])
            episode, key = record["episode"], record["candidate_key"]
        else:
            decision = decide_or_fall_back(store, name, coordinator)
            if decision.note:
                echo(f"[Coordinator] {decision.note}")
            if decision.termination_reason:
                reason = decision.termination_reason
                break
            strategy, episode = decision.proposal.strategy, decision.episode
            key = pipeline.candidate_key(name, strategy.strategy_id)
            store.add_strategy(key, name, episode, strategy.to_json())
        instance.add_dynamic_partitions(candidates_partitions.name, [key])
        if interactive:
            echo(f"\n=== Episode {episode}/{config.episodes} ===")
            echo(f"[Coordinator] Decision: {', '.join(f'{s.method}({_fmt(s.params)})' for s in strategy.steps)}")
            echo(f'[Coordinator] Reasoning: "{strategy.reasoning}"')
        frontier_before = set((store.frontier(name) or {}).get("members", []))
        try:
            _run_stage("candidate", key, instance, resources)
        except DiskFull as exc:   # no later candidate can be written either: stop; a rerun retries this one
            store.set_strategy_status(key, "pending", str(exc))
            raise
        except GreenAIError as exc:
            store.set_strategy_status(key, "failed", str(exc))
            echo(f"[Episode {episode}] {strategy.strategy_id} failed: {exc}")
            continue
        _run_stage("frontier", name, instance, resources)
        row = store.result(key)
        frontier_after = set((store.frontier(name) or {}).get("members", []))
        if interactive:
            echo(f"[Compression] Compression ratio: {row['compression_ratio']:.2f}x in {row['compression_time_s']:.1f} s")
            echo(f"[Fidelity] KL: {row['kl_divergence']:.4f} ± {row['kl_stderr'] or 0:.4f} nats/token | "
                 f"top-1 agreement: {row['top1_agreement']:.3f} | perplexity x{row['ppl_ratio']:.3f} "
                 f"[{row['ppl_ratio_low']:.3f}, {row['ppl_ratio_high']:.3f}]")
            flips = row.get("flips") or {}
            versus = (f" | vs baseline: {flips['verdict']} ({flips['correct_to_wrong']} right->wrong, "
                      f"{flips['wrong_to_correct']} wrong->right of {flips['items']}, McNemar p={flips['p_value']:.2g})"
                      if flips else "")
            echo(f"[Evaluation] Accuracy: {accuracy_text(row)}{versus}")
            echo(f"[Evaluation] Latency: {row['latency_ms']:.1f} ms/token | Memory: {row['memory_gb']:.3f} GB | "
                 f"Size: {row['model_size_gb']:.3f} GB | CO2: "
                 + (f"{row['co2_grams']:.3f} g" if row.get("co2_grams") is not None else
                    f"n/a ({(row.get('conditions') or {}).get('energy_error', 'not measured')})"))
        if row.get("degraded"):
            echo(f"[Frontier] {strategy.strategy_id}: degraded ({row['degraded_reason']}); kept off the frontier")
        elif key in frontier_after and key not in frontier_before:
            echo(f"[Frontier] {strategy.strategy_id} joined the Pareto frontier")
        elif interactive:
            echo(f"[Frontier] {strategy.strategy_id} is dominated; frontier unchanged"
                 if key not in frontier_after else f"[Frontier] {strategy.strategy_id} on the frontier")
    done = len(store.results(name))
    stored = store.frontier(name)
    if done and (stored is None or stored["episodes_seen"] < done):   # killed after a result, before its frontier
        _run_stage("frontier", name, instance, resources)
    full_set(config, name, store, instance, resources, echo)
    final = pipeline.finish_experiment(store, name, reason)
    record_finish(instance, name, final, pipeline.wants_full_set(config, resources["gpu"].device_name()))
    timings = wall_time_split(store, name, time.perf_counter() - run_started)
    echo(f"\nFinished {name}: {final['episodes_completed']} episodes, termination: {reason}")
    echo(f"Frontier: {final['frontier_summary']['num_solutions']} solutions; results in "
         f"{pipeline.experiment_dir(store, name)}")
    echo("Wall time: {total_s:.0f} s = load {load_s:.0f} + compress {compress_s:.0f} + evaluate {evaluate_s:.0f} "
         "+ orchestration {orchestration_s:.0f}".format(**timings))
    return {"experiment": name, "termination_reason": reason, "timings": timings, "final": final}


def spec_notes(spec) -> list[str]:
    """What the spec found that limits this model's search space, said once at the start of a run."""
    lines = [f"[Spec] {spec.group_size_note}"] if spec.group_size_note else []
    lines += [f"[Spec] left out for {spec.architecture or spec.model_family}: {method}: {why}"
              for method, why in spec.unsupported_methods.items()]
    return lines


def full_set(config: ExperimentConfig, name: str, store: ResultsStore, instance, resources: dict,
             echo: Callable[[str], None]) -> None:
    """Score the baseline and the final frontier on every benchmark item (the search used the proxy)."""
    if not pipeline.wants_full_set(config, resources["gpu"].device_name()):
        if config.eval.full_set_for_frontier is None:
            echo("Full-set scoring of the frontier is off on CPU by default; --full-eval turns it on (a full "
                 "bigbench_hard pass is about 30 min per model on a 2-core CPU).")
        return
    echo("Scoring the baseline and the frontier members on the full benchmark set ...")
    _run_stage("frontier_full_set", name, instance, resources)
    for row in store.results(name, include_baseline=True):
        if row.get("accuracy_full") is not None:
            echo(f"[Full set] {row['strategy_id']}: accuracy {row['accuracy_full']:.3f} "
                 f"(proxy {row['accuracy']:.3f}) in {row['full_eval_time_s']:.0f} s")


def wall_time_split(store: ResultsStore, name: str, total_s: float) -> dict:
    """This invocation's wall time split by what the stored rows say each stage took."""
    rows = store.results(name, include_baseline=True)
    load = sum(r.get("load_time_s") or 0.0 for r in rows)
    compress = sum(r.get("compression_time_s") or 0.0 for r in rows)
    evaluate = sum((r.get("eval_time_s") or 0.0) + (r.get("full_eval_time_s") or 0.0) for r in rows)
    return {"total_s": total_s, "load_s": load, "compress_s": compress, "evaluate_s": evaluate,
            "orchestration_s": max(total_s - load - compress - evaluate, 0.0)}


def accuracy_text(row: dict) -> str:
    return f"{row['accuracy']:.3f} ({interval_text(row['accuracy'], row.get('accuracy_stderr'))})"


def _fmt(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())
