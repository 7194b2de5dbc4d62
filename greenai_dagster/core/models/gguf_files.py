"""GGUF files for llama.cpp: convert a checkpoint, repack low-bit weights exactly, quantize.

Three ways a checkpoint becomes a GGUF here:

* `convert`: a float transformers folder through llama.cpp's own converter
  (`convert_hf_to_gguf.py`, from the llama.cpp sources that ship inside the llama-cpp-python
  sdist; `scripts/setup.sh` unpacks them under `.tools/llama.cpp`, or set
  `GREENAI_LLAMA_CPP_DIR`). Tokenizer, chat template and architecture come out as llama.cpp
  expects them.
* `repack`: a compressed-tensors W4/W5/W8 checkpoint (GPTQ, AWQ, AutoRound, RTN, and per-layer
  `mixed` allocations of those widths) without requantizing: each group of g = 32k weights becomes g/32
  llama.cpp blocks carrying the checkpoint's own integers and scale, Q4_0 / Q5_0 (w = (u - 8) d or
  (u - 16) d, symmetric), Q4_1 / Q5_1 (w = u d + m, zero points) or Q8_0 (w = q d). The only change is the scale rounded to float16, as every llama.cpp block stores it;
  `repack` measures that error and refuses above 1 % of a row's largest weight. Which GGUF rows hold
  which linear is found by content (the converter may reorder rows, e.g. q/k for RoPE, or fuse
  projections), so this works for every architecture the converter knows.
* `quantize`: llama.cpp's own quantizer (`llama_model_quantize` through llama-cpp-python) from an
  F16/F32 GGUF to Q4_K_M, Q5_K_M, Q8_0, Q4_0, ...
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.formats import compressed_tensors, int8_dynamic
from greenai_dagster.core.formats.int8_dynamic import dequantize_int8_dynamic, dynamic_linears, int8_dynamic_record
from greenai_dagster.core.machine import process_failure
from greenai_dagster.core.models.checkpoints import load_variant

# llama.cpp quantization types by the names its tools use (llama_ftype values of llama.h)
FTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
          "Q3_K_M": 12, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18}


class GGUFUnavailable(CompressionFailed):
    """E005: this checkpoint cannot become a GGUF here (missing llama.cpp, or a scheme no block holds)."""

    default_remedy = ("install the serving extra and llama.cpp's converter: `bash scripts/setup.sh` (or "
              "`pip install llama-cpp-python==0.3.36` and set GREENAI_LLAMA_CPP_DIR to a llama.cpp checkout).")


PROJECT_ROOT = Path(__file__).resolve().parents[3]


def llama_cpp_dir() -> Path:
    """llama.cpp's Python tools (converter, gguf-py): GREENAI_LLAMA_CPP_DIR, else `.tools/llama.cpp` in the
    project, where `scripts/setup.sh` unpacks them from the llama-cpp-python sdist it builds."""
    return Path(os.environ.get("GREENAI_LLAMA_CPP_DIR") or PROJECT_ROOT / ".tools" / "llama.cpp")


def converter_available() -> bool:
    return (llama_cpp_dir() / "convert_hf_to_gguf.py").exists()


def convert(hf_folder: Path, out: Path, outtype: str = "f16") -> Path:
    """`hf_folder` (float weights + tokenizer) as a GGUF at `out`, through llama.cpp's converter."""
    script = llama_cpp_dir() / "convert_hf_to_gguf.py"
    if not script.exists():
        raise GGUFUnavailable(f"llama.cpp's converter is not at {script}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(llama_cpp_dir() / "gguf-py"),
                                                                   os.environ.get("PYTHONPATH", "")])))
    proc = subprocess.run([sys.executable, str(script), str(hf_folder), "--outtype", outtype, "--outfile", str(partial)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise GGUFUnavailable(f"llama.cpp's converter failed on {hf_folder}: "
                              f"{process_failure.describe(proc.returncode, proc.stderr)}")
    partial.replace(out)
    return out


def quantize(source: Path, out: Path, qtype: str, threads: int = 0) -> Path:
    """llama.cpp's quantizer: `source` (F16/F32 GGUF) -> `out` in `qtype` (a key of FTYPES)."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise GGUFUnavailable("llama-cpp-python is not installed.") from exc
    if qtype not in FTYPES:
        raise GGUFUnavailable(f"unknown llama.cpp type {qtype!r}; known: {', '.join(FTYPES)}.")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[qtype]
    params.nthread = threads or os.cpu_count() or 1
    partial = out.with_suffix(".partial")
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
    if rc != 0:
        raise GGUFUnavailable(f"llama.cpp could not quantize {source.name} to {qtype} (code {rc}).")
    partial.replace(out)
    return out


# -- exact repack of compressed-tensors integers into llama.cpp blocks ---------------------------------

BENCHMARKED_TYPES = ("F16", "Q8_0", "Q4_K_M", "Q4_0")
"""The llama.cpp types the benchmarks measure the baseline in (speed in runtimes_cpu, quality in gguf_quality)."""


def baseline_ggufs(hf_folder: Path, out: Path) -> dict[str, Path]:
    """The baseline converted to F16 GGUF once, then quantized by llama.cpp to each benchmarked type;
    files already made are reused, so both benchmarks read the same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    f16 = out / "baseline-F16.gguf"
    if not f16.exists():
        convert(hf_folder, f16, "f16")
    files = {"F16": f16}
    for qtype in BENCHMARKED_TYPES[1:]:
        path = out / f"baseline-{qtype}.gguf"
        if not path.exists():
            quantize(f16, path, qtype)
        files[qtype] = path
    return files


def _pack_nibbles(u: np.ndarray) -> np.ndarray:
    """[blocks, 32] values in 0..15 -> [blocks, 16] bytes: element j low nibble, element j+16 high."""
    return (u[:, :16] | (u[:, 16:] << 4)).astype(np.uint8)


def _high_bits(u: np.ndarray) -> np.ndarray:
    """[blocks, 32] values in 0..31 -> [blocks, 4] bytes: bit 4 of element i at bit i of a little-endian
    uint32 (the `qh` of llama.cpp's Q5_0 / Q5_1 blocks)."""
    bits = ((u >> 4) & 1).astype(np.uint32) << np.arange(32, dtype=np.uint32)
    return bits.sum(axis=1, dtype=np.uint32).astype("<u4").reshape(-1, 1).view(np.uint8)


def blocks_for_rows(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, bits: int) -> tuple:
    """Rows of integers `q` [R, K] with group scales [R, K/g] -> (GGML type, uint8 [R, bytes per row]).
    8 bits: Q8_0. 4 and 5 bits: Q4_0 / Q5_0 (w = (u - 2^(b-1)) d) for a symmetric scheme, Q4_1 / Q5_1
    (w = u d + m) with zero points. Other widths have no llama.cpp block that holds their integers."""
    import gguf

    rows, k = q.shape
    group = k // scale.shape[1]
    if group % 32:
        raise GGUFUnavailable(f"group size {group} is not a multiple of llama.cpp's block of 32.")
    if bits not in (4, 5, 8):
        raise GGUFUnavailable(f"no llama.cpp block holds {bits}-bit integers exactly (4, 5 and 8 bits do).")
    per_block = group // 32
    d = scale.float().repeat_interleave(per_block, dim=1).reshape(-1, 1).numpy().astype(np.float16)
    if bits == 8:
        qs = q.to(torch.int8).reshape(-1, 32).numpy()
        data = np.concatenate([d.view(np.uint8), qs.view(np.uint8)], axis=1)
        return gguf.GGMLQuantizationType.Q8_0, data.reshape(rows, -1)
    offset = 1 << (bits - 1)
    u = (q.to(torch.int16) + offset).reshape(-1, 32).numpy()
    if np.any(u < 0) or np.any(u >= 2 * offset):
        raise GGUFUnavailable(f"{bits}-bit integers outside [{-offset}, {offset - 1}].")
    u = u.astype(np.uint8)
    payload = [_pack_nibbles(u & 0x0F)] if bits == 4 else [_high_bits(u), _pack_nibbles(u & 0x0F)]
    if zero_point is None:   # symmetric scheme
        data = np.concatenate([d.view(np.uint8), *payload], axis=1)
        qtype = gguf.GGMLQuantizationType.Q4_0 if bits == 4 else gguf.GGMLQuantizationType.Q5_0
        return qtype, data.reshape(rows, -1)
    zp = zero_point.float().repeat_interleave(per_block, dim=1).reshape(-1, 1)
    m = (-(offset + zp) * scale.float().repeat_interleave(per_block, dim=1).reshape(-1, 1)).numpy().astype(np.float16)
    data = np.concatenate([d.view(np.uint8), m.view(np.uint8), *payload], axis=1)
    qtype = gguf.GGMLQuantizationType.Q4_1 if bits == 4 else gguf.GGMLQuantizationType.Q5_1
    return qtype, data.reshape(rows, -1)


def load_state(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's safetensors files."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


def float_skeleton(folder: Path):
    """The checkpoint's architecture in float32 with its quantization config dropped, weights to be loaded."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def _quantized_linears(folder: Path, state: dict[str, torch.Tensor]) -> dict[str, dict]:
    """name -> {q [N, K] signed ints, scale [N, K/g], zero_point or None, bits} from the safetensors."""
    config = json.loads((folder / "config.json").read_text())
    quant = config.get("quantization_config") or {}
    schemes = [g for g in quant.get("config_groups", {}).values() if g.get("weights")]
    groups = [g["weights"] for g in schemes]
    if quant.get("quant_method") != "compressed-tensors" or not groups:
        raise GGUFUnavailable(f"{folder} is not a compressed-tensors weight-quantized checkpoint.")
    bad = [g for g in groups if g.get("num_bits") not in (4, 5, 8) or g.get("strategy") not in ("group", "channel")
           or g.get("actorder") not in (None, "static") or g.get("dynamic")]
    if bad:
        raise GGUFUnavailable(f"no llama.cpp block type holds this scheme exactly: {bad[0]}.")
    out = {}
    for key in state:
        name = key[: -len(".weight_scale")] if key.endswith(".weight_scale") else None
        if not name:
            continue
        scale = state[key]
        if f"{name}.weight_packed" in state:
            bits = _bits_of(name, schemes)
            q = compressed_tensors.stored_integers(state, name, bits)
        elif state.get(f"{name}.weight") is not None and state[f"{name}.weight"].dtype == torch.int8:
            q, bits = state[f"{name}.weight"], 8
        else:
            continue
        scale = scale.reshape(q.shape[0], -1)
        zp = compressed_tensors.stored_zero_point(state.get(f"{name}.weight_zero_point"), q.shape[0], scale.shape[1])
        out[name] = {"q": q, "scale": scale, "bits": bits, "zero_point": zp}
    return out


def _bits_of(name: str, schemes: list[dict]) -> int:
    """The weight bit width of linear `name`: its config group's (a per-layer `mixed` allocation has one
    group per width; targets are module names, `re:` patterns, or the class name `Linear`)."""
    for scheme in schemes:
        for target in scheme.get("targets") or []:
            if target == "Linear" or target == name or (target.startswith("re:") and re.match(target[3:], name)):
                return int(scheme["weights"]["num_bits"])
    raise GGUFUnavailable(f"{name} has packed weights but no config group targets it.")


def _dense_model(folder: Path):
    """(quantized linears, float32 model whose linears hold (q - zero_point) * scale): the checkpoint's
    integers expanded exactly, so the converter's rows can be traced back to them."""
    state = load_state(folder)
    linears = _quantized_linears(folder, state)
    model = float_skeleton(folder)
    dense = {k: v.float() for k, v in state.items()
             if not any(k.startswith(name + ".") for name in linears) and v.is_floating_point()}
    for name, lin in linears.items():
        group = lin["q"].shape[1] // lin["scale"].shape[1]
        zp = 0 if lin["zero_point"] is None else lin["zero_point"].float().repeat_interleave(group, dim=1)
        dense[f"{name}.weight"] = (lin["q"].float() - zp) * lin["scale"].float().repeat_interleave(group, dim=1)
        bias = state.get(f"{name}.bias")
        if bias is not None:
            dense[f"{name}.bias"] = bias.float()
    missing, unexpected = model.load_state_dict(dense, strict=False)
    if model.config.tie_word_embeddings:
        model.tie_weights()
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise GGUFUnavailable(f"{folder}: tensors missing {missing[:2]} or unexpected {unexpected[:2]}.")
    return linears, model.eval()


def _int8_dynamic_model(folder: Path):
    """(quantized linears, float32 model) of an `int8` method checkpoint: torch's per-channel symmetric int8
    weights read from its dynamic-quantized Linears (one scale per row: a Q8_0 block of 32 per row segment
    holds them exactly, up to the float16 scale), and the model with those Linears expanded to q * scale."""
    model, _ = load_variant(folder, device="cpu")
    linears = {}
    for name, module in dynamic_linears(model).items():
        record = int8_dynamic_record(module)
        linears[name] = {"q": record["q"], "scale": record["scale"], "zero_point": None, "bits": 8}
    model = dequantize_int8_dynamic(model)
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return linears, model.float().eval()


def _check_against_library(folder: Path, model, linears: dict) -> None:
    """Our reading of the integers must give the weights compressed-tensors itself decompresses: a
    misread (wrong bit width, packing axis) would otherwise produce a self-consistent wrong model."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                     quantization_config=CompressedTensorsConfig(run_compressed=False))
    for name in linears:
        ours = model.get_submodule(name).weight.detach()
        theirs = reference.get_submodule(name).weight.detach().float()
        if ours.shape != theirs.shape or (ours - theirs).abs().max() > 0.01 * theirs.abs().max():
            raise GGUFUnavailable(f"{name}: the integers read for llama.cpp do not match compressed-tensors' "
                                  "decompression of the checkpoint.")


def _row_key(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(), digest_size=16).digest()


def repack(ct_folder: Path, out: Path) -> dict:
    """A compressed-tensors W4/W8 checkpoint (or an `int8` method checkpoint: per-channel int8) as a GGUF
    whose linear weights are the checkpoint's own integers in llama.cpp blocks; everything else as
    llama.cpp's converter writes it (F16). Returns what was done: tensors repacked, block types, the
    float16-scale error."""
    import gguf

    from transformers import AutoTokenizer

    int8_weights = int8_dynamic.detect(ct_folder)
    if int8_weights:
        linears, model = _int8_dynamic_model(ct_folder)
    else:
        linears, model = _dense_model(ct_folder)
        _check_against_library(ct_folder, model, linears)
    tokenizer = AutoTokenizer.from_pretrained(ct_folder)
    # each dense row -> (linear, row index): GGUF rows are found by content, whatever their order
    where: dict[bytes, tuple[str, int]] = {}
    for name in linears:
        weight = model.get_submodule(name).weight.detach().numpy()
        for i, row in enumerate(weight):
            where.setdefault(_row_key(row), (name, i))
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        dense = Path(tmp) / "dense"
        model.save_pretrained(dense)
        tokenizer.save_pretrained(dense)
        del model
        f32 = convert(dense, Path(tmp) / "f32.gguf", "f32")
        reader = gguf.GGUFReader(f32)
        writer = gguf.GGUFWriter(out.with_suffix(".partial"), arch=_field(reader, "general.architecture"))
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name == "general.architecture":
                continue
            sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
        repacked, types, worst, covered, requantized = 0, set(), 0.0, set(), []
        for tensor in reader.tensors:
            data = np.asarray(tensor.data)
            hits = ([where.get(_row_key(r)) for r in data]
                    if data.ndim == 2 and tensor.tensor_type == gguf.GGMLQuantizationType.F32 else [None])
            if hits and all(hits):
                covered.update(name for name, _ in hits)
                parts, qtype = [], None
                for name, rows in _runs(hits):   # runs of rows from one linear, in the GGUF's own row order
                    lin = linears[name]
                    idx = torch.tensor(rows)
                    qt, block = blocks_for_rows(lin["q"][idx], lin["scale"][idx],
                                                None if lin["zero_point"] is None else lin["zero_point"][idx],
                                                lin["bits"])
                    if qtype not in (None, qt):
                        raise GGUFUnavailable(f"{tensor.name} mixes block types.")
                    qtype = qt
                    parts.append(block)
                blocks = np.concatenate(parts, axis=0)
                back = gguf.quants.dequantize(blocks, qtype).reshape(data.shape)
                err = float(np.max(np.abs(back - data) / (np.abs(data).max(axis=1, keepdims=True) + 1e-12)))
                if err > 0.01:
                    raise GGUFUnavailable(f"{tensor.name}: repacked blocks differ from the checkpoint by {err:.3%}.")
                worst = max(worst, err)
                writer.add_tensor(tensor.name, blocks, raw_dtype=qtype)
                repacked += 1
                types.add(qtype.name)
            elif int8_weights and tensor.name == "token_embd.weight" and data.shape[1] % 32 == 0:
                # the `int8` method keeps the embedding (and the tied output head) in float; served as W8 it
                # gets llama.cpp's own Q8_0 for it too, as a Q8_0 GGUF does (its quality is scored through
                # llama.cpp on this very file, so the rounding is in the figures)
                blocks = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
                writer.add_tensor(tensor.name, blocks, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
                requantized.append(tensor.name)
            elif data.ndim == 2 and tensor.tensor_type == gguf.GGMLQuantizationType.F32:
                writer.add_tensor(tensor.name, data.astype(np.float16))
            else:
                writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
        if covered != set(linears):   # every quantized linear must be served as its own integers
            missing = sorted(set(linears) - covered)
            raise GGUFUnavailable(f"{len(missing)} quantized linears matched no GGUF tensor (e.g. {missing[0]}).")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    out.with_suffix(".partial").replace(out)
    return {"tensors_repacked": repacked, "linears": len(linears), "block_types": sorted(types),
            "max_float16_scale_error": worst, "quantized_here_to_q8_0": requantized}


def _runs(hits: list[tuple[str, int]]) -> list[tuple[str, list[int]]]:
    """[(linear, row), ...] -> [(linear, [rows...]), ...] grouping consecutive rows of the same linear."""
    runs: list[tuple[str, list[int]]] = []
    for name, row in hits:
        if runs and runs[-1][0] == name:
            runs[-1][1].append(row)
        else:
            runs.append((name, [row]))
    return runs


def _field(reader, name: str) -> str:
    return reader.fields[name].contents()
