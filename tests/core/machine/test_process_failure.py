"""A child process that dies is described by how it died and its own exception, never by a warning."""

from __future__ import annotations

import subprocess
import sys

from greenai_dagster.core.machine.process_failure import describe


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_a_signal_is_named_and_the_warning_printed_last_is_not_the_cause():
    proc = _run("import os, signal, sys\n"
                "print('[codecarbon WARNING @ 19:00:00] No CPU tracking mode found', file=sys.stderr, flush=True)\n"
                "os.kill(os.getpid(), signal.SIGILL)")
    text = describe(proc.returncode, proc.stderr)
    assert text.startswith("killed by SIGILL (an instruction this CPU cannot execute)")
    assert "codecarbon" not in text


def test_an_exception_is_named_by_its_own_line():
    proc = _run("import sys, warnings, atexit\n"
                "atexit.register(lambda: print('UserWarning: something unrelated', file=sys.stderr))\n"
                "raise ValueError('the checkpoint has no config.json')")
    assert describe(proc.returncode, proc.stderr) == "exited with code 1: ValueError: the checkpoint has no config.json"


def test_a_shell_style_exit_code_above_128_is_a_signal():
    assert describe(137, "").startswith("killed by SIGKILL")
    assert describe(3, "plain last line") == "exited with code 3: plain last line"
