"""`greenai run`: execute an experiment's state machine (core/engine.py) as real Dagster runs.

The engine says what the experiment needs next (setup, candidate, frontier, full_set, finish); this
driver runs that action's named asset job in-process on the persistent Dagster instance, with the
partition key and `greenai/run` run key the coordinator sensor would use, so every run shows in the
Dagster UI exactly as the sensor's do, and feeds the run's outcome back to the engine. Execution is
in-process (not `instance.submit_run`) so that `greenai run` needs no daemon or webserver; the sensor
(sensors.py) is the queued, daemon-run driver of the same engine.

Library output during a run (per-layer GPTQ metrics from loguru, tqdm bars, loader warnings) is written
to `<experiment>/logs/<job>-<run id>.log`, recorded on the run (tag `greenai/log_file`; each step names it
in its Dagster log, and a failed step in its failure's metadata: assets/_errors.py); the terminal shows only
the progress lines below.
A step that fails with the project's error raises Dagster's `Failure` with the error as metadata
(assets/_errors.py); the run's failure event gives it back here as the same class (`step_error`).
Only Dagster's public API is used.
Re-running with the same --name resumes: finished episodes are kept, unfinished ones re-run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, TextIO

from dagster import DagsterInstance, ExecuteInProcessResult

from greenai_dagster.core import engine, pipeline
from greenai_dagster.core.engine import RunState
from greenai_dagster.core.errors import DiskFull, EvaluationError, GreenAIError, UnexpectedError, from_record
from greenai_dagster.core.evaluation.flips import interval_text
from greenai_dagster.core.experiment import open_experiment
from greenai_dagster.core.redact import redact
from greenai_dagster.core.search import gate
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.storage.store import ResultsStore
from greenai_dagster.definitions import defs
from greenai_dagster.gpu_pool import ensure_gpu_pool
from greenai_dagster.instance import (CANDIDATE_TAG, EXPERIMENT_TAG, LOG_FILE_TAG, RUN_KEY_TAG, SOURCE_TAG,
                                      dagster_instance)
from greenai_dagster.observations import record_finish
from greenai_dagster.partitions import add_candidate_partitions, candidate_partition, experiments_partitions
from greenai_dagster.resources import open_store, resources_for


@contextlib.contextmanager
def library_output_to(path: Path | None) -> Iterator[None]:
    """Send everything written to file descriptors 1 and 2 (loguru's sinks, tqdm, warnings, C extensions)
    to `path` while the block runs; the caller keeps the terminal for its own lines (`terminal_echo`)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(path, "ab") as sink:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                for fd, original in saved.items():
                    os.dup2(original, fd)
    finally:
        for original in saved.values():
            os.close(original)


def terminal_echo() -> tuple[Callable[[str], None], TextIO | None]:
    """print() to the terminal even while file descriptor 1 points at a run's log file."""
    try:
        real = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):
        real = False
    if not real:   # stdout already replaced (pytest's capsys, a notebook): dup2 does not touch it
        return (lambda line: print(line, flush=True)), None
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    return (lambda line: print(line, file=terminal, flush=True)), terminal


# The CLI prints its own progress; Dagster's per-event console log stays in the UI's run view.
# A failed step's error comes back as the project's error (`step_error`), printed by the CLI as its E00N line;
# Dagster's own console line for it would add a stack trace, so the console shows nothing below CRITICAL (the
# UI keeps everything).
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _run_stage(job_name: str, partition_key: str, instance: DagsterInstance, resources: dict,
               run_key: str | None = None, logs: Path | None = None) -> float:
    """Run one stage's named job for one partition (an experiment name, or a candidate key `<exp>/<strategy>`,
    run as the (experiment, strategy) partition after registering both keys); re-raise the project's own error
    if a step failed. With `logs`, the libraries' output goes to `<logs>/<job>-<run id>.log`, named on the run.
    The job is the project's own (definitions.py `defs`); `resources` (the deployment's set resolved now by
    `resources_for()`, or a test's) replace the ones `defs` bound when it was imported."""
    started = time.perf_counter()
    experiment = pipeline.experiment_of(partition_key)
    tags = {SOURCE_TAG: "cli", EXPERIMENT_TAG: experiment}
    if run_key:
        tags[RUN_KEY_TAG] = run_key
    dagster_partition: str = partition_key
    if "/" in partition_key:
        tags[CANDIDATE_TAG] = partition_key
        add_candidate_partitions(instance, [partition_key])
        dagster_partition = candidate_partition(partition_key)
    run_id = str(uuid.uuid4())
    log_file = logs / f"{job_name}-{run_id}.log" if logs is not None else None
    if log_file is not None:
        tags[LOG_FILE_TAG] = str(log_file)
    with library_output_to(log_file):
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, partition_key=dagster_partition, raise_on_error=False, tags=tags,
            run_config=QUIET_RUN_CONFIG, run_id=run_id, resources=resources)
    if not result.success:
        if was_interrupted(result):   # SIGTERM / Ctrl-C while a step ran: an interruption, not a bug (E000)
            raise KeyboardInterrupt(f"the run for {partition_key} was interrupted")
        raise step_error(result, partition_key)
    return time.perf_counter() - started


