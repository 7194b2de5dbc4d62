"""Load any causal LM (hub id, local folder, or the embedded default) for CPU/GPU work.

Errors are translated to the seed's codes: a name that cannot be resolved is E002, a hub that
cannot be reached is E006. Compute on CPU is float32 (half precision is many times slower there).

Model references are validated before anything is fetched or opened (`validate_model_ref`): an
existing folder must hold a `config.json`; anything else must be a well-formed hub id
(`name` or `org/name`). A model that ships its own Python code (`auto_map` in its config) is
never run: `trust_remote_code` is passed as False to transformers unless the user opted in
(`--trust-remote-code`, config `trust_remote_code`); the loader then says E002 and names the flag.
The opt-in is an argument (the experiment record's field, core/experiment.py), passed down by whoever
loads, never a process-wide switch: two experiments in one process cannot leak it to each other.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from greenai_dagster.core.data.benchmarks import hub_available
from greenai_dagster.core.errors import ModelLoadError, NetworkError
from greenai_dagster.core.models.default_model import ensure_default_checkpoint
from greenai_dagster.core.models.memory import check_fits

DEFAULT_MODEL = "smollm2-135m-instruct"
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
HUB_ID = re.compile(rf"^(?:{_HUB_PART}/)?{_HUB_PART}$")


def validate_model_ref(model_ref) -> None:
    """E002 for a reference that is neither a model folder nor a well-formed hub id (nothing fetched)."""
    remedy = ("Pass a local model folder (one with config.json), a hub id such as 'HuggingFaceTB/SmolLM2-135M', "
              "or omit -m for the embedded default.")
    if not isinstance(model_ref, str) or not model_ref.strip():
        raise ModelLoadError("the model reference is empty.", remedy)
    shown = repr(model_ref[:120])
    if model_ref != model_ref.strip() or any(ord(c) < 32 for c in model_ref):
        raise ModelLoadError(f"the model reference {shown} has surrounding spaces or control characters.", remedy)
    path = Path(model_ref).expanduser()
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError:   # a name the file system cannot hold (too long): not a folder; judged as a hub id below
        is_dir = exists = False
    if is_dir:
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"'{model_ref}' is a folder but not a model folder (no config.json).", remedy)
        return
    if exists:
        raise ModelLoadError(f"'{model_ref}' is a file, not a model folder or hub id.", remedy)
    if model_ref.startswith((".", "/", "~")) or "\\" in model_ref or model_ref.count("/") > 1:
        raise ModelLoadError(f"no model folder at '{model_ref}'.", remedy)
    if not HUB_ID.match(model_ref) or ".." in model_ref or "--" in model_ref:
        raise ModelLoadError(f"{shown} is neither an existing folder nor a valid hub id (name or org/name: letters, "
                             "digits, '-', '_', '.'; at most 96 characters each).", remedy)


def resolve_model_path(model_ref: str | None) -> str:
    """Map the user's model reference to something `from_pretrained` accepts (validated first).

    None or the default's name gives the embedded default (converted once, then cached).
    """
    if model_ref in (None, DEFAULT_MODEL, "default"):
        return str(ensure_default_checkpoint())
    validate_model_ref(model_ref)
    return model_ref


def _is_network_failure(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    markers = (
        "connection", "resolve", "offline", "network", "timed out", "max retries",
        "couldn't connect", "could not connect", "name or service not known", "temporary failure",
    )
    return any(m in text for m in markers)


def load_config(model_ref: str, trust_remote_code: bool = False):
    """The model's transformers config; `trust_remote_code`: the user's opt-in (see the module's note)."""
    from transformers import AutoConfig

    path = resolve_model_path(model_ref)
    # A hub id while the hub is unreachable: the local cache only, so E006 comes at once instead of after
    # huggingface_hub's retries (about 30 s).
    cache_only = not _exists(path) and not _hub_up()
    try:
        return AutoConfig.from_pretrained(path, local_files_only=cache_only, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - translated into the seed's codes
        raise _translate(model_ref, exc) from exc


def _exists(ref: str) -> bool:
    """A local file or folder? (A name too long for the file system is not one.)"""
    try:
        return Path(ref).exists()
    except OSError:
        return False


def _hub_up() -> bool:
    return hub_available()


def remote_code_refused(model_ref: str) -> ModelLoadError:
    return ModelLoadError(
        f"model '{model_ref}' ships its own Python code (auto_map), which is not run unless you opt in.",
        "Use a model transformers supports natively, or pass --trust-remote-code (config \"trust_remote_code\": "
        "true) if you have read its code and trust it.")


def _translate(model_ref: str, exc: BaseException) -> Exception:
    if "trust_remote_code" in str(exc):
        return remote_code_refused(model_ref)
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


def load_skeleton(model_ref: str, trust_remote_code: bool = False):
    """The model's modules on the meta device, no weight read: what the spec needs (shapes, layer types,
    tied embeddings) at no memory cost. Loading an 8B model in float32 on the CPU only to read its shapes
    took 32 GB of host memory and most of a minute."""
    from transformers import AutoModelForCausalLM

    config = load_config(model_ref, trust_remote_code)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise _translate(model_ref, exc) from exc
    return model.eval()


def load_model_and_tokenizer(model_ref: str, device: str = "cpu", dtype: torch.dtype | None = None,
                             trust_remote_code: bool = False):
    """Return (model, tokenizer) in eval mode on `device`, float32 on CPU unless told otherwise; a model
    shipping its own code loads only with `trust_remote_code` (the user's opt-in), else E002."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(model_ref)
    if dtype is None:
        dtype = torch.float32 if device == "cpu" else torch.bfloat16

    config = load_config(model_ref, trust_remote_code)
    check_fits(model_ref, config, device, dtype, trust_remote_code)   # E003 before loading what cannot fit
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise _translate(model_ref, exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer
