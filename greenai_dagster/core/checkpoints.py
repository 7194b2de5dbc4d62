"""Save and reload compressed variants, whatever format their last step produced.

Every checkpoint folder holds `greenai_variant.json` naming its format, so one loader
(`load_variant`) opens any of them in a fresh process:
- `hf`: a normal transformers folder (llm-compressor's compressed-tensors format included);
  reload with plain `AutoModelForCausalLM.from_pretrained`.
- `lowrank`: ASVD's thin layer pairs; config + safetensors (keyed by module name) + the rank map in
  greenai_variant.json; reloaded by building the model from config, installing thin layers of those
  ranks, then loading.
- any architecture (`core.arch`): a checkpoint whose Conv1D layers (GPT-2) were turned into
  nn.Linear for a quantizer says `conv1d_as_linear` and is rebuilt that way before loading; quantized
  experts of a mixture of experts are saved per expert under the names transformers' own checkpoint
  conversion expects (e.g. Mixtral's w1/w3/w2), so its loader stacks them into the fused experts.
- any folder may hold `lora_adapter/` (LoRA on a quantized base): loaded on top with peft.
- `torch_int8_dynamic`: torch dynamic-quantized modules cannot go through `save_pretrained`;
  we save config + tokenizer + the quantized state dict (`int8_state_dict.pt`), and reload by
  rebuilding the architecture from config, re-applying `quantize_dynamic`, and loading the state.
  The state is read with `torch.load(weights_only=True)`: tensors, quantized tensors, dtypes and
  plain containers only. A file that would need anything else to unpickle (a checkpoint someone
  crafted to run code on load) is refused with E002 before any of its objects is built.
Float tensors are stored in the baseline's storage dtype (bfloat16), so sizes compare fairly.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import torch

from greenai_dagster.core import arch
from greenai_dagster.core.errors import DiskFull, ModelLoadError

VARIANT_FILE = "greenai_variant.json"
INT8_STATE_FILE = "int8_state_dict.pt"
ADAPTER_DIR = "lora_adapter"
GGUF_FILE = "model.gguf"          # the `gguf` method's checkpoint: a llama.cpp file
STORAGE_DTYPE = torch.bfloat16


def save_variant(model, tokenizer, out_dir: Path, checkpoint_format: str, metadata: dict) -> Path:
    """Write the checkpoint to `<out_dir>.partial`, marker file (greenai_variant.json) last, then rename: a
    killed save leaves nothing half-done under `out_dir` (tests/test_faults_kill.py kills one mid-write)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        if checkpoint_format == "gguf":   # the llama.cpp file the `gguf` method wrote, moved in as is
            produced = Path(metadata["step_reports"][-1]["gguf_file"])
            shutil.move(str(produced), tmp / GGUF_FILE)
            shutil.rmtree(produced.parent, ignore_errors=True)
            model.config.save_pretrained(tmp)
        elif checkpoint_format == "torch_int8_dynamic":
            model.config.save_pretrained(tmp)
            torch.save(_cast_floats(model.state_dict(), STORAGE_DTYPE), tmp / INT8_STATE_FILE)
        else:
            if hasattr(model, "peft_config"):  # LoRA kept beside a quantized base
                model.save_pretrained(tmp / ADAPTER_DIR)
                model = model.unload()
            if getattr(model, "is_loaded_in_4bit", False):
                # bitsandbytes NF4 weights keep their packed layout; only the float rest is cast
                for param in model.parameters():
                    if param.is_floating_point():
                        param.data = param.data.to(STORAGE_DTYPE)
            else:
                model.to(STORAGE_DTYPE)
            if checkpoint_format == "lowrank":
                _save_module_state(model, tmp)
            else:
                model.save_pretrained(tmp)
                if getattr(model, arch.LINEAR_EXPERTS_FLAG, False):
                    arch.rename_expert_keys(tmp, model.config.model_type)
            narrowed = narrow_floats_on_disk(tmp)
            if narrowed:
                metadata = {**metadata, "narrowed_on_disk": len(narrowed)}
            _keep_shape_fields(model.config, tmp / "config.json")
        tokenizer.save_pretrained(tmp)
        if getattr(model, arch.CONV1D_FLAG, False) and checkpoint_format in ("hf", "lowrank"):
            metadata = {**metadata, "conv1d_as_linear": True}
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


# float tensors that compressed-tensors keeps in float32 on purpose (NVFP4's per-tensor scale)
_KEEP_WIDE = ("global_scale",)


def narrow_floats_on_disk(folder: Path, dtype: torch.dtype = STORAGE_DTYPE) -> list[str]:
    """Re-store every float32/float64 tensor of `folder`'s safetensors files in `dtype`; the names changed.

    `model.to(dtype)` before saving is not always what reaches the disk: on a GPU machine llm-compressor's
    save of an offloaded model wrote the float32 copies (embeddings and group scales in float32 made a 3-bit
    SmolLM2 0.160 GB instead of 0.100), so a checkpoint's size, and what it loads as, depended on the machine
    that made it. This makes the file the same on every machine: what a user downloads, and what is measured."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

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


def _save_module_state(model, folder: Path) -> None:
    """config + one safetensors file keyed by module names (transformers' save may rename keys for its
    checkpoint layout, e.g. GPT-NeoX's lm_head -> embed_out, which `_load_lowrank` could not match)."""
    from safetensors.torch import save_model

    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _cast_floats(state: dict, dtype: torch.dtype) -> dict:
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


SHAPE_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "num_hidden_layers")


