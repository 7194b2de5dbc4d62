"""The Triton tuner's choices on disk, so that a later process (the next episode's probe) skips the timing.

`cuda_kernels._pick` times a few tile shapes per (kernel, matrix shape) on first use. Each episode's
latency probe is a new process, so without this file every probe timed every shape again. A choice
holds for one chip, one Triton, one torch and the kernels' source as written: the key names all four,
so a changed kernel or another GPU is timed afresh. The file is only a shortcut: one that is missing,
unreadable or unwritable costs the timing, never the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from greenai_dagster.core.storage.paths import data_root


def path() -> Path | None:
    """GREENAI_KERNEL_TUNING names the file ("off": none, every process times afresh), else
    `<data root>/cache/kernel_tuning.json`."""
    named = os.environ.get("GREENAI_KERNEL_TUNING")
    if named == "off":
        return None
    return Path(named) if named else data_root() / "cache" / "kernel_tuning.json"


def key(choice: tuple, device_name: str, triton_version: str, source_hash: str) -> str:
    """One string per (kernel, shape, ...) on this chip, Triton, torch and kernel source."""
    return json.dumps([device_name, triton_version, torch.__version__, source_hash, *choice])


def load(file: Path | None) -> dict:
    """The stored choices; {} where there is no file or it does not parse."""
    if file is None:
        return {}
    try:
        stored = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def store(file: Path | None, choice_key: str, config: dict, ms: float) -> None:
    """Adds one choice: written to a temporary file and renamed, so a reader never sees half a file. Two
    processes storing at once may drop one's entry; that shape is then timed again, nothing worse."""
    if file is None:
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        stored = load(file)
        stored[choice_key] = {"config": config, "ms": round(ms, 5)}
        tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stored, indent=1))
        os.replace(tmp, file)
    except OSError:   # a read-only or full disk costs the shortcut, not the run
        pass
