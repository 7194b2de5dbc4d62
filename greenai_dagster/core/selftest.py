"""`greenai doctor`: every serving runtime runs the packaged model here, and its logits agree with PyTorch's.

Machines of this project's kind differ between sessions (CPU vendor and features). A native
library built on one (llama.cpp) may execute an instruction path that crashes on another (ggml's
AMX kernels died with SIGILL on every quantized GGUF of one such Xeon). So each runtime is tried
once per machine, in a child process (a crash there cannot take the caller down), on a 64-token
prompt of plain English at the machine's thread count, and its logits are compared with eager PyTorch's on the
same weights (KL per position and top-1 agreement) or, for a type llama.cpp re-quantizes itself,
with the float model's under a looser bound.

The verdicts are kept per machine in `core.runtimes.verdicts`, which the runtimes and llama.cpp
scoring read (a runtime that failed here is left out of `core.runtimes.pick` with its reason); this
module writes them. Each check runs in a child process started as `python -m greenai_dagster.core.selftest
--child` (`verdicts.run_child`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenai_dagster.core import runtimes
from greenai_dagster.core.compress import compress_to_checkpoint
from greenai_dagster.core.methods.assess import build_spec
from greenai_dagster.core.models.default_model import (convert_gguf_to_checkpoint, ensure_default_checkpoint,
                                                       find_packaged_gguf)
from greenai_dagster.core.models.gguf_files import baseline_ggufs
from greenai_dagster.core.models.loading import load_model_and_tokenizer
from greenai_dagster.core.runtimes.llama_cpp import serving_file
from greenai_dagster.core.runtimes.verdicts import PROMPT_TOKENS, run_child, save_verdicts
from greenai_dagster.core.strategy import Step, Strategy

# runtimes the default run on a CPU relies on: setup fails when one of them fails here
DEFAULT_RUN_RUNTIMES = ("llama.cpp", "torch-cpu-int4", "torch-int8-dynamic", "torch-eager")


# ---- one runtime on one checkpoint, in a child process -------------------------------------------------

PROMPT_TEXT = (
    "The river runs through the old town, past the market and the stone bridge. In the morning the bakers open "
    "their doors, children walk to school, and the first trains leave for the city. By noon the square is full "
    "of people who buy fruit, read the news and talk about the weather, which has been warm for most of the week.")


def text_ids(checkpoint: Path) -> list[int]:
    """PROMPT_TEXT's first 64 tokens: real text, so the reference distributions are peaked and a
    kernel that is wrong shows as a large KL rather than as noise in a flat distribution."""
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(checkpoint)(PROMPT_TEXT, add_special_tokens=False)["input_ids"]
    return ids[:PROMPT_TOKENS]


def _child_logits(runtime_name: str, path: Path, threads: int, ids: list[int]) -> np.ndarray:
    import torch

    torch.set_num_threads(threads)
    if runtime_name == "llama.cpp":
        from greenai_dagster.core.evaluation.llama_cpp_scoring import LlamaCppScorer

        return np.array(LlamaCppScorer(serving_file(path), n_ctx=256, threads=threads).logits(ids), dtype=np.float32)

    model = runtimes.by_name(runtime_name).load(path, "cpu")[0]
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def compare(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Mean KL(reference || runtime) per position (nats) and top-1 agreement."""
    def log_softmax(x):
        x = x.astype(np.float64)
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    if logits.shape != reference.shape or not np.isfinite(logits).all():
        return {"kl": float("inf"), "top1": 0.0}
    p, q = log_softmax(reference), log_softmax(logits)
    kl = float((np.exp(p) * (p - q)).sum(-1).mean())
    return {"kl": kl, "top1": float((logits.argmax(-1) == reference.argmax(-1)).mean())}


# ---- the checks ------------------------------------------------------------------------------------------

@dataclass
class Check:
    runtime: str
    target: str          # what is served, e.g. "Q4_1 GGUF (packaged)"
    path: Path
    reference: str       # key of the reference logits: which checkpoint eager PyTorch ran
    max_kl: float
    min_top1: float


