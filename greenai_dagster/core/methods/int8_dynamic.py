"""INT8 dynamic quantization (torch): int8 weights per output channel, activations quantized on the fly
per token.

Runs real int8 GEMMs on CPU, so it changes size, memory and latency here.
The result is a torch-quantized module tree that `save_pretrained` cannot write; it is saved
as a state dict and reloaded by rebuilding and re-quantizing the architecture (core.formats.int8_dynamic, which
holds `quantize_linears_int8` so that saving and loading quantize the same way), then served with
per-token activation scales (`PerTokenInt8Linear`: torch's own module takes one scale for the whole input).
"""

from __future__ import annotations

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.formats import int8_dynamic
from greenai_dagster.core.formats.int8_dynamic import quantize_linears_int8
from greenai_dagster.core.methods.base import (PER_CHANNEL_LOG2, CompressionContext, CompressionMethod, MethodParams,
                                               MethodResult, needs_linears)


class Int8DynamicParams(MethodParams):
    bits: int = 8


class Int8Dynamic(CompressionMethod):
    name = "int8"
    family = "quantization"
    Params = Int8DynamicParams
    must_be_last = True  # its packed int8 modules are not a float model other methods can read
    checkpoint_format = int8_dynamic.MARKER

    def unsupported(self, model, spec):
        return needs_linears(spec)

    def note(self, model, spec):
        if spec.expert_layout:
            return "torch's dynamic int8 quantizes nn.Linear modules only: the fused experts stay in float"
        return None

    def check(self, params, spec):
        if params.bits != 8:
            raise CompressionFailed("int8 dynamic quantization supports bits=8 only.", "Use bits=8, or gptq for 4-bit.")

    def label(self, params):
        return "int8_dynamic"

    def features(self, params):
        return {"weight_bits": 8.0, "group_log2": PER_CHANNEL_LOG2, "act_quant": 1.0}

    def apply(self, model, params, ctx: CompressionContext) -> MethodResult:
        if ctx.device != "cpu":
            model = model.to("cpu")  # torch dynamic quantization kernels are CPU kernels
        quantized = quantize_linears_int8(model)
        count = sum(1 for m in quantized.modules()
                    if type(m).__name__ == "Linear" and "quantized" in type(m).__module__)
        return MethodResult(quantized, {"quantized_linear_layers": count, "weight_dtype": "qint8"})
