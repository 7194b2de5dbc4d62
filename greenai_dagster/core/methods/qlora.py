"""QLoRA: a 4-bit NF4 base (bitsandbytes) with LoRA adapters trained on calibration text.

The base is re-loaded from the model's checkpoint through transformers' BitsAndBytesConfig
(NF4, double quantization), so QLoRA is a strategy's first and only step. bitsandbytes >= 0.48
has CPU kernels for NF4; where the installed bitsandbytes cannot run on this device the method
raises E005 with the reason. The adapter is saved beside the NF4 base (`lora_adapter/`); the base
reloads with plain `from_pretrained` (its config carries the bitsandbytes settings).
"""

from __future__ import annotations

import torch

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionContext, CompressionMethod, MethodResult, needs_linears
from greenai_dagster.core.methods.lora import LoraParams, heldout_loss, lora_note, lora_targets, train_adapters


class QLora(CompressionMethod):
    name = "qlora"
    family = "recovery"
    Params = LoraParams
    must_be_first = True

    def label(self, params):
        return f"qlora_nf4_r{params['rank']}_s{params['steps']}"

    def unsupported(self, model, spec):
        return needs_linears(spec)

    def note(self, model, spec):
        return lora_note(spec)

    def check(self, params, spec):
        if not spec.checkpoint_path:
            raise CompressionFailed("QLoRA re-loads the base in 4-bit and needs a local checkpoint folder.",
                                    "Use a local model folder (the default model is one).")

    def features(self, params):
        return {"weight_bits": 4.0, "group_log2": 6.0, "recovery": 1.0}   # NF4, blocks of 64

    def apply(self, model, params: LoraParams, ctx: CompressionContext) -> MethodResult:
        try:
            import bitsandbytes  # noqa: F401
            from peft import LoraConfig, get_peft_model
            from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        except ImportError as exc:
            raise CompressionFailed("QLoRA needs bitsandbytes, which is not installed.",
                                    "pip install 'bitsandbytes>=0.48' (CPU kernels included), or pick lora.") from exc
        del model  # the float model is replaced by an NF4 copy of the same checkpoint
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.float32 if ctx.device == "cpu" else torch.bfloat16)
        try:
            base = AutoModelForCausalLM.from_pretrained(ctx.spec.checkpoint_path, quantization_config=quant,
                                                        device_map=ctx.device, dtype=quant.bnb_4bit_compute_dtype)
        except Exception as exc:  # noqa: BLE001
            raise CompressionFailed(f"bitsandbytes could not load the model in 4-bit on {ctx.device}: "
                                    f"{type(exc).__name__}: {exc}".splitlines()[0],
                                    "Run QLoRA on a CUDA device, or use lora after gptq.") from exc
        chunks = ctx.calibration(params.steps * params.batch_size + 8, params.seq_len)
        train, heldout = chunks[8:], chunks[:8]
        loss_before = heldout_loss(base, heldout)
        targets = lora_targets(base)
        model = get_peft_model(base, LoraConfig(r=params.rank, lora_alpha=params.alpha, target_modules=targets,
                                                lora_dropout=0.0, task_type="CAUSAL_LM"))
        train_adapters(model, train, params)
        return MethodResult(model, {"heldout_loss_before": loss_before, "heldout_loss_after": heldout_loss(model, heldout),
                                    "base": "NF4 4-bit, bitsandbytes", "adapter": "kept separate (NF4 base)"})
