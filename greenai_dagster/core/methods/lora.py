"""LoRA recovery fine-tuning (peft) on calibration text, after any lossy step.

Trains rank-r adapters on the decoder's linear layers for a few steps (causal LM loss on
corpus windows) and reports the held-out loss before and after. On a float model the adapters
are merged (zeros of a pruned model are re-applied, so sparsity survives the merge). On a
quantized model (a GPTQ/AWQ/AutoRound step came first) merging would undo the quantization, so
the adapter is kept beside the compressed base (`lora_adapter/`) and loaded on top of it.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from greenai_dagster.core.methods.base import (CompressionContext, CompressionMethod, MethodParams, MethodResult,
                                               needs_linears)
from greenai_dagster.core.models import arch


def lora_targets(model) -> list[str]:
    """Full names of the layers adapters go on: every quantizable linear (`core.models.arch`: Linear or Conv1D,
    not the head, not a router), except per-expert linears (transformers packs experts into fused
    tensors, which peft cannot wrap)."""
    return sorted(n for n in arch.quantizable_linears(model) if not arch.is_expert_linear(n))


def lora_note(spec) -> str | None:
    if spec.expert_layout:
        return "adapters go on attention and dense layers; the experts are not adapted (fused tensors)"
    return None


class LoraParams(MethodParams):
    rank: int = Field(8, ge=1, le=256)
    alpha: int = Field(16, ge=1)
    steps: int = Field(30, ge=1, le=10000)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    batch_size: int = Field(4, ge=1)
    seq_len: int = Field(128, ge=16, le=4096)


def is_quantized(model) -> bool:
    return any(getattr(m, "quantization_scheme", None) is not None for m in model.modules())


@torch.no_grad()
def heldout_loss(model, batches: list[list[int]]) -> float:
    device = next(model.parameters()).device
    losses = [model(input_ids=torch.tensor([ids], device=device), labels=torch.tensor([ids], device=device)).loss.item()
              for ids in batches]
    return sum(losses) / len(losses)


def train_adapters(peft_model, train: list[list[int]], params: LoraParams) -> None:
    """AdamW on the adapter weights only, causal LM loss, `params.steps` batches; stops on a non-finite loss."""
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=params.learning_rate)
    device = next(peft_model.parameters()).device
    peft_model.train()
    for step in range(params.steps):
        batch = torch.tensor(train[step * params.batch_size:(step + 1) * params.batch_size], device=device)
        loss = peft_model(input_ids=batch, labels=batch).loss
        if not math.isfinite(loss.item()):
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.eval()


class Lora(CompressionMethod):
    name = "lora"
    family = "recovery"
    Params = LoraParams

    def unsupported(self, model, spec):
        return needs_linears(spec)

    def note(self, model, spec):
        return lora_note(spec)

    def label(self, params):
        return f"lora_r{params['rank']}_s{params['steps']}"

    def features(self, params):
        return {"recovery": 1.0}

    def apply(self, model, params: LoraParams, ctx: CompressionContext) -> MethodResult:
        from peft import LoraConfig, get_peft_model

        chunks = ctx.calibration(params.steps * params.batch_size + 8, params.seq_len)
        train, heldout = chunks[8:], chunks[:8]
        loss_before = heldout_loss(model, heldout)
        quantized = is_quantized(model)
        zero_masks = {} if quantized else {n: (p == 0) for n, p in model.named_parameters()
                                            if p.dim() == 2 and (p == 0).float().mean() > 0.01}
        targets = lora_targets(model)
        peft_model = get_peft_model(model, LoraConfig(r=params.rank, lora_alpha=params.alpha, target_modules=targets,
                                                      lora_dropout=0.0, task_type="CAUSAL_LM"))
        train_adapters(peft_model, train, params)
        report = {"heldout_loss_before": loss_before, "trainable_parameters":
                  sum(p.numel() for p in peft_model.parameters() if p.requires_grad)}
        if quantized:
            report["heldout_loss_after"] = heldout_loss(peft_model, heldout)
            return MethodResult(peft_model, {**report, "adapter": "kept separate (quantized base)"})
        merged = peft_model.merge_and_unload()
        with torch.no_grad():
            for name, param in merged.named_parameters():
                if name in zero_masks:
                    param.masked_fill_(zero_masks[name], 0.0)
        report["heldout_loss_after"] = heldout_loss(merged, heldout)
        return MethodResult(merged, {**report, "adapter": "merged"})