def _keep_shape_fields(config, path: Path) -> None:
    """llm-compressor's save re-writes the config read from the original model folder; a structural
    step earlier in the chain changed the shapes, so the in-memory values are put back."""
    saved = json.loads(path.read_text())
    for field in SHAPE_FIELDS:
        if hasattr(config, field) and getattr(config, field) is not None:
            saved[field] = getattr(config, field)
    path.write_text(json.dumps(saved, indent=2))


def checkpoint_format(folder: Path) -> str:
    marker = Path(folder) / VARIANT_FILE
    return json.loads(marker.read_text())["format"] if marker.exists() else "hf"


def load_variant(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None):
    """Return (model, tokenizer) for any checkpoint folder this project wrote (or a plain HF folder);
    compute dtype float32 on CPU and bfloat16 on an accelerator unless `dtype` says otherwise.
    A model's own Python code is run only inside the user's opt-in (`loading.remote_code_allowed`)."""
    from greenai_dagster.core.loading import load_model_and_tokenizer, remote_code_refused

    if not Path(folder).is_dir():  # a hub id (the baseline of a hub model)
        return load_model_and_tokenizer(str(folder), device=device, dtype=dtype)
    try:
        return _load_folder(Path(folder), device, dtype)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise remote_code_refused(str(folder)) from None
        raise


def _load_folder(folder: Path, device: str, dtype: torch.dtype | None):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from greenai_dagster.core.loading import trust_remote_code

    remote = {"trust_remote_code": trust_remote_code()}
    if not (folder / "config.json").exists():
        raise ModelLoadError(f"no checkpoint at {folder}.", "Check the experiment folder, or re-run the episode.")
    fmt = checkpoint_format(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, **remote)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    compute_dtype = dtype or (torch.float32 if device == "cpu" else torch.bfloat16)
    meta = json.loads((folder / VARIANT_FILE).read_text()) if (folder / VARIANT_FILE).exists() else {}
    if fmt == "torch_int8_dynamic":
        from greenai_dagster.core.methods.int8_dynamic import quantize_linears_int8

        config = AutoConfig.from_pretrained(folder, **remote)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, **remote)
        model = quantize_linears_int8(model)
        state = load_int8_state(folder / INT8_STATE_FILE)
        model.load_state_dict(_cast_floats(state, torch.float32))
        if device != "cpu":   # torch's dynamic int8 kernels are CPU-only: float weights on the int8 grid
            from greenai_dagster.core.runtimes.cuda_int8 import dequantize_int8_dynamic

            model = dequantize_int8_dynamic(model).to(device=device, dtype=compute_dtype)
        return model.eval(), tokenizer
    if fmt == "gguf":   # llama.cpp blocks expanded to float by transformers' GGUF loader
        return AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=GGUF_FILE, dtype=compute_dtype,
                                                    **remote).to(device).eval(), tokenizer
    with arch.load_patches(AutoConfig.from_pretrained(folder, **remote), bool(meta.get("conv1d_as_linear"))):
        if fmt == "lowrank":
            model = _load_lowrank(folder, compute_dtype, remote)
        elif (folder / ADAPTER_DIR).exists() and _is_compressed_tensors(folder):
            # peft wraps nn.Linear weights, so the packed base is decompressed into float weights
            # (still on the quantization grid) before the adapter goes on top.
            from transformers import CompressedTensorsConfig

            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=compute_dtype, quantization_config=CompressedTensorsConfig(run_compressed=False),
                **remote)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=compute_dtype, **remote)
    _unify_float_dtype(model, compute_dtype)
    if (folder / ADAPTER_DIR).exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, folder / ADAPTER_DIR)
    return model.to(device).eval(), tokenizer


def load_int8_state(path: Path) -> dict:
    """The int8 state dict, unpickled by torch's weights-only unpickler (never arbitrary objects)."""
    from pickle import UnpicklingError   # the exception only; nothing here unpickles with it

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"int8 checkpoint {path.parent} has no {path.name}.",
                             "Re-run the episode, or unpack the exported archive completely.") from None
    except (UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        # weights_only refuses any global it does not know; the text names it (first line only)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"refused to load {path}: it is not a plain tensor file ({first}).",
            "Only load checkpoints this project wrote; a file that needs arbitrary objects to unpickle could run "
            "code, so it is never loaded.") from None


def _unify_float_dtype(model, dtype: torch.dtype) -> None:
    """Plain float tensors in the compute dtype. transformers leaves some in the stored dtype when a
    compressed-tensors checkpoint renames a key on load (GPT-NeoX's embed_out -> lm_head stays
    bfloat16), which then fails in matmul against float32 activations."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if type(param) is torch.nn.Parameter and param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)


def _is_compressed_tensors(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return config.get("quantization_config", {}).get("quant_method") == "compressed-tensors"


def _load_lowrank(folder: Path, dtype: torch.dtype, remote: dict):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from greenai_dagster.core.methods.asvd import install_low_rank

    meta = json.loads((folder / VARIANT_FILE).read_text())
    ranks = next(r["lowrank_ranks"] for r in meta["step_reports"] if "lowrank_ranks" in r)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder, **remote), dtype=dtype, **remote)
    install_low_rank(model, ranks)
    state = {}
    for shard in sorted(folder.glob("*.safetensors")):
        state.update(load_file(shard))
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(params[k]) for k in state if k in params}
    missing = [k for k in missing if not (k in params and id(params[k]) in loaded)]  # tied weights are stored once
    missing = [k for k in missing if not k.endswith("lm_head.weight")]   # older checkpoints: tied head left out
    if missing or unexpected:
        raise ModelLoadError(f"low-rank checkpoint {folder} does not match its rank map "
                             f"(missing {missing[:2]}, unexpected {unexpected[:2]}).")
    model.tie_weights()
    return model