INTERRUPTIONS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")


def was_interrupted(result: ExecuteInProcessResult) -> bool:
    """Whether a step failed because the process was told to stop (Dagster turns SIGTERM and SIGINT into
    DagsterExecutionInterruptedError inside a step), so the caller says "interrupted" and keeps what is written."""
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            if error.cls_name in INTERRUPTIONS:
                return True
            error = error.cause
    return False


def step_error(result: ExecuteInProcessResult, partition_key: str) -> GreenAIError:
    """The project's error a failed run ended with: a blocking check that failed (what it found, E004), else
    the first failed step's error, rebuilt as its own class from the failure's metadata (assets/_errors.py),
    else E000 with the first line of what a step raised (a bug: the traceback is in the UI)."""
    for event in result.all_events:   # a blocking check that failed: say what it found
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            evaluation = event.event_specific_data
            found = evaluation.metadata.get("problems")
            problems = found.value if found is not None else []
            return EvaluationError(
                f"the result of {partition_key} failed the check {evaluation.check_name}: "
                f"{'; '.join(map(str, problems)) or 'see the Dagster UI'}.",
                "The figures are impossible (NaN/inf or out of range), so the candidate is recorded as failed and "
                "kept off the frontier; check the method and the evaluation settings.")
    for event in result.get_step_failure_events():
        failure = event.step_failure_data
        metadata = failure.user_failure_data.metadata if failure.user_failure_data is not None else {}
        if "code" in metadata:
            return from_record({key: value.value for key, value in metadata.items()})
        error = (failure.error.cause or failure.error) if failure.error is not None else None
        message = error.message.strip() if error is not None else ""
        return UnexpectedError(message.splitlines()[0] if message else
                               f"a step of {partition_key} failed without a message.")
    return UnexpectedError(f"the Dagster run for {partition_key} failed without an error message.")


def run_experiment(config: ExperimentConfig, interactive: bool = False, echo: Callable[[str], None] | None = None) -> dict:
    """Create (or resume) the experiment, then execute the engine's actions until it finishes."""
    terminal = None
    if echo is None:
        echo, terminal = terminal_echo()
    raw_echo = echo
    echo = lambda line: raw_echo(redact(line))   # noqa: E731 - progress lines never carry a secret
    try:
        return _drive(config, interactive, echo)
    finally:
        if terminal is not None:
            terminal.close()


