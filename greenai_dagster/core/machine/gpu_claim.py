"""Which GPU a step's work runs on, on a machine with several: one claim per GPU, held while the work runs.

The Dagster pool `gpu` (its limit set to the GPU count by `greenai_dagster.gpu_pool`) caps how many
GPU steps run at once across all runs; it does not say *which* GPU each one gets. This module does: a
step that is about to use a GPU claims one that no other process holds (kernel `flock` on
`<data root>/locks/gpu-<id>.claim`, non-blocking over the visible GPUs, waiting while all are held), and
its work is pinned to that GPU. A killed holder's claim is released by the kernel, so a crashed step
never leaves a GPU marked busy. Steps that run on the CPU never claim anything: they are not held back.

Pinning: a process that has not initialised CUDA yet gets `CUDA_VISIBLE_DEVICES=<id>` (so it and every
child it starts, such as the runtime probe, see exactly that GPU as `cuda:0`) and keeps that GPU for its
lifetime (CUDA reads the variable once). A process whose CUDA is already up uses `cuda:<index>` instead.
GPUs are counted from `CUDA_VISIBLE_DEVICES` or `nvidia-smi -L`, never by initialising CUDA.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from greenai_dagster.core.machine.device_slot import locks_dir, open_lock


@dataclass
class Claim:
    """A GPU held: its id as the machine names it, its index among the visible GPUs, how long it took."""

    gpu: str
    index: int
    wait_s: float


def visible_gpus() -> list[str]:
    """The GPUs this process may use, by id: `CUDA_VISIBLE_DEVICES` when set (an empty value means none),
    else the indices `nvidia-smi -L` lists; [] without a driver."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", out, flags=re.MULTILINE)]


def _claim_path(gpu: str):
    return locks_dir() / f"gpu-{re.sub(r'[^A-Za-z0-9_-]+', '-', gpu)}.claim"


@contextmanager
def claim(gpus: list[str], poll_s: float = 0.2, timeout_s: float | None = None) -> Iterator[Claim]:
    """Hold one GPU of `gpus` that no other process holds; wait (polling every `poll_s`) while all are held.
    TimeoutError after `timeout_s` (None: wait as long as it takes, as a pool-limited step should)."""
    if not gpus:
        raise ValueError("no GPU to claim")
    started = time.perf_counter()
    while True:
        for index, gpu in enumerate(gpus):
            fd = open_lock(_claim_path(gpu))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())   # who holds it, for a person looking
                yield Claim(gpu, index, time.perf_counter() - started)
            finally:
                os.close(fd)                                # drops the lock
            return
        if timeout_s is not None and time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"all of GPUs {gpus} stayed claimed for {timeout_s:.0f} s")
        time.sleep(poll_s)


# the GPU this process pinned itself to through CUDA_VISIBLE_DEVICES (CUDA reads it once per process)
_pinned: str | None = None


@contextmanager
def pinned_device(cuda_initialised: bool) -> Iterator[tuple[str, Claim | None]]:
    """The torch device string for GPU work now, with the claim held while the caller works.

    One visible GPU (or none): "cuda", nothing claimed. Several: claim one; if CUDA is not yet
    initialised in this process, pin the process to it (CUDA_VISIBLE_DEVICES) and answer "cuda:0";
    otherwise answer "cuda:<index>". A process pinned earlier waits for its own GPU."""
    global _pinned
    if _pinned is not None:
        with claim([_pinned]) as held:
            yield "cuda:0", held
        return
    gpus = visible_gpus()
    if len(gpus) <= 1:
        yield "cuda", None
        return
    with claim(gpus) as held:
        if cuda_initialised:
            yield f"cuda:{held.index}", held
            return
        os.environ["CUDA_VISIBLE_DEVICES"] = held.gpu
        _pinned = held.gpu
        yield "cuda:0", held
