"""Evaluate a checkpoint: fidelity to the baseline, accuracy (lm-eval), latency, memory, size.

Fidelity (KL divergence, top-1 agreement, perplexity ratio; `core.evaluation.fidelity`) is one forward pass
over held-out text against the baseline's stored reference. Accuracy goes through EleutherAI's
lm-eval on the prepared benchmark's tasks (our offline task YAMLs or lm-eval's own),
macro-averaged over tasks, with the standard error and each item's correctness (for flips
against the baseline, `core.evaluation.flips`). Latency and memory come from a fresh process
(`core.evaluation.runtime_probe`). Size is the bytes of the checkpoint's weight files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from greenai_dagster.core import runtimes
from greenai_dagster.core.data import humaneval
from greenai_dagster.core.data.benchmarks import PreparedBenchmark, hub_unreachable
from greenai_dagster.core.data.task_files import task_score
from greenai_dagster.core.errors import CompressionFailed, EvaluationError, OutOfMemory
from greenai_dagster.core.evaluation import fidelity, sampled_text
from greenai_dagster.core.evaluation.eval_settings import EvalSettings  # noqa: F401 - one class, core/evaluation/eval_settings.py
from greenai_dagster.core.evaluation.fidelity import Fidelity
from greenai_dagster.core.evaluation.flips import item_correctness
from greenai_dagster.core.machine import device_slot, process_failure
from greenai_dagster.core.machine.gpu_memory import StagePeaks
from greenai_dagster.core.machine.sandbox import isolation
from greenai_dagster.core.models.spec import GIB, weights_size_bytes


@dataclass
class AccuracyResult:
    accuracy: float
    stderr: float | None              # None: lm-eval reported no standard error ("N/A")
    per_task: dict[str, float]
    item_correct: dict[str, str]      # {task: "0110..."} in the task file's order (core.evaluation.flips)
    chance: dict[str, float]          # per task: mean 1/options for multiple choice, 0 for generation


@dataclass
class Metrics:
    accuracy: float
    accuracy_stderr: float | None
    task_accuracy: dict
    item_correct: dict
    task_chance: dict
    fidelity: Fidelity
    latency_ms: float                 # decode, ms per token, batch 1 (the frontier's latency)
    prefill_ms: float
    throughput_tokens_per_s: float | None   # None where the serving runtime has no batched generation
    memory_gb: float
    model_size_gb: float
    energy_j_per_token: float | None = None  # joules per decoded token (source in conditions.energy_source)
    conditions: dict = field(default_factory=dict)
    eval_time_s: float = 0.0
    fidelity_sampled: Fidelity | None = None   # on the baseline's own samples (core.evaluation.sampled_text); None when off

    def to_json(self) -> dict:
        return asdict(self)


def _no_env_info(results: dict) -> None:
    """Stands in for lm-eval's add_env_info (see run_lm_eval)."""


def run_lm_eval(model, tokenizer, benchmark: PreparedBenchmark, limit: int | None, batch_size: int,
                log_samples: bool = False) -> dict:
    """lm-eval's simple_evaluate on an in-memory model; hub failures become E006, others E004."""
    import lm_eval
    import lm_eval.evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    # lm-eval ends every run by collecting torch's environment report (`pip list` and other subprocesses,
    # about 3 s); nothing here reads it, and the conditions we report are recorded by us
    lm_eval.evaluator.add_env_info = _no_env_info
    # Our offline tasks need only their own folder: not indexing lm-eval's ~10k built-in task files
    # saves about 5 s per evaluation (benchmarks/vs_lm_eval.py).
    task_manager = (TaskManager(include_path=benchmark.include_path, include_defaults=False) if benchmark.include_path
                    else TaskManager())

    from lm_eval.api.model import LM

    if benchmark.executes_code and not benchmark.allow_code_execution:
        raise humaneval.refused(benchmark.name)
    # an lm-eval LM as is (llama.cpp's, core.evaluation.llama_cpp_scoring), a transformers model through HFLM
    lm = model if isinstance(model, LM) else HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                                                   device=str(next(model.parameters()).device))
    try:
        with humaneval.code_execution_allowed() if benchmark.executes_code else nullcontext():
            return lm_eval.simple_evaluate(
                model=lm, tasks=benchmark.tasks, limit=limit, task_manager=task_manager,
                log_samples=log_samples, verbosity="WARNING", random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                confirm_run_unsafe_code=benchmark.executes_code,
            )
    except EvaluationError:
        raise
    except Exception as exc:  # noqa: BLE001
        text = f"{type(exc).__name__}: {exc}"
        if not benchmark.offline and any(w in text.lower() for w in ("connect", "offline", "resolve", "hub")):
            raise hub_unreachable(benchmark) from exc
        raise EvaluationError(f"lm-eval failed on '{benchmark.name}': {text}".splitlines()[0]) from exc


