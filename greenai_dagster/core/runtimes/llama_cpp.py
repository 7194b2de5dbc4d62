"""llama.cpp on CPU through llama-cpp-python: the runtime a small model is served by on a CPU.

Serves three kinds of checkpoint:
* GGUF files (the `gguf` method's output, the packaged default model) as they are;
* float transformers checkpoints (the baseline, pruned, low-rank-merged variants), converted once by
  llama.cpp's converter to F16, the format llama.cpp serves float models in;
* compressed-tensors W4/W8 weight-only checkpoints (GPTQ, AWQ, AutoRound, RTN with group sizes that
  are multiples of 32) and the `int8` method's per-channel int8 checkpoints, repacked without
  requantizing into Q4_0 / Q4_1 / Q8_0 blocks (`core.models.gguf_files.repack`): the same integers and
  scales, served by llama.cpp's own kernels.

Conversions are cached under `data/serving/` keyed by the checkpoint's path and modification time,
so a checkpoint is converted once however often it is probed. Timing drives llama.cpp's own
`eval` (prefill = the prompt in one batch; decode = one token against the KV cache), greedy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from greenai_dagster.core.formats import compressed_tensors, gguf, hf, int8_dynamic, name_of as format_of
from greenai_dagster.core.models import gguf_files
from greenai_dagster.core.runtimes.base import Runtime, Session
from greenai_dagster.core.storage.paths import data_root


def gguf_in(folder: Path) -> Path | None:
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".gguf":
        return folder
    files = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
    return files[0] if files else None


def _config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _route(folder: Path) -> str | None:
    """How this runtime would serve `folder`: "gguf", "convert", "repack", or None."""
    folder = Path(folder)
    if gguf_in(folder):          # a GGUF file, or a folder holding one (the `gguf` method's)
        return "gguf"
    fmt = format_of(folder)
    if fmt == int8_dynamic.NAME:
        return "repack"          # per-channel int8 weights: Q8_0 blocks hold the same integers
    if fmt == hf.NAME:           # float; a folder quantized some other way (bitsandbytes) is not served
        return None if _config(folder).get("quantization_config") else "convert"
    if fmt != compressed_tensors.NAME:
        return None
    quant = _config(folder)["quantization_config"]
    groups = list(quant.get("config_groups", {}).values())
    weights = [g.get("weights") or {} for g in groups]
    if groups and all(not g.get("input_activations") for g in groups) and all(
            w.get("num_bits") in (4, 5, 8) and w.get("strategy") == "group" and w.get("group_size", 0) % 32 == 0
            and w.get("actorder") in (None, "static") and not w.get("dynamic")
            and (w.get("num_bits") in (4, 5) or w.get("symmetric", True)) for w in weights):
        return "repack"
    return None


def serving_file(folder: Path) -> Path:
    """The GGUF llama.cpp serves for `folder`, converting (once) when needed."""
    folder = Path(folder)
    route = _route(folder)
    if route == "gguf":
        return gguf_in(folder)
    if route is None:
        raise gguf_files.GGUFUnavailable(f"llama.cpp cannot serve {folder} without dequantizing it.")
    stamp = max(p.stat().st_mtime_ns for p in folder.iterdir())
    key = hashlib.sha1(f"{folder.resolve()}|{stamp}".encode()).hexdigest()[:16]
    out = data_root() / "serving" / key / ("model-f16.gguf" if route == "convert" else "model-repacked.gguf")
    failed = out.parent / "failed.txt"   # a conversion that failed once fails fast afterwards, with its reason
    if failed.exists():
        raise gguf_files.GGUFUnavailable(failed.read_text())
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            if route == "convert":
                gguf_files.convert(folder, out, "f16")
            else:
                info = gguf_files.repack(folder, out)
                (out.parent / "repack.json").write_text(json.dumps(info, indent=2))
        except gguf_files.GGUFUnavailable as exc:
            failed.write_text(exc.message)
            raise
        except Exception as exc:  # noqa: BLE001 - a checkpoint the converter cannot read is not served here
            message = f"converting {folder.name} for llama.cpp failed: {type(exc).__name__}: {exc}".splitlines()[0]
            failed.write_text(message)
            raise gguf_files.GGUFUnavailable(message) from exc
    return out


class LlamaCppSession(Session):
    def __init__(self, path: Path, threads: int, n_ctx: int = 1024):
        from llama_cpp import Llama

        self.path = path
        # use_mmap=False: llama.cpp repacks Q4_0 into its interleaved CPU layout; with mmap the file's
        # pages stay resident beside the repacked copy (measured: 0.210 vs 0.155 GB for a W4 variant)
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=threads,
                         n_threads_batch=threads, use_mmap=False, verbose=False)

    def prefill(self, prompt: list[int]) -> None:
        self.llm.reset()
        self.llm.eval(prompt)

    def last_logits(self):
        """The logits of the last evaluated position (a view into llama.cpp's buffer)."""
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))

    def decode(self) -> None:
        self.llm.eval([int(self.last_logits().argmax())])

    def dtype(self) -> str:
        return gguf.describe(self.path)


class LlamaCpp(Runtime):
    name = "llama.cpp"
    kernel = "llama.cpp CPU kernels (ggml)"
    devices = ("cpu",)
    formats = (gguf.NAME, int8_dynamic.NAME, compressed_tensors.NAME, hf.NAME)

    def available(self, device: str) -> bool:
        if not super().available(device):
            return False
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            return False
        return True

    def serves(self, folder: Path, device: str) -> bool:
        route = _route(Path(folder))
        return route == "gguf" or (route is not None and gguf_files.converter_available())

    def import_libraries(self) -> None:
        import llama_cpp  # noqa: F401

        super().import_libraries()

    def prepare(self, folder: Path) -> None:
        serving_file(Path(folder))

    def open(self, folder: Path, device: str, threads: int = 0, trust_remote_code: bool = False) -> Session:
        return LlamaCppSession(serving_file(Path(folder)), threads or os.cpu_count() or 1)

    def open_for_request(self, folder: Path, device: str, threads: int, context_tokens: int,
                         trust_remote_code: bool = False) -> Session:
        """A context of the request's length, rounded up to llama.cpp's KV padding of 256 (a 1024-token
        context held 18 MB more KV cache than the 144-token probe request uses, which torch's runtimes,
        growing their cache per token, never allocate)."""
        n_ctx = max(256, -(-context_tokens // 256) * 256)
        return LlamaCppSession(serving_file(Path(folder)), threads or os.cpu_count() or 1, n_ctx=n_ctx)

    def kernel_for(self, folder: Path) -> str:
        route = _route(Path(folder))
        how = {"gguf": "GGUF as saved", "convert": "converted to F16 by llama.cpp's converter",
               "repack": "the checkpoint's integers repacked into llama.cpp blocks, no requantization"}[route]
        return f"llama.cpp ggml CPU kernels; {how}"
