"""Magnitude pruning (torch): zero the smallest |w| of every decoder linear layer.

Unstructured (per layer, `sparsity` fraction) or N:M (in every group of M consecutive input
weights keep the N largest, e.g. 2:4). The reference SparseGPT and Wanda must beat.
"""

from __future__ import annotations

import torch
from torch.nn.utils import prune

from greenai_dagster.core.methods.base import CompressionContext, MethodResult
from greenai_dagster.core.methods.sparsity import OneShotPruneParams, PruningMethod, linear_sparsity
from greenai_dagster.core.models import arch


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest-magnitude weights in each run of m along the input dimension."""
    groups = weight.abs().reshape(weight.shape[0], -1, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(weight.shape)


class MagnitudePrune(PruningMethod):
    name = "magnitude"

    @torch.no_grad()
    def apply(self, model, params: OneShotPruneParams, ctx: CompressionContext) -> MethodResult:
        n, m = map(int, params.mask_structure.split(":"))
        linearized = arch.linearize_experts(model) if arch.expert_layout(model) == "per-expert" else 0
        for module in arch.quantizable_linears(model).values():
            if m:   # N:M along the input dimension (a Conv1D stores its weight as [in, out])
                weight = module.weight.t() if arch.is_conv1d(module) else module.weight
                weight.mul_(nm_mask(weight, n, m))
            else:
                prune.l1_unstructured(module, "weight", amount=params.sparsity)
                prune.remove(module, "weight")  # make the zeros permanent, drop the mask buffers
        if linearized:
            arch.repack_float_experts(model)
        return MethodResult(model, {"measured_sparsity": linear_sparsity(model), "engine": "torch"})
