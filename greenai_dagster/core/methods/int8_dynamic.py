"""INT8 dynamic quantization (torch): int8 weights, activations quantized on the fly per batch.

Runs real int8 GEMMs on CPU (fbgemm/x86 engines), so it changes size, memory and latency here.
The result is a torch-quantized module tree that `save_pretrained` cannot write; it is saved
as a state dict and reloaded by rebuilding and re-quantizing the architecture (core.checkpoints).
"""

from __future__ import annotations

import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from greenai_dagster.core import arch
from greenai_dagster.core.methods.base import (PER_CHANNEL_LOG2, CompressionContext, CompressionMethod, MethodParams,
                                               MethodResult, needs_linears)


class Int8DynamicParams(MethodParams):
    bits: int = 8


def quantize_linears_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Quantize every quantizable linear (`core.arch`: not the output head, which may be tied to the
    embeddings, and not a MoE router); Conv1D layers (GPT-2) become nn.Linear first. The same steps
    rebuild the module tree when the checkpoint is loaded.

    Weights per output channel (int8), activations per tensor at run time (uint8).
    """
    arch.conv1d_to_linear(model)
    targets = {name: per_channel_dynamic_qconfig for name in arch.quantizable_linears(model)}
    model = model.to("cpu").float()
    return quantize_dynamic(model, qconfig_spec=targets, dtype=torch.qint8, inplace=True)


class Int8Dynamic(CompressionMethod):
    name = "int8"
    family = "quantization"
    Params = Int8DynamicParams
    must_be_last = True  # its packed int8 modules are not a float model other methods can read
    checkpoint_format = "torch_int8_dynamic"

    def unsupported(self, model, spec):
        return needs_linears(spec)

    def note(self, model, spec):
        if spec.expert_layout:
            return "torch's dynamic int8 quantizes nn.Linear modules only: the fused experts stay in float"
        return None

    def check(self, params, spec):
        if params.bits != 8:
            from greenai_dagster.core.errors import CompressionFailed

            raise CompressionFailed("int8 dynamic quantization supports bits=8 only.", "Use bits=8, or gptq for 4-bit.")

    def label(self, params):
        return "int8_dynamic"

    def features(self, params):
        return {"weight_bits": 8.0, "group_log2": PER_CHANNEL_LOG2, "act_quant": 1.0}

    def apply(self, model, params, ctx: CompressionContext) -> MethodResult:
        if ctx.device != "cpu":
            model = model.to("cpu")  # torch dynamic quantization kernels are CPU kernels
        quantized = quantize_linears_int8(model)
        count = sum(1 for m in quantized.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__)
        return MethodResult(quantized, {"quantized_linear_layers": count, "weight_dtype": "qint8"})
