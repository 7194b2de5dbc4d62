"""A per-device reader/writer slot, so latency, memory and energy probes measure the model alone.

Two experiments run at once on one machine measured each other: a baseline read 103.4 and 169.9
ms/token against 40.0 alone (issue 14). Compression and quality scoring may overlap (they only slow
each other down; their figures do not depend on wall time), but a probe must have the device to
itself. So work takes one of two sides of a slot per device:

- `shared(device)`: compression, fidelity and accuracy scoring; any number at once;
- `exclusive(device)`: the runtime probe; waits until every shared holder has finished, and no new
  shared holder starts while a probe waits.

Built on kernel `flock` locks in `<data root>/locks/` (`core.storage.paths`), so every process on the machine
that uses the same data root sees the same slot (CLI runs, Dagster run workers, Celery workers), and the
kernel releases a lock when its holder dies, even by SIGKILL: a killed holder blocks nobody.

`flock` alone lets a stream of shared holders starve a waiting probe (a shared lock is granted while
other shared locks are held, whoever waits for the exclusive one). A second lock, the turnstile, stops
that: a shared taker passes through it (takes and drops it) before taking its side; a probe holds it
while it waits for the slot, so new shared takers queue behind the probe.

Locks are held on file descriptors Python opens non-inheritable, so a child process does not keep a
slot alive unless it is handed the descriptor on purpose (`Held.fd`, used by the probe so that its
measuring process keeps the slot even if its parent is killed).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from greenai_dagster.core.storage.paths import data_root

SHARED = "shared"
EXCLUSIVE = "exclusive"


@dataclass
class Held:
    """A slot held: which side, how long it took to get it, and the descriptor holding the lock."""

    device: str
    side: str
    wait_s: float
    fd: int


def locks_dir() -> Path:
    """The one folder of every kernel lock file the package uses (device slots, GPU claims)."""
    return data_root() / "locks"


def device_key(device: str) -> str:
    """One slot per physical device: "cuda" and "cuda:0" are the same GPU; "cpu" is the host."""
    name = str(device).strip().lower() or "cpu"
    if name == "cuda":
        name = "cuda:0"
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def open_lock(path: Path) -> int:
    """A descriptor for lock file `path`, created if missing, readable by any user's processes, and not
    inherited by children (a probe started under a lock must not keep it after its parent lets go)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)


def _paths(device: str) -> tuple[Path, Path]:
    key = device_key(device)
    return locks_dir() / f"device-{key}.slot", locks_dir() / f"device-{key}.turnstile"


# sides this process holds now, per device key: flock locks are per open file, so a process taking
# the exclusive side while it holds the shared one would wait for itself forever
_held: dict[str, list[str]] = {}


@contextmanager
def _record(device: str, side: str) -> Iterator[None]:
    sides = _held.setdefault(device_key(device), [])
    sides.append(side)
    try:
        yield
    finally:
        sides.pop()


@contextmanager
def shared(device: str) -> Iterator[Held]:
    """Hold the shared side of `device`'s slot (compression, scoring): overlaps other shared holders,
    never a probe. Waits while a probe holds or waits for the slot. Inside a side this process already
    holds on the device it holds nothing more (wait 0)."""
    if _held.get(device_key(device)):
        yield Held(device, _held[device_key(device)][-1], 0.0, -1)
        return
    slot_path, turnstile_path = _paths(device)
    started = time.perf_counter()
    turnstile, slot = open_lock(turnstile_path), open_lock(slot_path)
    try:
        fcntl.flock(turnstile, fcntl.LOCK_EX)      # queue behind a waiting probe...
        try:
            fcntl.flock(slot, fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)  # ...then let the next taker through
        with _record(device, SHARED):
            yield Held(device, SHARED, time.perf_counter() - started, slot)
    finally:
        os.close(slot)                             # closing the last descriptor drops the lock
        os.close(turnstile)


@contextmanager
def exclusive(device: str) -> Iterator[Held]:
    """Hold `device`'s slot alone (latency, memory, energy probes): waits for shared holders to
    finish, and holds the turnstile meanwhile so that no new shared holder starts. Refused (RuntimeError)
    inside a side this process holds on the same device: that would wait for itself."""
    if _held.get(device_key(device)):
        raise RuntimeError(f"the {device} slot is already held by this process ({_held[device_key(device)][-1]}); "
                           "a probe must run outside compression and scoring")
    slot_path, turnstile_path = _paths(device)
    started = time.perf_counter()
    turnstile, slot = open_lock(turnstile_path), open_lock(slot_path)
    try:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(slot, fcntl.LOCK_EX)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)  # the slot is ours; shared takers now wait on it
        with _record(device, EXCLUSIVE):
            yield Held(device, EXCLUSIVE, time.perf_counter() - started, slot)
    finally:
        os.close(slot)
        os.close(turnstile)
