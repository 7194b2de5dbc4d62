"""Adapter checkpoints (LoRA / QLoRA kept beside a quantized base): peft's `lora_adapter/` inside a folder of
another format (compressed-tensors, float, low-rank), which holds the base.

Where LoRA followed a quantizer, merging would undo the quantization, so the adapters are saved apart
(`save_pretrained` of the peft model) and the base is saved, after `unload()`, in its own format; the marker
file names the base's way of saving (`hf` or `lowrank`). On load the base comes first; a compressed-tensors
base is decompressed into float weights (still on the quantization grid), since peft wraps nn.Linear
weights; the adapters go on top.
"""

from __future__ import annotations

from pathlib import Path

import torch

from greenai_dagster.core.formats import compressed_tensors, hf, lowrank
from greenai_dagster.core.formats.common import compute_dtype, remote_kwargs

NAME = "adapters"
DIR = "lora_adapter"


def detect(folder: Path) -> bool:
    return (Path(folder) / DIR).exists()


def holds_adapters(model) -> bool:
    """A peft model whose adapters are kept apart from its base."""
    return hasattr(model, "peft_config")


def save(model, folder: Path, metadata: dict, base=hf) -> dict:
    """The adapters into `folder/lora_adapter`, then the unloaded base by `base` (a format module)."""
    model.save_pretrained(Path(folder) / DIR)
    return base.save(model.unload(), folder, metadata)


def load(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool = False):
    from peft import PeftModel

    folder, dtype, remote = Path(folder), compute_dtype(device, dtype), remote_kwargs(trust_remote_code)
    if lowrank.detect(folder):
        model = lowrank.load_base(folder, dtype, remote)
    elif compressed_tensors.detect(folder):
        model = compressed_tensors.load_base(folder, dtype, remote, decompressed=True)
    else:
        model = hf.load_base(folder, dtype, remote)
    model = PeftModel.from_pretrained(model, folder / DIR)
    return model.to(device).eval()
