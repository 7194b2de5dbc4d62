"""Which serving runtimes failed `greenai doctor`'s self-test on this machine, and why.

The verdicts are kept per machine (CPU model and flags, the llama.cpp library's build) in
`~/.cache/greenai/selftest.json`. A runtime that failed here is left out of `core.runtimes.pick`
with its reason, instead of crashing once per candidate; llama.cpp scoring falls back to PyTorch. Where
no verdict exists yet (a user who skipped setup), `unavailable_reason` runs the quick crash check alone:
the packaged GGUF on the 64-token prompt, in a child process.

This module sits below both readers of the verdicts (`core.runtimes`, `core.evaluation.llama_cpp_scoring`)
and the self-test that writes them (`core.selftest`, which runs every check in a child process started as
`python -m greenai_dagster.core.selftest --child`): it imports neither, so none of them forms a circle.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from greenai_dagster.core.machine import process_failure
from greenai_dagster.core.models.default_model import find_packaged_gguf

PROMPT_TOKENS = 64
CHILD_TIMEOUT_S = 300


def cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "greenai" / "selftest.json"


def _llama_cpp_library() -> Path | None:
    """The compiled library llama-cpp-python loads, found without importing it (importing is safe, but
    this also serves a process that must not load it)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent
    libs = sorted(folder.glob("lib/libggml-cpu*.so")) + sorted(folder.glob("lib/libllama*.so"))
    return libs[0] if libs else None


def machine_fingerprint() -> dict:
    """What a verdict depends on: the CPU (model and flags) and the exact llama.cpp build."""
    flags, model = "", platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
            elif line.startswith("model name") and model in ("", platform.processor()):
                model = line.split(":", 1)[1].strip()
    lib = _llama_cpp_library()
    build = None
    if lib is not None:
        stat = lib.stat()
        build = f"{lib.name}:{stat.st_size}:{int(stat.st_mtime)}"
    return {"cpu": model, "cpu_flags_sha1": hashlib.sha1(flags.encode()).hexdigest()[:12],
            "amx": "amx_tile" in flags.split(), "llama_cpp_build": build}


def _key(fingerprint: dict) -> str:
    return hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def load_verdicts() -> dict[str, dict]:
    """This machine's verdicts by runtime name ({} where none were recorded)."""
    path = cache_file()
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    entry = stored.get(_key(machine_fingerprint()), {})
    return entry.get("runtimes", {})


def save_verdicts(runtimes: dict[str, dict]) -> None:
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        stored = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        stored = {}
    fingerprint = machine_fingerprint()
    entry = stored.setdefault(_key(fingerprint), {"machine": fingerprint, "runtimes": {}})
    entry["runtimes"].update(runtimes)
    entry["checked_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stored, indent=1))
    os.replace(tmp, path)


def unavailable_reason(runtime_name: str) -> str | None:
    """Why `runtime_name` must not be used on this machine, or None. llama.cpp without a verdict gets
    the quick crash check first."""
    verdicts = load_verdicts()
    if runtime_name == "llama.cpp" and "llama.cpp" not in verdicts:
        verdicts = {"llama.cpp": quick_llama_cpp_check()}
    verdict = verdicts.get(runtime_name)
    if verdict is None or verdict.get("passed"):
        return None
    return f"failed the self-test on this machine ({verdict.get('reason')}); run `greenai doctor` for details"


def quick_llama_cpp_check() -> dict:
    """The packaged GGUF through llama.cpp on the 64-token prompt, in a child process; recorded."""
    try:
        gguf = find_packaged_gguf()
    except Exception:  # noqa: BLE001 - no packaged model: nothing to check against, assume usable
        return {"passed": True, "reason": "no packaged GGUF to check with", "quick": True}
    if _llama_cpp_library() is None:
        return {"passed": False, "reason": "llama-cpp-python is not installed", "quick": True}
    row = run_child("llama.cpp", Path(gguf), random_ids())
    verdict = {"passed": row["logits"] is not None and bool(np.isfinite(row["logits"]).all()),
               "reason": row["error"] or "ran the packaged GGUF", "quick": True}
    save_verdicts({"llama.cpp": verdict})
    return verdict


def random_ids(vocab: int = 49152) -> list[int]:
    """A fixed 64-token prompt of seeded ids (the crash check needs no tokenizer)."""
    rng = np.random.default_rng(0)
    return rng.integers(100, min(vocab, 30000), PROMPT_TOKENS).tolist()


def run_child(runtime_name: str, path: Path, ids: list[int], threads: int | None = None) -> dict:
    """{"logits": array or None, "error": how the child failed or None, "seconds"}."""
    threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "logits.npy"
        cmd = [sys.executable, "-m", "greenai_dagster.core.selftest", "--child", runtime_name, str(path),
               "--threads", str(threads), "--out", str(out), "--ids", ",".join(map(str, ids))]
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"logits": None, "error": f"timed out after {CHILD_TIMEOUT_S} s", "seconds": CHILD_TIMEOUT_S}
        seconds = time.perf_counter() - started
        if proc.returncode != 0 or not out.exists():
            return {"logits": None, "error": process_failure.describe(proc.returncode, proc.stderr), "seconds": seconds}
        return {"logits": np.load(out), "error": None, "seconds": seconds}