def macro_score(results: dict, tasks: list[str]) -> tuple[float, float, dict]:
    """Mean over tasks of each task's score (acc, exact_match or pass@1), its stderr, and per task.
    The stderr is None (stored as null) when any task's stderr is unknown (lm-eval's "N/A")."""
    per_task, errors = {}, []
    for task in tasks:
        _, per_task[task], se = task_score(results[task])
        errors.append(se)
    mean = sum(per_task.values()) / len(per_task)
    stderr = None if any(e is None for e in errors) else math.sqrt(sum(e * e for e in errors)) / len(errors)
    return mean, stderr, per_task


def _sample_chance(samples: list[dict], output_type: str) -> float:
    """Chance rate of a task from lm-eval's logged requests: 1/options for multiple choice."""
    if output_type != "multiple_choice" or not samples:
        return 0.0
    return sum(1.0 / len(s["arguments"]) for s in samples) / len(samples)


def accuracy(model, tokenizer, benchmark: PreparedBenchmark, settings: EvalSettings) -> AccuracyResult:
    """Macro-averaged score over the benchmark's tasks, its stderr, per task, and per item.

    `settings.limit_per_task` items of each task (the stratified proxy: task files are written in
    a seeded stratified order; raised to the benchmark's floor for a user's one-task file), or every
    item when it is None (the full set)."""
    limit = benchmark.proxy_limit(settings)
    output = run_lm_eval(model, tokenizer, benchmark, limit, settings.batch_size, log_samples=True)
    mean, stderr, per_task = macro_score(output["results"], benchmark.tasks)
    samples = {t: output["samples"].get(t, []) for t in benchmark.tasks}
    metric_of = {t: task_score(output["results"][t])[0] for t in benchmark.tasks}
    types = {t: output.get("configs", {}).get(t, {}).get("output_type", "") for t in benchmark.tasks}
    return AccuracyResult(mean, stderr, per_task, item_correctness(samples, metric_of),
                          {t: _sample_chance(samples[t], types[t]) for t in benchmark.tasks})


SAMPLED_REFERENCE_FILE = "fidelity_reference_sampled.safetensors"


def fidelity_reference_path(experiment_dir: Path) -> Path:
    return Path(experiment_dir) / fidelity.REFERENCE_FILE


def make_reference(model, tokenizer, settings: EvalSettings, path: Path) -> dict:
    """The baseline's reference distributions on held-out text, computed once and stored."""
    if path.exists():
        return fidelity.load_reference(path)
    text, source = fidelity.held_out_text(settings.fidelity_text)
    windows = fidelity.token_windows(tokenizer, text, settings.fidelity_tokens)
    reference = fidelity.build_reference(model, windows)
    fidelity.save_reference(reference, path, source)
    return reference


def sampled_reference_path(experiment_dir: Path) -> Path:
    return Path(experiment_dir) / SAMPLED_REFERENCE_FILE


def make_sampled_reference(model, tokenizer, settings: EvalSettings, path: Path) -> dict | None:
    """The baseline's reference on text it sampled itself (`core.evaluation.sampled_text`), drawn once and stored:
    every candidate is scored on the same tokens. None when `settings.sampled_tokens` is 0."""
    if not settings.sampled_tokens:
        return None
    if path.exists():
        return fidelity.load_reference(path)
    windows = sampled_text.sample_windows(model, tokenizer, settings.sampled_tokens)
    reference = fidelity.build_reference(model, windows)
    fidelity.save_reference(reference, path, sampled_text.source(*windows.shape))
    return reference


