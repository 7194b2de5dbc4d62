"""Checkpoint formats: how a compressed variant is written to disk, recognised, and read back.

One module per format the project writes, each with `detect(folder) -> bool`, `save(model, folder,
metadata) -> metadata` and `load(folder, device, dtype, trust_remote_code) -> model`:

| module | what | marker (`greenai_variant.json`) |
| --- | --- | --- |
| `gguf` | the `gguf` method's llama.cpp file | `gguf` |
| `int8_dynamic` | torch dynamic int8 modules (the `int8` method) | `torch_int8_dynamic` |
| `adapters` | peft LoRA/QLoRA adapters beside a quantized base | the base's |
| `lowrank` | ASVD's thin layer pairs | `lowrank` |
| `compressed_tensors` | llm-compressor's quantized output | `hf` |
| `hf` | float transformers folders (and any plain HF model folder) | `hf` (or no marker) |

`FORMATS` is the order of detection: the first whose `detect` says yes reads the folder (a folder with
adapters is read by `adapters`, which reads its base through the base's module). A method names the
marker it writes (`CompressionMethod.checkpoint_format`), a runtime the formats it serves
(`Runtime.formats`). This package sits below `methods/` and `runtimes/` and never imports them
(`.importlinter`); what both need of a format (installing low-rank layers, int8 dynamic linears) lives here.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import torch

from greenai_dagster.core.errors import DiskFull, ModelLoadError
from greenai_dagster.core.formats import adapters, compressed_tensors, gguf, hf, int8_dynamic, lowrank
from greenai_dagster.core.formats.common import STORAGE_DTYPE, VARIANT_FILE, marker, narrow_floats_on_disk

__all__ = ["FORMATS", "NAMES", "STORAGE_DTYPE", "VARIANT_FILE", "detect", "load", "marker", "name_of",
           "narrow_floats_on_disk", "save"]

FORMATS = (gguf, int8_dynamic, adapters, lowrank, compressed_tensors, hf)   # order of detection
NAMES = tuple(fmt.NAME for fmt in FORMATS)
# the module that writes each marker a method may name; adapters and compressed-tensors are written under `hf`
WRITERS = {fmt.MARKER: fmt for fmt in (hf, lowrank, int8_dynamic, gguf)}


def detect(folder: Path):
    """The format module that reads `folder`; E002 when it holds no checkpoint (no config.json)."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ModelLoadError(f"no checkpoint at {folder}.", "Check the experiment folder, or re-run the episode.")
    return next(fmt for fmt in FORMATS if fmt.detect(folder))


def name_of(folder: Path) -> str | None:
    """The name of `folder`'s format, None where it is no checkpoint folder (a file, a hub id, no config.json)."""
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "config.json").exists():
        return None
    return detect(folder).NAME


def save(model, tokenizer, out_dir: Path, checkpoint_format: str, metadata: dict) -> Path:
    """Write the checkpoint to `<out_dir>.partial`, marker file (greenai_variant.json) last, then rename: a
    killed save leaves nothing half-done under `out_dir` (tests/robustness/test_faults_kill.py kills one mid-write).
    `checkpoint_format` is the marker the method names (`CompressionMethod.checkpoint_format`). A full disk,
    or any other failure to write, is E007 and leaves no `.partial` folder."""
    try:
        writer = WRITERS[checkpoint_format]
    except KeyError:
        raise ValueError(f"unknown checkpoint format {checkpoint_format!r}; known: {', '.join(WRITERS)}") from None
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        if writer in (hf, lowrank) and adapters.holds_adapters(model):   # LoRA kept beside a quantized base
            metadata = adapters.save(model, tmp, metadata, base=writer)
        else:
            metadata = writer.save(model, tmp, metadata)
        tokenizer.save_pretrained(tmp)
        (tmp / VARIANT_FILE).write_text(json.dumps({"format": checkpoint_format, **metadata}, indent=2))
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFull(f"disk full while saving {out_dir.name}.") from exc
        raise DiskFull(f"cannot write checkpoint to {out_dir}: {exc.strerror}.") from exc
    # swap by renames only: a kill between them leaves no `out_dir` (the episode re-runs), never a half-deleted
    # older checkpoint beside its marker file
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def load(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool = False):
    """(model, tokenizer) of a checkpoint folder, whatever its format; compute dtype float32 on CPU and
    bfloat16 on an accelerator unless `dtype` says otherwise. A model's own Python code runs only where
    `trust_remote_code` (the user's opt-in) is true."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    fmt = detect(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return fmt.load(folder, device, dtype, trust_remote_code=trust_remote_code), tokenizer
