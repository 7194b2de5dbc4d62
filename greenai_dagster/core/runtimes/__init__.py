"""Serving runtimes: how a checkpoint is loaded and run where it would be served.

Each runtime says which checkpoint formats and devices it serves and loads a checkpoint without
expanding low-bit weights to dense ones. `pick` returns the runtimes that can serve a checkpoint on
a device, fastest first (the order below, confirmed side by side in
`benchmarks/results/runtimes_cpu.json`), ending with eager PyTorch, which serves everything (and
says so). Adding a runtime is one file and one line below.
"""

from __future__ import annotations

from pathlib import Path

from greenai_dagster.core.runtimes.base import Runtime, Session
from greenai_dagster.core.runtimes.cpu_int4 import CpuInt4
from greenai_dagster.core.runtimes.cuda_compiled import CudaCompiled
from greenai_dagster.core.runtimes.cuda_fp8 import CudaFp8
from greenai_dagster.core.runtimes.cuda_int8 import CudaInt8
from greenai_dagster.core.runtimes.cuda_w4 import CudaW4
from greenai_dagster.core.runtimes.eager import EagerTorch
from greenai_dagster.core.runtimes.llama_cpp import LlamaCpp
from greenai_dagster.core.runtimes.torch_int8 import TorchInt8Dynamic
from greenai_dagster.core.runtimes.verdicts import unavailable_reason

# in order of preference: the first that serves a checkpoint is the fastest available for it
RUNTIMES: list[Runtime] = [LlamaCpp(), CpuInt4(), TorchInt8Dynamic(), CudaW4(), CudaFp8(), CudaInt8(), CudaCompiled(),
                           EagerTorch()]

__all__ = ["RUNTIMES", "Runtime", "Session", "by_name", "pick", "EagerTorch"]


def failed_here(runtime: Runtime, device: str) -> str | None:
    """Why `runtime` must not serve on this machine (it failed `greenai doctor`'s self-test here), or None.
    The self-test covers the CPU runtimes, whose native code was compiled for or dispatches on this CPU."""
    if device.split(":")[0] != "cpu":
        return None
    return unavailable_reason(runtime.name)


def serving_candidates(folder: Path, device: str) -> tuple[list[Runtime], list[str]]:
    """(runtimes that serve `folder` on `device`, in order of preference; "name: reason" for each that
    would serve it but failed the self-test here). Runtimes whose kernels are slow on this machine
    (`fast_here`) come after eager PyTorch."""
    serving = [r for r in RUNTIMES if r.available(device) and r.serves(Path(folder), device)]
    skipped = [(r, failed_here(r, device)) for r in serving]
    skipped_text = [f"{r.name}: {why}" for r, why in skipped if why]
    serving = [r for r, why in skipped if not why]
    return [r for r in serving if r.fast_here(device)] + [r for r in serving if not r.fast_here(device)], skipped_text


def pick(folder: Path, device: str) -> list[Runtime]:
    """Runtimes that serve `folder` on `device` here, in order of preference (see `serving_candidates`)."""
    return serving_candidates(folder, device)[0]


def by_name(name: str) -> Runtime:
    for runtime in RUNTIMES:
        if runtime.name == name:
            return runtime
    raise ValueError(f"unknown runtime {name!r}; known: {', '.join(r.name for r in RUNTIMES)}")