def build_targets(root: Path) -> tuple[dict[str, Path], list[Check]]:
    """The checkpoints the checks run (made once under `root`) and the checks. References: eager
    PyTorch on the same weights where one exists (tight bounds), else on the float model."""
    base = ensure_default_checkpoint()
    ggufs = baseline_ggufs(base, root / "gguf")
    made = {"float": base}
    spec = None
    for name, method, params in (("rtn_w4g64", "rtn", {"bits": 4, "group_size": 64}),
                                 ("rtn_w8g64", "rtn", {"bits": 8, "group_size": 64}),
                                 ("int8", "int8", {})):
        folder = root / name
        if not (folder / "config.json").exists():
            if spec is None:
                spec = build_spec("default", load_model_and_tokenizer(str(base), device="cpu")[0], str(base))
            compress_to_checkpoint(str(base), Strategy(name, [Step(method, params)]), spec, folder)
        made[name] = folder
    for qtype in ("Q8_0", "Q4_0", "Q4_K_M"):    # the same weights in PyTorch: the GGUF dequantized
        folder = root / f"dequantized_{qtype}"
        if not (folder / "config.json").exists():
            convert_gguf_to_checkpoint(ggufs[qtype], folder)
        made[qtype] = folder
    checks = [
        Check("torch-eager", "float checkpoint (reference)", base, "float", 1e-6, 1.0),
        Check("llama.cpp", "F16 GGUF", ggufs["F16"], "float", 0.01, 0.9),
        Check("llama.cpp", "Q4_1 GGUF (the packaged file)", find_packaged_gguf(), "float", 0.05, 0.8),
        Check("llama.cpp", "Q8_0 GGUF (llama.cpp-quantized)", ggufs["Q8_0"], "Q8_0", 0.05, 0.8),
        Check("llama.cpp", "Q4_0 GGUF (llama.cpp-quantized)", ggufs["Q4_0"], "Q4_0", 0.05, 0.8),
        Check("llama.cpp", "Q4_K_M GGUF (llama.cpp-quantized)", ggufs["Q4_K_M"], "Q4_K_M", 0.05, 0.8),
        Check("llama.cpp", "W4 g64 repacked to Q4_0 (RTN checkpoint)", made["rtn_w4g64"], "rtn_w4g64", 0.05, 0.8),
        Check("llama.cpp", "W8 g64 repacked to Q8_0 (RTN checkpoint)", made["rtn_w8g64"], "rtn_w8g64", 0.05, 0.8),
        Check("llama.cpp", "INT8 per-channel repacked to Q8_0 (int8 checkpoint)", made["int8"], "float", 0.05, 0.8),
        Check("torch-cpu-int4", "W4 g64 (RTN checkpoint)", made["rtn_w4g64"], "rtn_w4g64", 0.05, 0.8),
        # int8 activations quantized per token: no float PyTorch run has the same arithmetic, so the bound is
        # against the float model (KL 0.023, top-1 0.91 on SmolLM2-135M; torch's per-tensor module read ~1)
        Check("torch-int8-dynamic", "INT8 dynamic checkpoint", made["int8"], "float", 0.1, 0.8),
    ]
    return made, checks


@contextlib.contextmanager
def output_to(log: Path):
    """File descriptors 1 and 2 into `log` for the block: the libraries that build the test checkpoints
    (llama.cpp's quantizer, llm-compressor, codecarbon) print from C and Python alike, and their chatter
    belongs in a log, not in the terminal between the verdicts."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_all(root: Path, threads: int | None = None, echo=print) -> list[dict]:
    """Run every check; record each runtime's verdict for this machine; return the rows."""
    log = root / "prepare.log"
    echo(f"preparing the test checkpoints under {root} (once; log: {log})")
    with output_to(log):
        made, checks = build_targets(root)
    ids = text_ids(made["float"])
    references = {}
    for key in sorted({c.reference for c in checks}):
        row = run_child("torch-eager", made[key], ids, threads)
        if row["logits"] is None:
            raise RuntimeError(f"eager PyTorch could not run {made[key]}: {row['error']}")
        references[key] = row["logits"]
    rows = []
    for check in checks:
        row = run_child(check.runtime, check.path, ids, threads)
        result = {"runtime": check.runtime, "target": check.target, "threads": threads or os.cpu_count(),
                  "seconds": round(row["seconds"], 1), "bound": {"max_kl": check.max_kl, "min_top1": check.min_top1}}
        if row["logits"] is None:
            result.update({"passed": False, "reason": row["error"]})
        else:
            figures = compare(row["logits"], references[check.reference])
            passed = figures["kl"] <= check.max_kl and figures["top1"] >= check.min_top1
            result.update({"passed": passed, "kl": figures["kl"], "top1": figures["top1"],
                           "reason": None if passed else
                           f"logits disagree with PyTorch's (KL {figures['kl']:.4f} > {check.max_kl} or top-1 "
                           f"{figures['top1']:.2f} < {check.min_top1})"})
        echo(format_row(result))
        rows.append(result)
    verdicts = {}
    for row in rows:
        verdict = verdicts.setdefault(row["runtime"], {"passed": True, "reason": "every check passed", "quick": False})
        if not row["passed"] and verdict["passed"]:
            verdicts[row["runtime"]] = {"passed": False, "reason": f"{row['target']}: {row['reason']}", "quick": False}
    save_verdicts(verdicts)
    return rows


def format_row(row: dict) -> str:
    status = "PASS" if row["passed"] else "FAIL"
    figures = (f"KL {row['kl']:.4f}, top-1 {row['top1']:.2f}" if row.get("kl") is not None else row["reason"])
    return f"{status}  {row['runtime']:<19} {row['target']:<42} {figures}  ({row['seconds']} s)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("RUNTIME", "PATH"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--ids", help="comma-separated token ids")
    args = parser.parse_args(argv)
    if args.child:
        ids = [int(i) for i in args.ids.split(",")]
        np.save(args.out, _child_logits(args.child[0], Path(args.child[1]), args.threads or os.cpu_count() or 1, ids))


if __name__ == "__main__":
    main()
