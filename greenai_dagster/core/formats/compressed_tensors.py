"""compressed-tensors checkpoints: llm-compressor's quantized (and sparse) output (GPTQ, AWQ, AutoRound, RTN,
mixed precision, W8A8, FP8, NVFP4), a transformers folder whose config.json carries a
`quantization_config` with `quant_method: compressed-tensors`.

Saved like a float folder (`hf.save`): llm-compressor wraps the model's `save_pretrained`, which writes the
packed integers and scales; the marker file says `hf`. Loaded by transformers' CompressedTensorsConfig:
packed by default; decompressed into float weights on the quantization grid (`decompressed=True`) where
peft has to wrap nn.Linear weights (`core.formats.adapters`).

The readers below give a packed linear's stored integers and zero points as they are on disk, for the
runtimes that repack them for their own kernels and for the GGUF converter: one reading of the packing
rather than one per consumer.
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


def packed_linears(state: dict[str, torch.Tensor]) -> list[str]:
    """The linears whose weights a state dict holds packed (`<name>.weight_packed`), sorted."""
    return sorted(key[: -len(".weight_packed")] for key in state if key.endswith(".weight_packed"))


def stored_integers(state: dict[str, torch.Tensor], name: str, bits: int, device: str | None = None) -> torch.Tensor:
    """Linear `name`'s integers [out, in] as stored: compressed-tensors packs them along each row into int32s
    (eight 4-bit or four 8-bit values each) beside the true shape (`weight_shape`). Unpacked on `device`
    (where the runtime will use them) when one is given."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    packed = state[f"{name}.weight_packed"]
    shape = torch.Size(int(s) for s in state[f"{name}.weight_shape"])
    return unpack_from_int32(packed if device is None else packed.to(device), bits, shape)


def stored_zero_point(zp: torch.Tensor | None, rows: int, groups: int) -> torch.Tensor | None:
    """compressed-tensors packs 4-bit zero points eight to an int32 along the output rows ([rows/8, groups]);
    returns them as signed integers [rows, groups] (None for a symmetric scheme)."""
    if zp is None:
        return None
    if zp.dtype == torch.int32 and zp.shape[0] != rows:
        from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

        return unpack_from_int32(zp, 4, torch.Size([rows, groups]), packed_dim=0)
    return zp.reshape(rows, groups)
