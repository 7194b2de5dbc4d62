"""Load any causal LM (hub id, local folder, or the embedded default) for CPU/GPU work.

Errors are translated to the seed's codes: a name that cannot be resolved is E002, a hub that
cannot be reached is E006. Compute on CPU is float32 (half precision is many times slower there).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from greenai_dagster.core.errors import ModelLoadError, NetworkError

DEFAULT_MODEL = "smollm2-135m-instruct"


def resolve_model_path(model_ref: str | None) -> str:
    """Map the user's model reference to something `from_pretrained` accepts.

    None or the default's name gives the embedded default (converted once, then cached).
    """
    if model_ref in (None, "", DEFAULT_MODEL, "default"):
        from greenai_dagster.core.default_model import ensure_default_checkpoint

        return str(ensure_default_checkpoint())
    return model_ref


def _is_network_failure(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    markers = (
        "connection", "resolve", "offline", "network", "timed out", "max retries",
        "couldn't connect", "could not connect", "name or service not known", "temporary failure",
    )
    return any(m in text for m in markers)


def load_config(model_ref: str):
    from transformers import AutoConfig

    path = resolve_model_path(model_ref)
    # A hub id while the hub is unreachable: the local cache only, so E006 comes at once instead of after
    # huggingface_hub's retries (about 30 s).
    cache_only = not _exists(path) and not _hub_up()
    try:
        return AutoConfig.from_pretrained(path, local_files_only=cache_only)
    except Exception as exc:  # noqa: BLE001 - translated into the seed's codes
        raise _translate(model_ref, exc) from exc


def _exists(ref: str) -> bool:
    """A local file or folder? (A name too long for the file system is not one.)"""
    try:
        return Path(ref).exists()
    except OSError:
        return False


def _hub_up() -> bool:
    from greenai_dagster.core.benchmarks import hub_available

    return hub_available()


def _translate(model_ref: str, exc: BaseException) -> Exception:
    if _exists(model_ref):
        return ModelLoadError(f"could not load model folder '{model_ref}': {exc}".splitlines()[0])
    if _is_network_failure(exc) or os.environ.get("HF_HUB_OFFLINE") == "1":
        return NetworkError(
            f"model '{model_ref}' is not cached locally and the Hugging Face hub is unreachable.",
            "Connect to the hub, pass a local folder with -m, or omit -m for the embedded default.",
        )
    return ModelLoadError(
        f"model '{model_ref}' could not be loaded ({type(exc).__name__}).",
        "Check the id on the hub (e.g. 'HuggingFaceTB/SmolLM2-135M'), or pass a local folder.",
    )


def load_model_and_tokenizer(model_ref: str, device: str = "cpu", dtype: torch.dtype | None = None):
    """Return (model, tokenizer) in eval mode on `device`, float32 on CPU unless told otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(model_ref)
    if dtype is None:
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as exc:  # noqa: BLE001
        raise _translate(model_ref, exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer
