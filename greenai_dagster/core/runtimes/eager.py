"""Eager PyTorch through transformers: serves every checkpoint this project writes, and is the
fallback. Low-bit compressed-tensors weights are expanded to dense float weights here, so its
latency and memory are not what a low-bit runtime would give: rows it measures say so."""

from __future__ import annotations

from pathlib import Path

from greenai_dagster.core.formats import NAMES as ALL_FORMATS, int8_dynamic
from greenai_dagster.core.models.checkpoints import load_variant
from greenai_dagster.core.runtimes.base import Runtime, Session
from greenai_dagster.core.runtimes.torch_session import TorchSession


class EagerTorch(Runtime):
    name = "torch-eager"
    kernel = "dense float matmul (low-bit weights expanded)"
    devices = ("cpu", "cuda")
    formats = ALL_FORMATS

    def serves(self, folder: Path, device: str) -> bool:
        """Every checkpoint folder, except a dynamic-int8 checkpoint on CPU: loading it here would build the very same
        torch int8 modules `torch-int8-dynamic` serves, not an eager baseline."""
        folder = Path(folder)
        if folder.is_file():   # a bare .gguf file: transformers needs a folder (the `gguf` method writes one)
            return False
        return not (device == "cpu" and int8_dynamic.detect(folder))

    def load(self, folder: Path, device: str, trust_remote_code: bool = False):
        return load_variant(folder, device=device, trust_remote_code=trust_remote_code)

    def open(self, folder: Path, device: str, threads: int = 0, trust_remote_code: bool = False) -> Session:
        return TorchSession(self.load(folder, device, trust_remote_code)[0], device)
