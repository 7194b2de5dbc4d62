"""Structured pruning: remove whole FFN neurons and whole attention head groups by importance.

Importance is activation-aware (Wanda-style at the granularity of a neuron or head group):
mean |input activation| on calibration text times the L2 norm of the weights that read it.
Every layer keeps the same number of neurons / head groups (chosen per layer), so the result is
an ordinary config with smaller `intermediate_size` / head counts: the saved checkpoint is
smaller on disk and loads with plain `from_pretrained`. Widths are rounded down to multiples of
`align` so grouped quantization can follow in a chain. Dense Llama-style decoders (gate/up/down
MLP, q/k/v/o attention, e.g. Llama, Qwen2, Mistral) are supported; other layouts (fused qkv,
Conv1D, fc1/fc2 MLPs, mixtures of experts) are left out of their search space, and refused with
E005 if asked for.
"""

from __future__ import annotations

import torch
from pydantic import Field

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionContext, CompressionMethod, MethodParams, MethodResult
from greenai_dagster.core.models import arch


class StructuredParams(MethodParams):
    sparsity: float = Field(0.3, ge=0.05, le=0.8)
    prune_heads: bool = True
    align: int = Field(64, ge=1)
    num_calibration_samples: int = Field(32, ge=1, le=1024)
    calibration_seq_len: int = Field(128, ge=16, le=4096)


MLP_NAMES = ("gate_proj", "up_proj", "down_proj")
ATTN_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj")


