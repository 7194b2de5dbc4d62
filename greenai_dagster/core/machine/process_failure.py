"""How a child process died, in words a user can act on.

A probe or scorer runs in its own process so that a crash there cannot take the caller down. When
it fails, the reason must name the crash itself: the signal (SIGILL is an instruction this CPU
cannot run, SIGKILL usually the kernel's OOM killer) or the exit code, and the exception's own last
line. The last line of stderr is often something else entirely (a library warning printed by an
atexit hook, a progress bar), so lines that are warnings or log chatter are skipped.
"""

from __future__ import annotations

import re
import signal

SIGNAL_MEANING = {
    "SIGILL": "an instruction this CPU cannot execute",
    "SIGSEGV": "a memory fault in native code",
    "SIGKILL": "killed from outside, usually the kernel's out-of-memory killer",
    "SIGABRT": "native code aborted",
    "SIGBUS": "a bus error in native code",
    "SIGFPE": "an arithmetic fault in native code",
}
# lines that are never the cause: warnings and log records of the libraries a probe imports
NOISE = re.compile(r"(warn|deprecat|^\s*\[codecarbon|codecarbon|^\s*warnings\.warn|^\s*$|^\s*\d+%\|)", re.I)
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Unavailable|Failed|Memory)\w*)(:.*)?$")


def how_it_ended(returncode: int) -> str:
    """'killed by SIGILL (an instruction this CPU cannot execute)' or 'exited with code 3'."""
    number = -returncode if returncode < 0 else (returncode - 128 if returncode > 128 else None)
    if number:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = None
        if name:
            meaning = SIGNAL_MEANING.get(name)
            return f"killed by {name}" + (f" ({meaning})" if meaning else "")
    return f"exited with code {returncode}"


def cause_line(stderr: str) -> str | None:
    """The exception's own line (`ValueError: ...`) if the process printed a traceback; else the last
    line that is not a warning or log chatter; None if there is none."""
    lines = [line.rstrip() for line in (stderr or "").splitlines()]
    for line in reversed(lines):
        if EXCEPTION_LINE.match(line.strip()) and not NOISE.search(line):
            return line.strip()
    for line in reversed(lines):
        if line.strip() and not NOISE.search(line) and not line.startswith((" ", "\t")):
            return line.strip()
    return None


def describe(returncode: int, stderr: str) -> str:
    """One line: how the process ended, and its cause where it printed one (after a signal, only an
    exception's own line: whatever native code printed last before dying is not its cause)."""
    cause = cause_line(stderr)
    if cause and (returncode < 0 or returncode > 128):
        cause = cause if EXCEPTION_LINE.match(cause) else None
    return how_it_ended(returncode) + (f": {cause}" if cause else "")
