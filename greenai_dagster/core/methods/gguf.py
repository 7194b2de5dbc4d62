"""GGUF: llama.cpp's own quantizations (k-quants and the legacy block types) as a compression method.

The model is written as F32 GGUF by llama.cpp's converter and quantized by llama.cpp's quantizer
(`core.models.gguf_files`), exactly what a user serving with llama.cpp, Ollama or LM Studio would run. The
checkpoint is the `.gguf` file (plus config and tokenizer for the evaluation), served by the
llama.cpp runtime as saved. Quality is measured where it is served: on CPU, fidelity and accuracy
come from llama.cpp's own logits (`core.evaluation.llama_cpp_scoring`, 8-bit activation rounding in its dot
products included); elsewhere transformers loads the file and expands its blocks to float.
No importance matrix is used: none of the types offered here needs one (llama.cpp requires it for
the IQ types and Q2_K only), and llama.cpp's imatrix tool is not part of llama-cpp-python.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from greenai_dagster.core.formats import gguf as gguf_format
from greenai_dagster.core.formats.gguf import FILE as GGUF_FILE, describe
from greenai_dagster.core.methods.base import CompressionContext, CompressionMethod, MethodParams, MethodResult
from greenai_dagster.core.models import gguf_files
from greenai_dagster.core.models.gguf_files import llama_cpp_dir


def converter_architectures() -> set[str] | None:
    """Architectures llama.cpp's converter registers (`@ModelBase.register("LlamaForCausalLM", ...)`), read
    from its sources without importing them; None when the converter is not installed here."""
    root = llama_cpp_dir()
    if not (root / "convert_hf_to_gguf.py").exists():
        return None
    names: set[str] = set()
    for source in [root / "convert_hf_to_gguf.py", *sorted((root / "conversion").glob("*.py"))]:
        for call in re.finditer(r"\.register\(([^)]*)\)", source.read_text(errors="replace")):
            names.update(re.findall(r"[\"']([A-Za-z0-9_]+)[\"']", call.group(1)))
    return names

# bits per weight of each type (llama.cpp's block sizes) and the block that carries one scale
BITS = {"Q4_0": 4.5, "Q4_1": 5.0, "Q5_0": 5.5, "Q5_1": 6.0, "Q8_0": 8.5, "Q3_K_M": 3.91, "Q4_K_S": 4.58,
        "Q4_K_M": 4.85, "Q5_K_S": 5.54, "Q5_K_M": 5.69, "Q6_K": 6.56}
BLOCK = {"Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32}   # k-quants: 16-32 sub-blocks of 256


class GgufParams(MethodParams):
    quant_type: Literal["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
                        "Q6_K"] = "Q4_K_M"


class GgufQuant(CompressionMethod):
    name = "gguf"
    family = "quantization"
    Params = GgufParams
    must_be_last = True       # the result is a llama.cpp file, not a model other methods can read
    checkpoint_format = gguf_format.MARKER

    def unsupported(self, model, spec):
        known = converter_architectures()
        if known is not None and type(model).__name__ not in known:
            return f"llama.cpp's converter has no conversion for {type(model).__name__}"
        return None

    def label(self, params):
        return f"gguf_{params.get('quant_type', 'Q4_K_M').lower()}"

    def features(self, params):
        qtype = params.get("quant_type", "Q4_K_M")
        return {"weight_bits": BITS[qtype], "group_log2": math.log2(BLOCK.get(qtype, 16)),
                "error_feedback": 0.0, "act_quant": 0.0}

    def apply(self, model, params: GgufParams, ctx: CompressionContext) -> MethodResult:
        from transformers import AutoModelForCausalLM

        work = Path(tempfile.mkdtemp(prefix="greenai_gguf_"))
        dense = work / "dense"
        model.save_pretrained(dense)
        ctx.tokenizer.save_pretrained(dense)
        f32 = gguf_files.convert(dense, work / "model-f32.gguf", "f32")
        shutil.rmtree(dense)
        out = gguf_files.quantize(f32, work / GGUF_FILE, params.quant_type)
        f32.unlink()
        # the quantized weights, expanded to float by transformers' GGUF loader, for anything that
        # reads the model in this process; the checkpoint itself is the GGUF file
        quantized = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=GGUF_FILE, dtype=model.dtype)
        return MethodResult(quantized, {"gguf_file": str(out), "quant_type": params.quant_type,
                                        "tensor_types": describe(out), "bits_per_weight": BITS[params.quant_type]})
