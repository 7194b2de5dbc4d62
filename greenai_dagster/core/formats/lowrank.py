"""Low-rank checkpoints: ASVD's thin layer pairs (`LowRankLinear`), which transformers' classes cannot build.

Saved as config + one safetensors file keyed by module names + the rank map in greenai_variant.json (the
ASVD step's report, `lowrank_ranks`); reloaded by building the model from its config, installing empty
thin layers of those ranks, then loading the tensors. The marker file says `lowrank`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_model

from greenai_dagster.core.errors import ModelLoadError
from greenai_dagster.core.formats.common import (arch_patches, compute_dtype, finish_float_save, marker, remote_kwargs,
                                                 to_storage_dtype, unify_float_dtype, variant_metadata)
from greenai_dagster.core.models import arch

NAME = "lowrank"
MARKER = "lowrank"


class LowRankLinear(torch.nn.Sequential):
    """x -> B(A(x)); a drop-in for nn.Linear with `in_features` / `out_features`."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool, dtype=None):
        super().__init__(torch.nn.Linear(in_features, rank, bias=False, dtype=dtype),
                         torch.nn.Linear(rank, out_features, bias=bias, dtype=dtype))
        self.in_features, self.out_features, self.rank = in_features, out_features, rank


def replace_module(model, name: str, new: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def install_low_rank(model, ranks: dict[str, int]) -> None:
    """Swap the named linears for empty LowRankLinear shells of the recorded ranks (used when loading)."""
    for name, rank in ranks.items():
        old = model.get_submodule(name)   # an nn.Linear, or a Conv1D where the architecture builds one
        n_in, n_out = arch.linear_shape(old)
        replace_module(model, name, LowRankLinear(n_in, n_out, rank, old.bias is not None, dtype=old.weight.dtype))


def detect(folder: Path) -> bool:
    return marker(folder) == MARKER


def save(model, folder: Path, metadata: dict) -> dict:
    """config + one safetensors file keyed by module names (transformers' save may rename keys for its
    checkpoint layout, e.g. GPT-NeoX's lm_head -> embed_out, which `load` could not match)."""
    to_storage_dtype(model)
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(Path(folder) / "model.safetensors"), metadata={"format": "pt"})
    return finish_float_save(model, folder, metadata)


def load_base(folder: Path, dtype: torch.dtype, remote: dict):
    with arch_patches(folder, remote):
        model = _build(folder, dtype, remote)
    unify_float_dtype(model, dtype)
    return model


def load(folder: Path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool = False):
    return load_base(Path(folder), compute_dtype(device, dtype), remote_kwargs(trust_remote_code)).to(device).eval()


def _build(folder: Path, dtype: torch.dtype, remote: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    meta = variant_metadata(folder)
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
