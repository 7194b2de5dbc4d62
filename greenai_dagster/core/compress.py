"""Apply a validated strategy (a chain of method steps) to a model and save the checkpoint."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import torch

from greenai_dagster.core.data.corpus import calibration_chunks
from greenai_dagster.core.errors import CompressionFailed, GreenAIError, OutOfMemory
from greenai_dagster.core.evaluation.energy import track_energy
from greenai_dagster.core.machine.gpu_memory import StagePeaks
from greenai_dagster.core.methods import get_method
from greenai_dagster.core.methods.base import CompressionContext
from greenai_dagster.core.methods.llmcompressor_oneshot import release_session
from greenai_dagster.core.models.checkpoints import save_variant
from greenai_dagster.core.models.loading import load_model_and_tokenizer
from greenai_dagster.core.models.memory import is_out_of_memory
from greenai_dagster.core.models.spec import ModelSpec
from greenai_dagster.core.strategy import Strategy


def apply_strategy(model, tokenizer, strategy: Strategy, spec: ModelSpec, device: str = "cpu"):
    """Run each step in order; returns (model, per-step reports, checkpoint format of the last step)."""
    ctx = CompressionContext(tokenizer=tokenizer, spec=spec, device=device,
                             calibration=lambda n, seq_len: calibration_chunks(tokenizer, n, seq_len))
    reports = []
    for step in strategy.steps:
        method = get_method(step.method)
        try:
            result = method.apply(model, method.parse(step.params), ctx)
        except GreenAIError as exc:
            cause = exc.__cause__      # a method's wrapper may have called an allocation failure E005
            if not isinstance(exc, OutOfMemory) and cause is not None and is_out_of_memory(cause):
                raise OutOfMemory(f"{step.method} ran out of host memory ({_first_line(cause)}).") from cause
            raise
        except torch.OutOfMemoryError as exc:
            raise OutOfMemory(f"{step.method} ran out of device memory.") from exc
        except MemoryError as exc:
            raise OutOfMemory(f"{step.method} ran out of host memory.") from exc
        except Exception as exc:  # noqa: BLE001 - library failures are the seed's E005
            if is_out_of_memory(exc):    # torch's CPU allocator raises RuntimeError, not MemoryError
                raise OutOfMemory(f"{step.method} ran out of host memory ({_first_line(exc)}).") from exc
            raise CompressionFailed(f"{step.method} failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
        model = result.model
        reports.append({"method": step.method, **result.report})
    return model, reports, get_method(strategy.steps[-1].method).checkpoint_format


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def compress_to_checkpoint(base_checkpoint: str, strategy: Strategy, spec: ModelSpec, out_dir: Path,
                           device: str = "cpu", country_iso_code: str = "TWN", trust_remote_code: bool = False) -> dict:
    """Load the base model (its own code only with the user's `trust_remote_code` opt-in), apply the strategy,
    save it; returns timing, energy, reports and, on CUDA, each stage's peak memory (`core.machine.gpu_memory`:
    loading the base model, then the strategy; the save's packing is not measured, its figures are written
    with the checkpoint)."""
    peaks = StagePeaks(device)
    load_started = time.perf_counter()
    with peaks.stage("compress_load"):
        model, tokenizer = load_model_and_tokenizer(base_checkpoint, device=device,
                                                    trust_remote_code=trust_remote_code)
    load_time = time.perf_counter() - load_started
    started = time.perf_counter()
    with track_energy(country_iso_code) as energy, peaks.stage("compress"):
        model, reports, fmt = apply_strategy(model, tokenizer, strategy, spec, device)
    elapsed = time.perf_counter() - started
    info = {
        "strategy": strategy.to_json(),
        "compression_time_s": elapsed,
        "load_time_s": load_time,
        "compression_energy_kwh": energy.energy_kwh,
        "compression_co2_grams": energy.co2_grams,
        "energy_source": energy.source,
        "energy_error": energy.error,
        "step_reports": reports,
        "device": device,
    }
    peaks.record(info)
    save_variant(model, tokenizer, out_dir, fmt, info)
    del model
    release_session()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return info
