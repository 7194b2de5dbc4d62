"""Peak CUDA memory of each stage of a step (load, reference, fidelity, accuracy, compression).

Why: the spec states memory needs by formula (seed 001: `core.models.spec` inference / training memory,
min and recommended VRAM), and a run on a GPU is the place to check them. The latency probe already
reports its own peak (`memory_gb`, measured in its own process by `core.evaluation.runtime_probe`); the
stages that run inside the step's process (loading the model, scoring fidelity and accuracy, compressing)
had only their seconds recorded. Each is now wrapped in `StagePeaks.stage(name)`: torch's peak counter is
reset when the stage starts and read when it ends, so the figure is the most CUDA memory this process had
allocated at any moment of the stage, including what it already held when the stage began (a loaded model).

On a machine or device without CUDA nothing is measured and nothing is recorded: a stage's figure is
None and `StagePeaks.gb` stays empty, never a made-up 0.

The counter is per process (and per device): two stages running at once in one process would read each
other's allocations. The drivers run one step at a time per process (`greenai run` executes its jobs in
process one after another; the sensor's runs and Celery tasks each have their own process), so a stage's
figure is its own.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

GIB = 1024**3
CONDITIONS_KEY = "gpu_peak_gb"   # the row's conditions entry: {stage: GiB}
START_KEY = "gpu_start_gb"       # {stage: GiB already allocated when the stage began}
SOURCE = ("torch.cuda.max_memory_allocated of the step's process, peak counter reset at the stage's start "
          "(memory already held then, such as a loaded model, counts)")


def cuda_device(device: str):
    """The torch device a stage's peak is read on, or None where CUDA is not in use (a CPU run, or a torch
    built without CUDA asked for "cuda")."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.device(device)


@dataclass
class Peak:
    """One stage's peak and what was already allocated when it began, in GiB; None until the stage ends, and
    always None without CUDA."""

    gb: float | None = None
    start_gb: float | None = None


@contextmanager
def stage_peak(device: str) -> Iterator[Peak]:
    """Measure the peak CUDA memory allocated by this process while the block runs (see the module's note)."""
    peak = Peak()
    where = cuda_device(device)
    if where is None:
        yield peak
        return
    import torch

    torch.cuda.synchronize(where)
    torch.cuda.reset_peak_memory_stats(where)
    start = torch.cuda.memory_allocated(where)
    try:
        yield peak
    finally:
        torch.cuda.synchronize(where)
        peak.gb = round(torch.cuda.max_memory_allocated(where) / GIB, 3)
        peak.start_gb = round(start / GIB, 3)


@dataclass
class StagePeaks:
    """Named stages' peaks (`gb`) and the memory held as each began (`start_gb`, which tells a stage's own
    need from what an earlier stage left allocated), in the order they ran: `with peaks.stage("load"): ...`.
    Only measured stages are in them (both empty without CUDA)."""

    device: str
    gb: dict[str, float] = field(default_factory=dict)
    start_gb: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[Peak]:
        with stage_peak(self.device) as peak:
            yield peak
        if peak.gb is not None:   # a stage that raised is not recorded
            self.gb[name] = peak.gb
            self.start_gb[name] = peak.start_gb

    def record(self, conditions: dict, earlier: dict | None = None) -> dict:
        """Add these stages to `conditions` (a row's conditions, or a compression's metadata) under
        `gpu_peak_gb` / `gpu_start_gb`, after the stages `earlier` holds under the same keys (a compression's
        metadata, read back from its checkpoint's marker file) and before those already in `conditions`
        (the scoring stages `evaluate_checkpoint` recorded), so stages read in the order they ran. Nothing
        is added when no stage was measured."""
        earlier = earlier or {}
        for key, own in ((CONDITIONS_KEY, self.gb), (START_KEY, self.start_gb)):
            merged = {**(earlier.get(key) or {}), **own, **(conditions.get(key) or {})}
            if merged:
                conditions[key] = merged
        if conditions.get(CONDITIONS_KEY):
            conditions.setdefault("gpu_peak_source", SOURCE)
        return conditions
