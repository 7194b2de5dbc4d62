"""The one interface every serving runtime implements.

A runtime says which checkpoint formats it serves (`formats`, names of `core.formats` modules), which
checkpoints of those on which device (`serves`), and opens one as a
`Session`: the model loaded in that runtime's own representation (packed low-bit weights stay
packed), able to run a prompt into its cache and then decode one token at a time. The latency
probe (`core.evaluation.runtime_probe`) times every runtime through this same interface, so figures from
different runtimes are measured the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from greenai_dagster.core.formats import name_of as format_of


class Session(ABC):
    """One loaded model, ready to serve batch-1 requests."""

    @abstractmethod
    def prefill(self, prompt: list[int]) -> None:
        """Start a new sequence: run `prompt` through the model, keeping its KV cache."""

    @abstractmethod
    def decode(self) -> None:
        """Append the greedy next token, computed against the cache (one forward of one token)."""

    def batched_tokens_per_s(self, prompt: list[int], batch_size: int, new_tokens: int) -> float | None:
        """Tokens/s of greedy generation for `batch_size` copies of `prompt`; None where the runtime
        has no batched generation the probe can drive."""
        return None

    def dtype(self) -> str:
        return "?"


class Runtime(ABC):
    name: str        # e.g. "torch-cpu-int4"
    kernel: str      # what does the matrix work, for the results row (`conditions.kernel`)
    devices: tuple[str, ...] = ("cpu",)
    formats: ClassVar[tuple[str, ...]] = ()   # the `core.formats` it serves (`serves` says which checkpoints of them)

    def available(self, device: str) -> bool:
        """This runtime's libraries and kernels exist here, for this device."""
        return device.split(":")[0] in self.devices

    def fast_here(self, device: str) -> bool:
        """Whether this runtime's kernels are fast on this machine; a runtime that serves a format but
        measured slower than eager PyTorch here is still offered, after eager."""
        return True

    def import_libraries(self) -> None:
        """Import what `open` needs, so the probe can leave library memory out of the model's."""
        import transformers  # noqa: F401
        from transformers import AutoModelForCausalLM  # noqa: F401

    def serves_format(self, folder: Path) -> bool:
        """`folder` is a checkpoint folder of a format this runtime serves."""
        return format_of(folder) in self.formats

    @abstractmethod
    def serves(self, folder: Path, device: str) -> bool:
        """This runtime can serve the checkpoint in `folder` without expanding it to dense weights."""

    def prepare(self, folder: Path) -> None:
        """One-time work before serving (a format conversion, cached); run before the probe measures
        memory, so conversion transients never count as serving memory."""

    @abstractmethod
    def open(self, folder: Path, device: str, threads: int = 0, trust_remote_code: bool = False) -> Session:
        """The checkpoint loaded in this runtime, ready to time. `trust_remote_code` is the user's opt-in for a
        model that ships its own code; only runtimes that load through transformers' auto classes (eager,
        int8 dynamic) can serve such a model, the others rebuild known architectures and never run it."""

    def open_for_request(self, folder: Path, device: str, threads: int, context_tokens: int,
                         trust_remote_code: bool = False) -> Session:
        """`open`, sized for requests of `context_tokens` tokens where the runtime allocates its KV cache up
        front (llama.cpp); runtimes whose cache grows with the request ignore it. The latency probe opens
        sessions this way, so every runtime holds the cache of the request it serves, and memory compares."""
        return self.open(folder, device, threads, trust_remote_code=trust_remote_code)

    def kernel_for(self, folder: Path) -> str:
        """The kernel that serves this particular checkpoint (a runtime may serve several formats)."""
        return self.kernel
