"""Save and reload compressed variants, whatever format their last step produced.

The formats themselves live in `core.formats` (one module each: float HF, compressed-tensors, low-rank,
int8 dynamic, GGUF, adapters), below methods and runtimes. This module is the door the pipeline and the
tools use: it adds what only sits above the formats, loading a hub id (the baseline of a hub model) and
the user's `trust_remote_code` opt-in (passed in by the caller), and keeps the names callers have always imported.
"""

from __future__ import annotations

from pathlib import Path

import torch

from greenai_dagster.core import formats
from greenai_dagster.core.formats import adapters, gguf, int8_dynamic
from greenai_dagster.core.formats.common import STORAGE_DTYPE, VARIANT_FILE, narrow_floats_on_disk
from greenai_dagster.core.formats.int8_dynamic import load_int8_state
from greenai_dagster.core.models.loading import load_model_and_tokenizer, remote_code_refused

__all__ = ["ADAPTER_DIR", "GGUF_FILE", "INT8_STATE_FILE", "STORAGE_DTYPE", "VARIANT_FILE", "checkpoint_format",
           "load_int8_state", "load_variant", "narrow_floats_on_disk", "save_variant"]

INT8_STATE_FILE = int8_dynamic.STATE_FILE
ADAPTER_DIR = adapters.DIR
GGUF_FILE = gguf.FILE          # the `gguf` method's checkpoint: a llama.cpp file

save_variant = formats.save


def checkpoint_format(folder: Path) -> str:
    """The marker a folder was saved under ("hf" where it has none)."""
    return formats.marker(folder)


def load_variant(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None,
                 trust_remote_code: bool = False):
    """Return (model, tokenizer) for any checkpoint folder this project wrote (or a plain HF folder, or a hub
    id); compute dtype float32 on CPU and bfloat16 on an accelerator unless `dtype` says otherwise.
    A model's own Python code is run only with the user's opt-in (`trust_remote_code`, the experiment
    record's field); without it such a model is E002 naming the flag."""
    if not Path(folder).is_dir():  # a hub id (the baseline of a hub model)
        return load_model_and_tokenizer(str(folder), device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    try:
        return formats.load(Path(folder), device, dtype, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise remote_code_refused(str(folder)) from None
        raise
