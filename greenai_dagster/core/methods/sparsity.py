"""One-shot pruning with calibration: SparseGPT (OBS-style weight update) and Wanda (|W|*||x||),
both from llm-compressor, unstructured or N:M (e.g. 2:4). Saved in compressed-tensors with its
sparsity compressor (bitmask / 2:4), so size on disk shrinks where the format allows."""

from __future__ import annotations

import re

import torch
from pydantic import Field, field_validator

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionContext, CompressionMethod, MethodParams, MethodResult
from greenai_dagster.core.methods.llmcompressor_oneshot import run_oneshot


class OneShotPruneParams(MethodParams):
    sparsity: float = Field(0.5, ge=0.05, le=0.9)
    mask_structure: str = "0:0"   # "0:0" unstructured, "2:4" semi-structured
    num_calibration_samples: int = Field(64, ge=1, le=1024)
    calibration_seq_len: int = Field(128, ge=16, le=4096)

    @field_validator("mask_structure")
    @classmethod
    def _nm(cls, value: str) -> str:
        if not re.fullmatch(r"\d+:\d+", value):
            raise ValueError("mask_structure must look like 'N:M' (e.g. '2:4', or '0:0' for unstructured)")
        return value


def linear_sparsity(model) -> float:
    """Fraction of exact zeros over the decoder's linear weights (the head excluded)."""
    head = model.get_output_embeddings()
    zeros = total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            zeros += (module.weight == 0).sum().item()
            total += module.weight.numel()
    return zeros / total


def check_nm(params, spec) -> None:
    n, m = map(int, params.mask_structure.split(":"))
    if m and (n >= m or any(w % m for w in spec.linear_in_features)):
        raise CompressionFailed(f"mask structure {params.mask_structure} does not fit the layer widths.",
                                "Use '2:4' or '0:0'.")
    if m and abs(params.sparsity - (m - n) / m) > 1e-6:
        raise CompressionFailed(f"sparsity {params.sparsity} disagrees with {params.mask_structure} "
                                f"(which is {(m - n) / m:g}).", f"Set sparsity to {(m - n) / m:g}.")


class _OneShotPrune(CompressionMethod):
    family = "pruning"
    Params = OneShotPruneParams
    modifier_name: str

    def check(self, params, spec):
        check_nm(params, spec)

    def label(self, params):
        structure = params["mask_structure"]
        return f"{self.name}_{structure.replace(':', 'of')}" if structure != "0:0" else f"{self.name}_s{round(params['sparsity'] * 100)}"

    feature_flags: dict = {}

    def features(self, params):
        return {"sparsity": params["sparsity"], "n_m": float(params.get("mask_structure", "0:0") != "0:0"),
                **self.feature_flags}

    def apply(self, model, params: OneShotPruneParams, ctx: CompressionContext) -> MethodResult:
        from llmcompressor.modifiers import pruning

        modifier = getattr(pruning, self.modifier_name)(
            sparsity=params.sparsity, mask_structure=params.mask_structure, targets=["Linear"], ignore=["re:.*lm_head"])
        run_oneshot(model, ctx, [modifier], params.num_calibration_samples, params.calibration_seq_len, self.name)
        return MethodResult(model, {"measured_sparsity": linear_sparsity(model), "engine": f"llmcompressor {self.modifier_name}"})


class SparseGpt(_OneShotPrune):
    name = "sparsegpt"
    modifier_name = "SparseGPTModifier"
    feature_flags = {"error_feedback": 1.0}     # second-order weight reconstruction


class Wanda(_OneShotPrune):
    name = "wanda"
    modifier_name = "WandaPruningModifier"
    feature_flags = {"activation_aware": 1.0}   # |W| x input norm
