"""One-shot pruning with calibration: SparseGPT (OBS-style weight update) and Wanda (|W|*||x||),
both from llm-compressor, unstructured or N:M (e.g. 2:4). Saved in compressed-tensors with its
sparsity compressor (bitmask / 2:4), so size on disk shrinks where the format allows."""

from __future__ import annotations

import re

import torch
from pydantic import Field, field_validator

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import (CompressionContext, CompressionMethod, MethodParams, MethodResult,
                                               needs_linears)
from greenai_dagster.core.methods.llmcompressor_oneshot import prepare, run_oneshot
from greenai_dagster.core.models import arch


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


def prunable_weights(model) -> list[torch.Tensor]:
    """The weights pruning acts on: every quantizable linear (Linear / Conv1D, not the head, not a router)
    and the experts of fused mixture-of-experts blocks."""
    weights = [m.weight for m in arch.quantizable_linears(model).values() if getattr(m, "weight", None) is not None]
    for block in arch.fused_experts(model).values():
        weights += [p for n, p in block.named_parameters(recurse=False) if p.dim() == 3 and not n.endswith("bias")]
    return weights


def linear_sparsity(model) -> float:
    """Fraction of exact zeros over the decoder's linear weights (head and routers excluded)."""
    zeros = total = 0
    for weight in prunable_weights(model):
        zeros += (weight == 0).sum().item()
        total += weight.numel()
    return zeros / total if total else 0.0


def pruning_note(spec) -> str | None:
    if spec.expert_layout == "fused":
        return "the fused experts are left dense (no per-expert layout is known for them); routers are not pruned"
    if spec.expert_layout:
        return "experts are pruned one linear per expert, then packed back into the fused layout; routers are not pruned"
    return None


def check_nm(params, spec) -> None:
    n, m = map(int, params.mask_structure.split(":"))
    bad = [w for w in spec.linear_in_features if m and w % m]
    if m and (n >= m or bad):
        where = (f": input width {bad[0]} of layer {spec.width_examples.get(str(bad[0]), '?')} is not a multiple of {m}"
                 if bad else "")
        raise CompressionFailed(f"mask structure {params.mask_structure} does not fit the layer widths{where}.",
                                "Use '0:0' (unstructured)." if bad else "Use '2:4' or '0:0'.")
    if m and abs(params.sparsity - (m - n) / m) > 1e-6:
        raise CompressionFailed(f"sparsity {params.sparsity} disagrees with {params.mask_structure} "
                                f"(which is {(m - n) / m:g}).", f"Set sparsity to {(m - n) / m:g}.")


class PruningMethod(CompressionMethod):
    """What every unstructured / N:M pruning method shares: its parameters, checks, label and features;
    each subclass says how it chooses the weights to zero (`apply`)."""

    family = "pruning"
    Params = OneShotPruneParams

    def unsupported(self, model, spec):
        return needs_linears(spec)

    def note(self, model, spec):
        return pruning_note(spec)

    def check(self, params, spec):
        check_nm(params, spec)

    def label(self, params):
        structure = params["mask_structure"]
        return f"{self.name}_{structure.replace(':', 'of')}" if structure != "0:0" else f"{self.name}_s{round(params['sparsity'] * 100)}"

    feature_flags: dict = {}

    def features(self, params):
        return {"sparsity": params["sparsity"], "n_m": float(params.get("mask_structure", "0:0") != "0:0"),
                **self.feature_flags}


class _OneShotPrune(PruningMethod):
    """Pruning through one of llm-compressor's one-shot modifiers (calibration activations decide)."""

    modifier_name: str

    def apply(self, model, params: OneShotPruneParams, ctx: CompressionContext) -> MethodResult:
        from llmcompressor.modifiers import pruning

        ignore = prepare(model)
        modifier = getattr(pruning, self.modifier_name)(
            sparsity=params.sparsity, mask_structure=params.mask_structure, targets=["Linear"], ignore=ignore)
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
