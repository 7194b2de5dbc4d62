"""Float transformers checkpoints: `save_pretrained` / `from_pretrained`, weights in bfloat16 on disk.

What a pruning step (magnitude, structured, SparseGPT/Wanda without quantization), a merged LoRA or the
baseline itself leaves. The fallback of detection: any folder with a `config.json` that no other format
claims. A mixture of experts whose experts a quantizer unfused is saved per expert under the names
transformers' own checkpoint conversion expects (`core.models.arch`), so its loader stacks them again.
"""

from __future__ import annotations

from pathlib import Path

import torch

from greenai_dagster.core.formats.common import (arch_patches, compute_dtype, finish_float_save, remote_kwargs,
                                                 to_storage_dtype, unify_float_dtype)
from greenai_dagster.core.models import arch

NAME = "hf"
MARKER = "hf"   # what greenai_variant.json says


def detect(folder: Path) -> bool:
    return (Path(folder) / "config.json").exists()


def save(model, folder: Path, metadata: dict) -> dict:
    """Write the model's tensors and config into `folder`; returns the metadata for the marker file."""
    to_storage_dtype(model)
    model.save_pretrained(folder)
    if getattr(model, arch.LINEAR_EXPERTS_FLAG, False):
        arch.rename_expert_keys(folder, model.config.model_type)
    return finish_float_save(model, folder, metadata)


def load_base(folder: Path, dtype: torch.dtype, remote: dict, **from_pretrained):
    """The model in `dtype`, not yet moved to a device (the adapters format puts LoRA on top of it)."""
    from transformers import AutoModelForCausalLM

    with arch_patches(folder, remote):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **from_pretrained, **remote)
    unify_float_dtype(model, dtype)
    return model


def load(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool = False):
    return load_base(Path(folder), compute_dtype(device, dtype), remote_kwargs(trust_remote_code)).to(device).eval()
