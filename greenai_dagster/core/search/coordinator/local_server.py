"""A fully offline endpoint for the `llm` coordinator: llama-cpp-python's OpenAI-compatible server
serving the packaged SmolLM2-135M-Instruct GGUF (or any GGUF) on 127.0.0.1.

`greenai llm-server` runs it in the foreground; `start` runs it as a child process for tests and
scripts and waits until it answers. The server speaks the `json_object` structured-output dialect
(grammar-constrained JSON), which the coordinator negotiates on its first request.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


# n_ctx 8192: SmolLM2's trained context; the coordinator's prompt (menu, sensitivity table, results so far) passes 4096
# tokens from the first episode on the 31-strategy space
def command(model: Path, host: str = "127.0.0.1", port: int = 8765, threads: int = 2, n_ctx: int = 8192) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", host, "--port", str(port),
            "--n_threads", str(threads), "--n_ctx", str(n_ctx), "--model_alias", Path(model).stem]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: Path, port: int | None = None, timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """(process, base_url) of a server that answers `/v1/models`; the caller terminates the process."""
    port = port or free_port()
    # its log goes to a file: llama.cpp prints the model's whole metadata, which would fill a pipe and block it
    log = tempfile.NamedTemporaryFile("w+", prefix="llama_server_", suffix=".log", delete=False)
    proc = subprocess.Popen(command(model, port=port), stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited: {Path(log.name).read_text().strip().splitlines()[-1:]}")
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise TimeoutError(f"llama.cpp server did not answer within {timeout_s:.0f} s")