def _drive(config: ExperimentConfig, interactive: bool, echo: Callable[[str], None]) -> dict:
    run_started = time.perf_counter()
    resources = resources_for()
    store = open_store(resources)     # E007 now if the deployment's store is not configured
    name, config, existing = engine.create_experiment(store, config)
    if existing is not None and existing["status"] != "active":
        echo(f"Experiment {name} already finished ({existing['termination_reason']}); results are in {existing['output_dir']}/{name}")
        return {"experiment": name, "termination_reason": existing["termination_reason"], "resumed": False}
    if existing is not None:
        echo(f"Resuming experiment {name}")
    instance = dagster_instance()
    ensure_gpu_pool(instance, resources["gpu"].gpu_count())   # one GPU step per GPU (pool `gpu`)
    device = resources["gpu"].device_name()
    instance.add_dynamic_partitions(experiments_partitions.name, [name])
    logs = engine.log_dir(store, name)

    statuses: dict[str, RunState] = {}     # the runs this invocation launched, by run key
    introduced = False
    pending_report = None                   # a finished candidate, reported once its frontier is in
    while True:
        if not introduced and store.baseline(name) is not None:
            introduce(config, name, store, echo)
            introduced = True
        action = engine.next_action(store, name, statuses.get, device)
        if action.extra.get("coordinator_note"):
            echo(f"[Coordinator] {action.extra['coordinator_note']}")
        if action.kind == "wait":    # runs here are synchronous: nothing can be in flight
            raise UnexpectedError(f"experiment {name} waits on a run this process did not launch ({action.note}).")
        if action.kind == "finish":
            break
        engine.apply(store, action)
        if action.kind == "fail":   # its step recorded the failure itself only when it got that far
            echo(f"[Episode {action.episode}] {action.strategy.strategy_id} failed: {action.error}")
            continue
        if action.kind == "candidate":
            if interactive:
                strategy = action.strategy
                echo(f"\n=== Episode {action.episode}/{config.episodes} ===")
                echo(f"[Coordinator] Decision: {', '.join(f'{s.method}({_fmt(s.params)})' for s in strategy.steps)}")
                echo(f'[Coordinator] Reasoning: "{strategy.reasoning}"')
            pending_report = (action, set((store.frontier(name) or {}).get("members", [])))
        if action.kind == "full_set":
            echo("Scoring the baseline and the frontier members on the full benchmark set ...")
        try:
            _run_stage(action.job_name, action.partition_key, instance, resources, run_key=action.run_key, logs=logs)
        except DiskFull as exc:   # no later candidate can be written either: stop; a rerun retries this one
            if action.kind == "candidate":
                store.set_strategy_status(action.partition_key, "pending", str(exc))
            raise
        except GreenAIError as exc:
            if action.kind != "candidate":
                raise
            statuses[action.run_key] = RunState("failed", str(exc))
            engine.apply(store, engine.Action("fail", name, action.partition_key, action.run_key,
                                              episode=action.episode, strategy=action.strategy, error=str(exc)))
            echo(f"[Episode {action.episode}] {action.strategy.strategy_id} failed: {exc}")
            pending_report = None
            continue
        statuses[action.run_key] = RunState("success")
        if action.kind == "frontier" and pending_report is not None:
            report_candidate(store, name, *pending_report, interactive, echo)
            pending_report = None
        if action.kind == "full_set":
            for row in store.results(name, include_baseline=True):
                if row.get("accuracy_full") is not None:
                    echo(f"[Full set] {row['strategy_id']}: accuracy {row['accuracy_full']:.3f} "
                         f"(proxy {row['accuracy']:.3f}) in {row['full_eval_time_s']:.0f} s")

    reason = action.termination_reason
    full_set = pipeline.wants_full_set(config, device)
    if not full_set and config.eval.full_set_for_frontier is None:
        echo("Full-set scoring of the frontier is off on CPU by default; --full-eval turns it on (a full "
             "bigbench_hard pass is about 30 min per model on a 2-core CPU).")
    final = engine.apply(store, action)
    record_finish(instance, name, final, full_set)
    timings = wall_time_split(store, name, time.perf_counter() - run_started)
    echo(f"\nFinished {name}: {final['episodes_completed']} episodes, termination: {reason}")
    echo(f"Frontier: {final['frontier_summary']['num_solutions']} solutions; results in "
         f"{pipeline.experiment_dir(store, name)}")
    echo("Wall time: {total_s:.0f} s = load {load_s:.0f} + compress {compress_s:.0f} + evaluate {evaluate_s:.0f} "
         "+ orchestration {orchestration_s:.0f}".format(**timings))
    return {"experiment": name, "termination_reason": reason, "timings": timings, "final": final}


def introduce(config: ExperimentConfig, name: str, store: ResultsStore, echo: Callable[[str], None]) -> None:
    """The lines said once the baseline is in: model, spec limits, baseline figures, benchmark, objectives."""
    spec = pipeline.required_spec(open_experiment(store, name))
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
         f"{', '.join(f'{k} <= {v:g}' for k, v in gate.bounds(config.constraints).items())}"
         + (f", accuracy drop <= {float(config.constraints.get('max_accuracy_drop', gate.DEFAULT_MAX_ACCURACY_DROP)):g}"
            " where McNemar says worse (Bonferroni over the episodes)" if facts.get("benchmark_discriminates") else ""))


def report_candidate(store: ResultsStore, name: str, action: engine.Action, frontier_before: set, interactive: bool,
                     echo: Callable[[str], None]) -> None:
    """One finished episode's figures (interactive) and what it did to the frontier."""
    key, strategy = action.partition_key, action.strategy
    row = store.result(key)
    frontier_after = set((store.frontier(name) or {}).get("members", []))
    if interactive:
        echo(f"[Compression] Compression ratio: {row['compression_ratio']:.2f}x in {row['compression_time_s']:.1f} s")
        echo(f"[Fidelity] KL: {row['kl_divergence']:.4f} ± {row['kl_stderr'] or 0:.4f} nats/token | "
             f"top-1 agreement: {row['top1_agreement']:.3f} | perplexity x{row['ppl_ratio']:.3f} "
             f"[{row['ppl_ratio_low']:.3f}, {row['ppl_ratio_high']:.3f}] (held-out prose)")
        if row.get("kl_sampled") is not None:
            echo(f"[Fidelity] KL on the baseline's own samples (16 domains): {row['kl_sampled']:.4f} ± "
                 f"{row['kl_sampled_stderr'] or 0:.4f} nats/token | top-1 agreement: {row['top1_sampled']:.3f}")
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


def spec_notes(spec) -> list[str]:
    """What the spec found that limits this model's search space, said once at the start of a run."""
    lines = [f"[Spec] {spec.group_size_note}"] if spec.group_size_note else []
    lines += [f"[Spec] left out for {spec.architecture or spec.model_family}: {method}: {why}"
              for method, why in spec.unsupported_methods.items()]
    return lines


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
