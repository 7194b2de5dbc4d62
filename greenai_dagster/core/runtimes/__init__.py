"""Serving runtimes: how a checkpoint is loaded and run where it would be served.

Each runtime says which checkpoint formats and devices it serves and loads a checkpoint without
expanding low-bit weights to dense ones. `pick` returns the runtimes that can serve a checkpoint on
a device, fastest first, ending with eager PyTorch, which serves everything (and says so).
Adding a runtime is one file and one line below.
"""

from __future__ import annotations

from pathlib import Path

from greenai_dagster.core.runtimes.base import Runtime
from greenai_dagster.core.runtimes.cpu_int4 import CpuInt4
from greenai_dagster.core.runtimes.eager import EagerTorch
from greenai_dagster.core.runtimes.torch_int8 import TorchInt8Dynamic

# in order of preference: the first that serves a checkpoint is the fastest available for it
RUNTIMES: list[Runtime] = [CpuInt4(), TorchInt8Dynamic(), EagerTorch()]


def pick(folder: Path, device: str) -> list[Runtime]:
    return [r for r in RUNTIMES if r.available(device) and r.serves(Path(folder), device)]
