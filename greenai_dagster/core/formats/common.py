"""What every checkpoint format shares: the marker file, the storage dtype, and the float clean-ups.

Every folder this project writes holds `greenai_variant.json` (the marker, written last) naming how it
was saved (`hf`, `lowrank`, `torch_int8_dynamic`, `gguf`) plus the run's metadata. Float tensors are
stored in the baseline's storage dtype (bfloat16), so sizes compare fairly; they are computed in float32
on CPU and bfloat16 on an accelerator unless the caller says otherwise.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from greenai_dagster.core.models import arch

VARIANT_FILE = "greenai_variant.json"
STORAGE_DTYPE = torch.bfloat16
# float tensors that compressed-tensors keeps in float32 on purpose (NVFP4's per-tensor scale)
# kept in their stored width: NVFP4's per-tensor scale (compressed-tensors), and bitsandbytes' NF4 quantization
# state (the code book `quant_map`, the double-quantised `nested_absmax`/`nested_quant_map`, a plain `absmax`):
# bitsandbytes reads them as float32, and narrowed they turned a QLoRA checkpoint's base into noise on
# reload (KL 11.9 from the baseline; tests/core/formats/test_formats.py)
_KEEP_WIDE = ("global_scale", ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map")
SHAPE_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "num_hidden_layers")


def marker(folder: Path) -> str:
    """How the folder was saved, as its marker file says ("hf" for a folder without one: a plain HF model)."""
    path = Path(folder) / VARIANT_FILE
    return json.loads(path.read_text())["format"] if path.exists() else "hf"


def variant_metadata(folder: Path) -> dict:
    path = Path(folder) / VARIANT_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def compute_dtype(device: str, dtype: torch.dtype | None) -> torch.dtype:
    return dtype or (torch.float32 if device == "cpu" else torch.bfloat16)


def remote_kwargs(trust_remote_code: bool) -> dict:
    """transformers' `trust_remote_code`: a model's own Python code runs only where the user opted in."""
    return {"trust_remote_code": bool(trust_remote_code)}


@contextmanager
def arch_patches(folder: Path, remote: dict):
    """`core.models.arch`'s loading patches for this folder's architecture (a GPT-2 saved with its Conv1D layers as
    nn.Linear says `conv1d_as_linear` in its marker and is rebuilt that way)."""
    from transformers import AutoConfig

    conv1d_as_linear = bool(variant_metadata(folder).get("conv1d_as_linear"))
    with arch.load_patches(AutoConfig.from_pretrained(folder, **remote), conv1d_as_linear):
        yield


def to_storage_dtype(model) -> None:
    """Float weights in STORAGE_DTYPE; bitsandbytes NF4 weights keep their packed layout (only the float
    rest is cast)."""
    if getattr(model, "is_loaded_in_4bit", False):
        for param in model.parameters():
            if param.is_floating_point():
                param.data = param.data.to(STORAGE_DTYPE)
    else:
        model.to(STORAGE_DTYPE)


def finish_float_save(model, folder: Path, metadata: dict) -> dict:
    """After a float (or compressed-tensors) model's tensors are written: narrow what reached the disk wide,
    put the in-memory shapes back into config.json, and note in the metadata what a loader must know."""
    narrowed = narrow_floats_on_disk(folder)
    if narrowed:
        metadata = {**metadata, "narrowed_on_disk": len(narrowed)}
    keep_shape_fields(model.config, Path(folder) / "config.json")
    if getattr(model, arch.CONV1D_FLAG, False):
        metadata = {**metadata, "conv1d_as_linear": True}
    return metadata


def narrow_floats_on_disk(folder: Path, dtype: torch.dtype = STORAGE_DTYPE) -> list[str]:
    """Re-store every float32/float64 tensor of `folder`'s safetensors files in `dtype`; the names changed.

    `model.to(dtype)` before saving is not always what reaches the disk: on a GPU machine llm-compressor's
    save of an offloaded model wrote the float32 copies (embeddings and group scales in float32 made a 3-bit
    SmolLM2 0.160 GB instead of 0.100), so a checkpoint's size, and what it loads as, depended on the machine
    that made it. This makes the file the same on every machine: what a user downloads, and what is measured."""
    changed: list[str] = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata()
            wide = [k for k in handle.keys() if handle.get_slice(k).get_dtype() in ("F32", "F64")
                    and not k.endswith(_KEEP_WIDE)]
        if not wide:
            continue
        tensors = load_file(str(path))
        for key in wide:
            tensors[key] = tensors[key].to(dtype)
        save_file(tensors, str(path), metadata=metadata)
        changed += wide
    return changed


def keep_shape_fields(config, path: Path) -> None:
    """llm-compressor's save re-writes the config read from the original model folder; a structural
    step earlier in the chain changed the shapes, so the in-memory values are put back."""
    saved = json.loads(path.read_text())
    for field in SHAPE_FIELDS:
        if hasattr(config, field) and getattr(config, field) is not None:
            saved[field] = getattr(config, field)
    path.write_text(json.dumps(saved, indent=2))


def cast_floats(state: dict, dtype: torch.dtype) -> dict:
    """Cast float tensors, keeping the state dict's `_metadata` (quantized modules need its versions)."""
    cast, seen = type(state)(), {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            # tied weights (embeddings / lm_head) share storage: cast once so they stay shared
            ptr = value.data_ptr()
            value = seen.setdefault(ptr, value.to(dtype))
        cast[key] = value
    if hasattr(state, "_metadata"):
        cast._metadata = state._metadata
    return cast


def unify_float_dtype(model, dtype: torch.dtype) -> None:
    """Plain float tensors in the compute dtype. transformers leaves some in the stored dtype when a
    compressed-tensors checkpoint renames a key on load (GPT-NeoX's embed_out -> lm_head stays
    bfloat16), which then fails in matmul against float32 activations."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if type(param) is torch.nn.Parameter and param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)
