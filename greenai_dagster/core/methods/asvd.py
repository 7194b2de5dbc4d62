"""ASVD: activation-aware SVD of the decoder's linear layers (our code, torch only).

For W (out x in) and per-input-channel activation scale s = mean|x|^alpha on calibration text,
factor W diag(s) = U S V^T, keep the top k singular values and store two thin layers:
A = V_k^T diag(1/s) (k x in) then B = U_k S_k (out x k). Channels that carry large activations
are thus approximated more precisely. `param_ratio` sets k so each layer keeps that fraction of
its parameters: k = ratio * in*out / (in+out), rounded down to a multiple of `align`.
Saved as a normal safetensors checkpoint plus the rank map; `core.models.checkpoints` rebuilds the
thin layers from the map before loading the weights.
"""

from __future__ import annotations

import torch
from pydantic import Field

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.formats import lowrank
from greenai_dagster.core.formats.lowrank import LowRankLinear, replace_module
from greenai_dagster.core.methods.base import (CompressionContext, CompressionMethod, MethodParams, MethodResult,
                                               needs_linears)
from greenai_dagster.core.methods.structured import input_activation_means
from greenai_dagster.core.models import arch


class AsvdParams(MethodParams):
    param_ratio: float = Field(0.5, gt=0.05, lt=1.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    align: int = Field(8, ge=1)
    num_calibration_samples: int = Field(32, ge=1, le=1024)
    calibration_seq_len: int = Field(128, ge=16, le=4096)


def target_rank(in_features: int, out_features: int, ratio: float, align: int) -> int:
    return max(int(ratio * in_features * out_features / (in_features + out_features)) // align * align, align)


def decoder_linears(model) -> dict[str, torch.nn.Linear]:
    """The linears ASVD factorizes: every quantizable one (`core.models.arch`; Conv1D layers become nn.Linear first)."""
    arch.conv1d_to_linear(model)
    return dict(arch.quantizable_linears(model))


class Asvd(CompressionMethod):
    name = "asvd"
    family = "low_rank"
    Params = AsvdParams
    must_be_last = True  # the thin layers are not nn.Linear, which the quantizers and pruners expect
    checkpoint_format = lowrank.MARKER

    def unsupported(self, model, spec):
        return needs_linears(spec)

    def note(self, model, spec):
        if spec.expert_layout:
            return "the fused experts are not factorized (they are not linear modules); attention and dense layers are"
        return None

    def check(self, params, spec):
        if target_rank(spec.min_linear_rank, spec.min_linear_rank, params.param_ratio, params.align) >= spec.min_linear_rank:
            raise CompressionFailed(f"param_ratio {params.param_ratio} gives no rank reduction on "
                                    f"{spec.min_linear_rank}-wide layers.", "Use a smaller param_ratio.")

    def label(self, params):
        return f"asvd_r{round(params['param_ratio'] * 100)}"

    def features(self, params):
        return {"rank_ratio": params["param_ratio"], "activation_aware": 1.0}

    @torch.no_grad()
    def apply(self, model, params: AsvdParams, ctx: CompressionContext) -> MethodResult:
        linears = decoder_linears(model)
        activations = input_activation_means(model, linears, ctx.calibration(params.num_calibration_samples,
                                                                               params.calibration_seq_len))
        ranks, before, after = {}, 0, 0
        for name, linear in linears.items():
            weight = linear.weight.data.float()
            scale = activations[name].clamp_min(1e-6).pow(params.alpha)
            u, s, vh = torch.linalg.svd(weight * scale, full_matrices=False)
            k = target_rank(linear.in_features, linear.out_features, params.param_ratio, params.align)
            k = min(k, s.numel())
            low = LowRankLinear(linear.in_features, linear.out_features, k, linear.bias is not None, dtype=linear.weight.dtype)
            low[0].weight.data.copy_(vh[:k] / scale)
            low[1].weight.data.copy_(u[:, :k] * s[:k])
            if linear.bias is not None:
                low[1].bias.data.copy_(linear.bias.data)
            replace_module(model, name, low)
            ranks[name] = k
            before += weight.numel()
            after += k * (linear.in_features + linear.out_features)
        return MethodResult(model, {"lowrank_ranks": ranks, "linear_params_before": before, "linear_params_after": after,
                                    "linear_param_ratio": after / before})
