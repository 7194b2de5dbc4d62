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

from greenai_dagster.core.errors import CompressionFailed

FORMATS = ("auto_gptq", "auto_awq")


def export_autoround(base_checkpoint: str, steps: list[dict], fmt: str, out_dir: Path) -> Path:
    if fmt not in FORMATS:
        raise CompressionFailed(f"unknown export format '{fmt}'.", f"Use one of {FORMATS}.")
    if [s["method"] for s in steps] != ["autoround"]:
        raise CompressionFailed(f"only a single-step autoround strategy can be written as {fmt} "
                                f"(this one is {' -> '.join(s['method'] for s in steps)}).",
                                "Export an autoround strategy, or use the compressed-tensors checkpoint.")
    from auto_round import AutoRound

    from greenai_dagster.core.corpus import calibration_chunks
    from greenai_dagster.core.loading import load_model_and_tokenizer

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
