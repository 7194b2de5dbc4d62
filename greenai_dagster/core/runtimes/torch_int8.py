"""Dynamic INT8 checkpoints (`int8` method) on CPU: torch's quantized linear (fbgemm / x86 int8
GEMM with per-tensor dynamic activation scales), loaded by `core.models.checkpoints` as saved
(`core.formats.int8_dynamic`)."""

from __future__ import annotations

from pathlib import Path

from greenai_dagster.core.formats import int8_dynamic
from greenai_dagster.core.models.checkpoints import load_variant
from greenai_dagster.core.runtimes.base import Runtime, Session
from greenai_dagster.core.runtimes.torch_session import TorchSession


class TorchInt8Dynamic(Runtime):
    name = "torch-int8-dynamic"
    kernel = "torch.ao dynamic quantized Linear (int8 weights and activations)"
    devices = ("cpu",)
    formats = (int8_dynamic.NAME,)

    def serves(self, folder: Path, device: str) -> bool:
        return self.serves_format(folder)

    def load(self, folder: Path, device: str = "cpu", trust_remote_code: bool = False):
        return load_variant(folder, device="cpu", trust_remote_code=trust_remote_code)

    def open(self, folder: Path, device: str, threads: int = 0, trust_remote_code: bool = False) -> Session:
        return TorchSession(self.load(folder, "cpu", trust_remote_code)[0], "cpu")
