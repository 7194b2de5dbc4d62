"""Evaluate a checkpoint: accuracy (lm-eval), perplexity, latency, memory, size.

Accuracy goes through EleutherAI's lm-eval on the prepared benchmark's tasks (our offline task
YAMLs or lm-eval's own), macro-averaged over tasks, with the standard error. Perplexity is
computed on `core.corpus`'s held-out text in strided windows. Latency and memory come from a
fresh process (`core.runtime_probe`). Size is the bytes of the checkpoint's weight files.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from greenai_dagster.core import corpus
from greenai_dagster.core.benchmarks import PreparedBenchmark, hub_unreachable
from greenai_dagster.core.errors import EvaluationError, OutOfMemory
from greenai_dagster.core.spec import GIB, weights_size_bytes
from greenai_dagster.core.task_files import task_score


@dataclass
class EvalSettings:
    """How a candidate is evaluated; stored with each result so figures carry their conditions."""

    limit_per_task: int | None = 10     # proxy: first N of each task's stratified order; None = full set
    batch_size: int = 8
    perplexity_max_tokens: int = 4096
    perplexity_window: int = 512
    perplexity_stride: int = 256
    prompt_len: int = 128
    new_tokens: int = 16
    latency_repeats: int = 5
    throughput_batch_size: int = 4
    timeout_s: float = 1800.0


@dataclass
class Metrics:
    accuracy: float
    accuracy_stderr: float
    task_accuracy: dict
    perplexity: float
    latency_ms: float                 # decode, ms per token, batch 1 (the frontier's latency)
    prefill_ms: float
    throughput_tokens_per_s: float
    memory_gb: float
    model_size_gb: float
    conditions: dict = field(default_factory=dict)
    eval_time_s: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def run_lm_eval(model, tokenizer, benchmark: PreparedBenchmark, limit: int | None, batch_size: int,
                log_samples: bool = False) -> dict:
    """lm-eval's simple_evaluate on an in-memory model; hub failures become E006, others E004."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    # Our offline tasks need only their own folder: not indexing lm-eval's ~10k built-in task files
    # saves about 5 s per evaluation (benchmarks/vs_lm_eval.py).
    task_manager = (TaskManager(include_path=benchmark.include_path, include_defaults=False) if benchmark.include_path
                    else TaskManager())
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
              device=str(next(model.parameters()).device))
    try:
        return lm_eval.simple_evaluate(
            model=lm, tasks=benchmark.tasks, limit=limit, task_manager=task_manager,
            log_samples=log_samples, verbosity="WARNING", random_seed=0, numpy_random_seed=0, torch_random_seed=0,
            confirm_run_unsafe_code=benchmark.executes_code,
        )
    except Exception as exc:  # noqa: BLE001
        text = f"{type(exc).__name__}: {exc}"
        if not benchmark.offline and any(w in text.lower() for w in ("connect", "offline", "resolve", "hub")):
            raise hub_unreachable(benchmark) from exc
        raise EvaluationError(f"lm-eval failed on '{benchmark.name}': {text}".splitlines()[0]) from exc


def macro_score(results: dict, tasks: list[str]) -> tuple[float, float, dict]:
    """Mean over tasks of each task's score (acc, exact_match or pass@1), its stderr, and per task."""
    per_task, errors = {}, []
    for task in tasks:
        _, per_task[task], se = task_score(results[task])
        errors.append(se)
    mean = sum(per_task.values()) / len(per_task)
    stderr = math.sqrt(sum(e * e for e in errors)) / len(errors)
    return mean, stderr, per_task


def accuracy(model, tokenizer, benchmark: PreparedBenchmark, settings: EvalSettings) -> tuple[float, float, dict]:
    """Macro-averaged score over the benchmark's tasks, its stderr, and the score per task.

    `settings.limit_per_task` items of each task (the stratified proxy: task files are written in
    a seeded stratified order), or every item when it is None (the full set)."""
    output = run_lm_eval(model, tokenizer, benchmark, settings.limit_per_task, settings.batch_size)
    return macro_score(output["results"], benchmark.tasks)


@torch.no_grad()
def perplexity(model, tokenizer, settings: EvalSettings) -> float:
    """Strided-window perplexity: each window scores only tokens not scored by the previous one."""
    ids = tokenizer(corpus.perplexity_text(), return_tensors="pt", add_special_tokens=False)["input_ids"]
    ids = ids[:, : settings.perplexity_max_tokens]
    device = next(model.parameters()).device
    total_nll, total_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, ids.size(1), settings.perplexity_stride):
        end = min(begin + settings.perplexity_window, ids.size(1))
        target_len = end - prev_end
        window = ids[:, begin:end].to(device)
        labels = window.clone()
        labels[:, :-target_len] = -100
        loss = model(input_ids=window, labels=labels).loss
        scored = (labels[:, 1:] != -100).sum().item()
        total_nll += loss.float().item() * scored
        total_tokens += scored
        prev_end = end
        if end == ids.size(1):
            break
    return math.exp(total_nll / total_tokens)


def runtime(checkpoint: Path, device: str, settings: EvalSettings) -> dict:
    cmd = [sys.executable, "-m", "greenai_dagster.core.runtime_probe", str(checkpoint), "--device", device,
           "--prompt-len", str(settings.prompt_len), "--new-tokens", str(settings.new_tokens),
           "--repeats", str(settings.latency_repeats), "--batch-size", str(settings.throughput_batch_size)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=settings.timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise EvaluationError(f"latency measurement exceeded {settings.timeout_s:.0f} s.") from exc
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        if proc.returncode in (-9, 137) or "out of memory" in proc.stderr.lower():
            raise OutOfMemory(f"latency measurement ran out of memory: {tail[0]}")
        raise EvaluationError(f"latency measurement failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def evaluate_checkpoint(checkpoint: Path, model, tokenizer, benchmark: PreparedBenchmark,
                        settings: EvalSettings, device: str = "cpu") -> Metrics:
    """All figures for one checkpoint; `model` is that checkpoint loaded (compute dtype)."""
    started = time.perf_counter()
    acc, acc_se, per_task = accuracy(model, tokenizer, benchmark, settings)
    ppl = perplexity(model, tokenizer, settings)
    run = runtime(checkpoint, device, settings)
    conditions = {k: run[k] for k in ("device", "dtype", "prompt_len", "new_tokens", "repeats", "batch_size",
                                      "threads", "memory_source", "latency_path")}
    conditions.update({"accuracy_items_per_task": settings.limit_per_task or "all",
                       "perplexity_tokens": settings.perplexity_max_tokens,
                       "perplexity_corpus": corpus.CORPUS_SOURCE,
                       "units": {"latency_ms": "ms/token (decode, batch 1)", "prefill_ms": "ms",
                                 "memory_gb": "GiB", "model_size_gb": "GiB", "throughput": "tokens/s"}})
    return Metrics(
        accuracy=acc, accuracy_stderr=acc_se, task_accuracy=per_task, perplexity=ppl,
        latency_ms=run["decode_ms_per_token"], prefill_ms=run["prefill_ms"],
        throughput_tokens_per_s=run["throughput_tokens_per_s"], memory_gb=run["peak_memory_gb"],
        model_size_gb=weights_size_bytes(checkpoint) / GIB, conditions=conditions,
        eval_time_s=time.perf_counter() - started,
    )
