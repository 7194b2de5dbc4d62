"""GGUF checkpoints (the `gguf` method): the llama.cpp file the method wrote, moved in as `model.gguf`
beside the config and tokenizer. llama.cpp serves it as is; transformers' GGUF loader expands its blocks
to float for everything else (evaluation, fidelity). The marker file says `gguf`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from greenai_dagster.core.formats.common import compute_dtype, marker, remote_kwargs

NAME = "gguf"
MARKER = "gguf"
FILE = "model.gguf"


def detect(folder: Path) -> bool:
    return marker(folder) == MARKER


def save(model, folder: Path, metadata: dict) -> dict:
    """Move in the file the method's last step reported (`gguf_file`), and remove its work folder."""
    produced = Path(metadata["step_reports"][-1]["gguf_file"])
    shutil.move(str(produced), Path(folder) / FILE)
    shutil.rmtree(produced.parent, ignore_errors=True)
    model.config.save_pretrained(folder)
    return metadata


def load(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=FILE, dtype=compute_dtype(device, dtype),
                                                **remote_kwargs(trust_remote_code)).to(device).eval()


def describe(path: Path) -> str:
    """'Q4_0 (210 tensors), F16 (1), F32 (61)': the tensor types of a GGUF, most common first."""
    import gguf as gguf_py   # the `gguf` library, read lazily: only describing a file needs it

    counts: dict[str, int] = {}
    for tensor in gguf_py.GGUFReader(path).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return ", ".join(f"{k} ({v})" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