def load_sampled_reference(experiment_dir: Path) -> dict | None:
    """The stored sampled reference; None for an experiment begun with it off (or before it existed)."""
    path = sampled_reference_path(experiment_dir)
    return fidelity.load_reference(path) if path.exists() else None


def runtime(checkpoint: Path, device: str, settings: EvalSettings, trust_remote_code: bool = False) -> dict:
    """Latency and memory of `checkpoint` in the fastest runtime that serves it here (`core.runtimes`),
    measured in a fresh process. A runtime that fails (a conversion it cannot do) hands over to the
    next, and the row says why (`runtime_fallback`); eager PyTorch serves everything last. The user's
    `trust_remote_code` opt-in is handed to the measuring process on its command line."""
    candidates, failures = runtimes.serving_candidates(Path(checkpoint), device)
    for candidate in candidates:
        try:
            with device_slot.shared(device):      # conversions happen here, outside the measuring process
                candidate.prepare(Path(checkpoint))
            run = _probe(checkpoint, device, settings, candidate.name, trust_remote_code)
        except OutOfMemory:
            raise
        except (EvaluationError, CompressionFailed) as exc:
            failures.append(f"{candidate.name}: {exc.message}")
            continue
        if failures:
            run["runtime_fallback"] = failures
        return run
    raise EvaluationError(f"no runtime could serve {checkpoint}: {'; '.join(failures) or 'none serves it'}")


def _probe(checkpoint: Path, device: str, settings: EvalSettings, runtime_name: str,
           trust_remote_code: bool = False) -> dict:
    """One measuring process, run while this device's slot is held alone (`core.machine.device_slot`): no
    compression, scoring or other probe shares the device meanwhile. The process is handed the lock's
    descriptor, so the slot stays held while it measures even if this process is killed."""
    cmd = [sys.executable, "-m", "greenai_dagster.core.evaluation.runtime_probe", str(checkpoint), "--device", device,
           "--runtime", runtime_name,
           "--prompt-len", str(settings.prompt_len), "--new-tokens", str(settings.new_tokens),
           "--repeats", str(settings.latency_repeats), "--batch-size", str(settings.throughput_batch_size),
           *(["--trust-remote-code"] if trust_remote_code else [])]
    with device_slot.exclusive(device) as slot:
        load_before = os.getloadavg()[0]     # the machine's load as the probe starts: a row taken under load says so
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=settings.timeout_s,
                                  pass_fds=(slot.fd,))
        except subprocess.TimeoutExpired as exc:
            raise EvaluationError(f"latency measurement exceeded {settings.timeout_s:.0f} s.") from exc
    if proc.returncode != 0:
        how = process_failure.describe(proc.returncode, proc.stderr)
        if proc.returncode in (-9, 137) or "out of memory" in proc.stderr.lower():
            raise OutOfMemory(f"latency measurement in {runtime_name} ran out of memory ({how})")
        raise EvaluationError(f"latency measurement in {runtime_name} {how}")
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    run["slot_wait_s"] = round(slot.wait_s, 3)
    run["load_average_1m"] = round(load_before, 2)
    return run


def quality_model(checkpoint: Path, model, tokenizer, device: str):
    """What scores a checkpoint's quality (fidelity and accuracy), and a line saying so.

    A GGUF checkpoint is served by llama.cpp, whose kernels differ from a float forward (8-bit
    activations in the quantized dot products): on CPU it is scored through llama.cpp's own logits.
    Everything else is scored by the loaded transformers model; for a compressed-tensors W4/W8
    checkpoint that llama.cpp serves repacked (same integers, same scales), that leaves out llama.cpp's
    8-bit rounding of activations, which the F16/Q8_0 rows of `benchmarks/gguf_quality.py` measure."""
    from greenai_dagster.core.evaluation import llama_cpp_scoring

    scorer = llama_cpp_scoring.scorer_for(checkpoint, device)
    if scorer is not None:
        return scorer, scorer.describe()
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return model, f"transformers ({type(model).__name__}, {dtype}, {device})"