def layout_problem(model) -> str | None:
    """Why this model's blocks are not the Llama-style layout structured pruning slices (None: they are)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None or not len(layers):
        return f"it slices Llama-style decoders (model.layers[i]); {type(model).__name__} is laid out differently"
    for i, layer in enumerate(layers):
        mlp, attn = getattr(layer, "mlp", None), getattr(layer, "self_attn", None)
        missing = [f"mlp.{n}" for n in MLP_NAMES if not isinstance(getattr(mlp, n, None), torch.nn.Linear)]
        missing += [f"self_attn.{n}" for n in ATTN_NAMES if not isinstance(getattr(attn, n, None), torch.nn.Linear)]
        if missing:
            kind = "a mixture-of-experts block" if getattr(mlp, "experts", None) is not None else "another layout"
            return (f"it slices dense Llama-style blocks (mlp.gate/up/down_proj, self_attn.q/k/v/o_proj as nn.Linear); "
                    f"layer {i} of {type(model).__name__} has {kind} (no {', '.join(missing[:3])})")
    cfg = arch.text_config(model.config)
    if not all(getattr(cfg, f, None) for f in ("num_attention_heads", "num_key_value_heads", "intermediate_size")):
        return "its config lacks num_attention_heads / num_key_value_heads / intermediate_size"
    return None


def _layers(model):
    problem = layout_problem(model)
    if problem:
        raise CompressionFailed(f"structured pruning cannot prune {type(model).__name__}: {problem}.",
                                "Use magnitude, sparsegpt or wanda pruning for this architecture.")
    return model.model.layers


def _slice_linear(linear: torch.nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> torch.nn.Linear:
    weight = linear.weight.data
    bias = linear.bias.data if linear.bias is not None else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype, device=weight.device)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new


@torch.no_grad()
def input_activation_means(model, modules: dict[str, torch.nn.Module], batches: list[list[int]]) -> dict[str, torch.Tensor]:
    """Mean |x| per input feature of each module, over calibration tokens."""
    sums, counts, hooks = {}, {}, []
    for name, module in modules.items():
        def hook(mod, args, _name=name):
            x = args[0].detach().float().abs().reshape(-1, args[0].shape[-1])
            sums[_name] = sums.get(_name, 0) + x.sum(0)
            counts[_name] = counts.get(_name, 0) + x.shape[0]
        hooks.append(module.register_forward_pre_hook(hook))
    device = next(model.parameters()).device
    try:
        for ids in batches:
            model(input_ids=torch.tensor([ids], device=device))
    finally:
        for h in hooks:
            h.remove()
    # a layer no calibration token reached (e.g. an expert never routed to) weighs its inputs evenly
    return {name: sums[name] / counts[name] if name in counts else
            torch.ones(arch.linear_shape(module)[0], device=device) for name, module in modules.items()}


class StructuredPrune(CompressionMethod):
    name = "structured"
    family = "pruning"
    Params = StructuredParams

    def unsupported(self, model, spec):
        return layout_problem(model)

    def widths_after(self, params, spec) -> set[int]:
        """Input widths of the pruned linears (for a group size later in the chain)."""
        keep = int((1 - params["sparsity"]) * spec.intermediate_size) // params["align"] * params["align"]
        widths = {keep, spec.hidden_size}
        if params.get("prune_heads", True) and spec.num_key_value_heads > 1:
            group = spec.num_attention_heads // spec.num_key_value_heads
            keep_kv = max(spec.num_key_value_heads - round(params["sparsity"] * spec.num_key_value_heads), 1)
            widths.add(keep_kv * group * spec.head_dim)
        return widths

    def check(self, params, spec):
        if spec.intermediate_size is None:
            raise CompressionFailed("structured pruning needs an MLP intermediate size in the model config.")
        keep = int((1 - params.sparsity) * spec.intermediate_size) // params.align * params.align
        if keep < params.align:
            raise CompressionFailed(f"sparsity {params.sparsity} leaves no FFN neurons at align {params.align}.",
                                    "Lower the sparsity or the align value.")

    def label(self, params):
        return f"structured_s{round(params['sparsity'] * 100)}" + ("" if params.get("prune_heads", True) else "_ffn")

    def features(self, params):
        return {"sparsity": params["sparsity"], "structured": 1.0}

    @torch.no_grad()
    def apply(self, model, params: StructuredParams, ctx: CompressionContext) -> MethodResult:
        layers = _layers(model)
        cfg = model.config
        n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
        group = n_heads // n_kv
        keep_ffn = int((1 - params.sparsity) * cfg.intermediate_size) // params.align * params.align
        drop_groups = round(params.sparsity * n_kv) if params.prune_heads and n_kv > 1 else 0
        keep_kv = max(n_kv - drop_groups, 1)

        probes = {}
        for i, layer in enumerate(layers):
            probes[f"{i}.down"] = layer.mlp.down_proj
            probes[f"{i}.o"] = layer.self_attn.o_proj
        activations = input_activation_means(model, probes, ctx.calibration(params.num_calibration_samples,
                                                                              params.calibration_seq_len))
        for i, layer in enumerate(layers):
            mlp, attn = layer.mlp, layer.self_attn
            score = activations[f"{i}.down"] * mlp.down_proj.weight.float().norm(dim=0)
            neurons = score.topk(keep_ffn).indices.sort().values
            mlp.gate_proj = _slice_linear(mlp.gate_proj, rows=neurons)
            mlp.up_proj = _slice_linear(mlp.up_proj, rows=neurons)
            mlp.down_proj = _slice_linear(mlp.down_proj, cols=neurons)
            if keep_kv < n_kv:
                per_col = activations[f"{i}.o"] * attn.o_proj.weight.float().norm(dim=0)
                group_score = per_col.reshape(n_kv, group * head_dim).sum(-1)
                groups = group_score.topk(keep_kv).indices.sort().values
                q_heads = torch.cat([torch.arange(g * group, (g + 1) * group) for g in groups.tolist()])
                q_cols = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in q_heads.tolist()])
                kv_cols = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim) for g in groups.tolist()])
                attn.q_proj = _slice_linear(attn.q_proj, rows=q_cols)
                attn.k_proj = _slice_linear(attn.k_proj, rows=kv_cols)
                attn.v_proj = _slice_linear(attn.v_proj, rows=kv_cols)
                attn.o_proj = _slice_linear(attn.o_proj, cols=q_cols)
        cfg.intermediate_size = keep_ffn
        cfg.head_dim = head_dim
        if keep_kv < n_kv:
            cfg.num_key_value_heads = keep_kv
            cfg.num_attention_heads = keep_kv * group
            for layer in layers:
                if hasattr(layer.self_attn, "config"):
                    layer.self_attn.config = cfg
        return MethodResult(model, {"intermediate_size": keep_ffn, "num_attention_heads": cfg.num_attention_heads,
                                    "num_key_value_heads": cfg.num_key_value_heads,
                                    "parameters": sum(p.numel() for p in model.parameters())})
