"""Export an AutoRound strategy in the AutoGPTQ / AutoAWQ on-disk formats, through auto-round.

AutoGPTQ and AutoAWQ themselves are archived / deprecated and do not install beside current
torch, but auto-round's own exporters still write their formats (read by vLLM, TGI, transformers
with the matching kernels). Our AutoRound episodes run inside llm-compressor and save
compressed-tensors, so this re-runs auto-round natively with the strategy's parameters on the
base model (same calibration corpus) and writes the requested format.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from greenai_dagster.core.data.corpus import calibration_chunks
from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.models import gguf_files
from greenai_dagster.core.models.loading import load_model_and_tokenizer
from greenai_dagster.core.runtimes.llama_cpp import serving_file

FORMATS = ("auto_gptq", "auto_awq")


def export_autoround(base_checkpoint: str, steps: list[dict], fmt: str, out_dir: Path) -> Path:
    if fmt not in FORMATS:
        raise CompressionFailed(f"unknown export format '{fmt}'.", f"Use one of {FORMATS}.")
    if [s["method"] for s in steps] != ["autoround"]:
        raise CompressionFailed(f"only a single-step autoround strategy can be written as {fmt} "
                                f"(this one is {' -> '.join(s['method'] for s in steps)}).",
                                "Export an autoround strategy, or use the compressed-tensors checkpoint.")
    from auto_round import AutoRound

    params = steps[0]["params"]
    model, tokenizer = load_model_and_tokenizer(base_checkpoint)
    samples = params.get("num_calibration_samples", 32)
    seq_len = params.get("calibration_seq_len", 128)
    texts = [tokenizer.decode(c) for c in calibration_chunks(tokenizer, samples, seq_len)]
    symmetric = params.get("symmetric", True) if fmt == "auto_gptq" else False  # AWQ's format is asymmetric
    rounder = AutoRound(model, tokenizer, bits=params.get("bits", 4), group_size=params.get("group_size", 64),
                        sym=symmetric, iters=params.get("iters", 50), nsamples=samples, seqlen=seq_len, dataset=texts)
    staging = Path(str(out_dir) + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        rounder.quantize_and_save(str(staging), format=fmt)
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(staging, ignore_errors=True)
        raise CompressionFailed(f"auto-round could not write {fmt}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    inner = [p for p in staging.iterdir() if p.is_dir() and (p / "config.json").exists()]
    source = inner[0] if inner else staging  # auto-round nests the files in a per-model folder
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.move(str(source), str(out_dir))
    shutil.rmtree(staging, ignore_errors=True)
    return Path(out_dir)


def export_gguf(folder: Path, out: Path, quant_type: str | None = None) -> Path:
    """One variant as a single llama.cpp file at `out`: a `gguf` variant's own file; a float variant
    converted to F16 (or quantized to `quant_type` by llama.cpp); a W4/W8 compressed-tensors variant
    repacked exactly. A format llama.cpp cannot hold (int8 dynamic, low-rank, an adapter, W8A8) gets E005."""
    source = serving_file(Path(folder))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant_type and quant_type != "F16":
        if "F16" not in source.name.upper():
            raise CompressionFailed(f"{folder.name} is already quantized; llama.cpp re-quantizes float files only.",
                                    "Export it without --gguf-type, or export a float variant.")
        return gguf_files.quantize(source, out, quant_type)
    shutil.copyfile(source, out)
    return out