def evaluate_checkpoint(checkpoint: Path, model, tokenizer, benchmark: PreparedBenchmark,
                        settings: EvalSettings, reference: dict, device: str = "cpu",
                        sampled_reference: dict | None = None, trust_remote_code: bool = False) -> Metrics:
    """All figures for one checkpoint; `model` is that checkpoint loaded (compute dtype), `reference`
    the baseline's stored distributions on the held-out prose (`make_reference`), `sampled_reference` on
    the baseline's own samples (`make_sampled_reference`; None: not measured)."""
    started = time.perf_counter()
    peaks = StagePeaks(device)   # each scoring stage's peak CUDA memory (nothing on CPU); the probe reports its own
    with device_slot.shared(device) as scoring_slot:   # scoring may overlap compression, never a probe
        scored_by, quality_runtime = quality_model(checkpoint, model, tokenizer, device)
        with peaks.stage("fidelity"):
            fid = fidelity.measure(scored_by, reference)
            fid_sampled = fidelity.measure(scored_by, sampled_reference) if sampled_reference is not None else None
        fidelity_s = time.perf_counter() - started
        with peaks.stage("accuracy"):
            if scored_by is not model:
                from greenai_dagster.core.evaluation.llama_cpp_scoring import LlamaCppLM

                acc = accuracy(LlamaCppLM(scored_by, tokenizer), tokenizer, benchmark, settings)
            else:
                acc = accuracy(model, tokenizer, benchmark, settings)
    accuracy_s = time.perf_counter() - started - fidelity_s
    run = runtime(checkpoint, device, settings, trust_remote_code)
    probe_s = time.perf_counter() - started - fidelity_s - accuracy_s
    conditions = {k: run.get(k) for k in ("device", "dtype", "runtime", "kernel", "runtime_fallback", "prompt_len",
                                          "new_tokens", "repeats", "batch_size", "threads", "memory_source",
                                          "loaded_memory_gb", "prefill_tokens_per_s", "decode_ms_spread", "energy_source",
                                          "energy_window", "latency_path", "load_average_1m", "probe_seconds")}
    if benchmark.executes_code:   # what confined the model-written code (core.machine.sandbox)

        conditions["code_execution"] = isolation()
    # seconds spent waiting for the device slot (core.machine.device_slot): scoring waits for probes, the probe for all
    conditions["device_slot_wait_s"] = {"scoring": round(scoring_slot.wait_s, 3), "probe": run.get("slot_wait_s")}
    conditions.update({"quality_runtime": quality_runtime,
                       "accuracy_items_per_task": benchmark.proxy_limit(settings) or "all",
                       "fidelity_tokens": fid.tokens,
                       "fidelity_text": fidelity.held_out_text(settings.fidelity_text)[1],
                       "fidelity_method": f"top-{reference['top_ids'].shape[1]} baseline log-probs + rest bucket, "
                                          f"{fidelity.WINDOW}-token windows, stderr over {fidelity.BLOCK}-token blocks",
                       "fidelity_reference": fidelity.reference_digest(reference),
                       **({"sampled_text": sampled_text.source(*sampled_reference["windows"].shape),
                           "sampled_reference": fidelity.reference_digest(sampled_reference),
                           "sampled_fidelity": fid_sampled.to_json()} if fid_sampled else {}),
                       "seconds": {"fidelity": round(fidelity_s, 1), "accuracy": round(accuracy_s, 1),
                                   "latency_probe": round(probe_s, 1)},
                       "units": {"latency_ms": "ms/token (decode, batch 1)", "prefill_ms": "ms",
                                 "memory_gb": "GiB", "model_size_gb": "GiB", "throughput": "tokens/s",
                                 "energy_j_per_token": "J/token (decode, batch 1)",
                                 "kl_divergence": "nats/token"}})
    peaks.record(conditions)
    return Metrics(
        accuracy=acc.accuracy, accuracy_stderr=acc.stderr, task_accuracy=acc.per_task, item_correct=acc.item_correct,
        task_chance=acc.chance, fidelity=fid,
        latency_ms=run["decode_ms_per_token"], prefill_ms=run["prefill_ms"],
        throughput_tokens_per_s=run["throughput_tokens_per_s"], memory_gb=run["peak_memory_gb"],
        model_size_gb=weights_size_bytes(checkpoint) / GIB, energy_j_per_token=run.get("energy_j_per_token"),
        conditions=conditions,
        eval_time_s=time.perf_counter() - started, fidelity_sampled=fid_sampled,
    )
