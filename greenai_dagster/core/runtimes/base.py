"""The one interface every serving runtime implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path


class Runtime(ABC):
    name: str        # e.g. "torch-cpu-int4"
    kernel: str      # what does the matrix work, for the results row (`conditions.runtime`)
    devices: tuple[str, ...] = ("cpu",)

    def available(self, device: str) -> bool:
        """This runtime's libraries and kernels exist here, for this device."""
        return device.split(":")[0] in self.devices

    @abstractmethod
    def serves(self, folder: Path, device: str) -> bool:
        """This runtime can serve the checkpoint in `folder` without expanding it to dense weights."""

    @abstractmethod
    def load(self, folder: Path, device: str):
        """(model, tokenizer) ready for `generate`, in this runtime's own representation."""
