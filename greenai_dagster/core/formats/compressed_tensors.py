"""compressed-tensors checkpoints: llm-compressor's quantized (and sparse) output (GPTQ, AWQ, AutoRound, RTN,
mixed precision, W8A8, FP8, NVFP4), a transformers folder whose config.json carries a
`quantization_config` with `quant_method: compressed-tensors`.

Saved like a float folder (`hf.save`): llm-compressor wraps the model's `save_pretrained`, which writes the
packed integers and scales; the marker file says `hf`. Loaded by transformers' CompressedTensorsConfig:
packed by default; decompressed into float weights on the quantization grid (`decompressed=True`) where
peft has to wrap nn.Linear weights (`core.formats.adapters`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from greenai_dagster.core.formats import hf
from greenai_dagster.core.formats.common import compute_dtype, read_config, remote_kwargs

NAME = "compressed-tensors"
MARKER = "hf"
QUANT_METHOD = "compressed-tensors"

save = hf.save


def detect(folder: Path) -> bool:
    return read_config(folder).get("quantization_config", {}).get("quant_method") == QUANT_METHOD


def load_base(folder: Path, dtype: torch.dtype, remote: dict, decompressed: bool = False):
    if not decompressed:
        return hf.load_base(folder, dtype, remote)
    from transformers import CompressedTensorsConfig

    return hf.load_base(folder, dtype, remote, quantization_config=CompressedTensorsConfig(run_compressed=False))


def load(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool = False):
    return load_base(Path(folder), compute_dtype(device, dtype), remote_kwargs(trust_remote_code)).to(device).eval()
