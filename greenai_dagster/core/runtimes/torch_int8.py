"""Dynamic INT8 checkpoints (`int8` method) on CPU: the checkpoint's per-channel int8 weights, activations
quantized per token at run time, an int8 GEMM (`core.formats.int8_dynamic.PerTokenInt8Linear`, `torch._int_mm`),
loaded by `core.models.checkpoints` (`core.formats.int8_dynamic`)."""

from __future__ import annotations

from pathlib import Path

from greenai_dagster.core.formats import int8_dynamic
from greenai_dagster.core.models.checkpoints import load_variant
from greenai_dagster.core.runtimes.base import Runtime, Session
from greenai_dagster.core.runtimes.torch_session import TorchSession


class TorchInt8Dynamic(Runtime):
    name = "torch-int8-dynamic"
    kernel = "int8 x int8 GEMM (torch._int_mm): per-channel int8 weights, activations per token at run time"
    devices = ("cpu",)
    formats = (int8_dynamic.NAME,)

    def serves(self, folder: Path, device: str) -> bool:
        return self.serves_format(folder)

    def load(self, folder: Path, device: str = "cpu", trust_remote_code: bool = False):
        return load_variant(folder, device="cpu", trust_remote_code=trust_remote_code)

    def open(self, folder: Path, device: str, threads: int = 0, trust_remote_code: bool = False) -> Session:
        return TorchSession(self.load(folder, "cpu", trust_remote_code)[0], "cpu")
