"""Fidelity to the baseline: how far a compressed model's next-token distribution moved.

Accuracy on a small benchmark cannot tell a destroyed model from a working one when the base
model sits near chance; the distribution shift can (Dutta et al., "Accuracy is Not All You Need",
NeurIPS 2024: KL divergence and top-1 agreement track answer flips; llama.cpp's
`llama-perplexity --kl-divergence` reports the same figures). On held-out text we measure, per
scored position, against the baseline:

- KL(P_base || Q_candidate) of the next-token distributions (nats/token);
- top-1 agreement: both models' most likely next token is the same;
- the candidate's NLL minus the baseline's, whose mean gives the perplexity ratio.

The baseline is run once per experiment and its reference saved (`save_reference`): the token
windows, and per position the baseline's top-k log-probabilities, their token ids and its NLL,
so each candidate needs one forward pass. KL over the top-k tokens plus one "rest" bucket
(the remaining mass of both models) is a lower bound of the exact KL (log-sum inequality);
`exact_vs_topk_kl` measures the gap and the README states it.

Uncertainty: positions within a text are correlated, so standard errors are computed over
blocks of BLOCK consecutive positions (a clustered standard error), not over positions.
Everything is float32 on CPU (half precision is many times slower there).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from greenai_dagster.core.data import corpus
from greenai_dagster.core.errors import DiskFull

TOP_K = 64          # baseline log-probabilities kept per position
WINDOW = 512        # tokens per forward window (non-overlapping)
BLOCK = 64          # positions per block for the clustered standard error
REFERENCE_FILE = "fidelity_reference.safetensors"


@dataclass
class Fidelity:
    kl_divergence: float          # mean KL(base || candidate), nats/token
    kl_stderr: float
    top1_agreement: float         # share of positions with the same most likely token
    top1_stderr: float
    ppl_ratio: float              # candidate perplexity / baseline perplexity on the same tokens
    ppl_ratio_low: float          # 95 % interval of the ratio (paired, clustered)
    ppl_ratio_high: float
    perplexity: float             # the candidate's own perplexity on these tokens
    tokens: int                   # scored positions

    def to_json(self) -> dict:
        return asdict(self)


def held_out_text(text_file: str | None = None) -> tuple[str, str]:
    """(text, source): a user's text file, or the corpus's held-out half (never used for calibration)."""
    if text_file:
        path = Path(text_file)
        return path.read_text(encoding="utf-8"), f"file {path.name}"
    return corpus.perplexity_text(), corpus.CORPUS_SOURCE


def token_windows(tokenizer, text: str, max_tokens: int, window: int = WINDOW) -> torch.Tensor:
    """[n_windows, window] token ids: the first `max_tokens` tokens of `text` cut into full windows.

    A model whose tokenizer starts every input with a BOS token (Gemma, Llama 3) sees each window
    start with it, as in use: Gemma without its BOS predicts garbage (perplexity in the thousands)."""
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
    bos = bos_prefix(tokenizer)
    step = window - len(bos)
    ids = ids[: max_tokens]
    n = ids.numel() // step
    if n == 0:
        raise ValueError(f"held-out text has {ids.numel()} tokens; at least {step} are needed")
    body = ids[: n * step].view(n, step)
    if bos:
        body = torch.cat([torch.full((n, 1), bos[0], dtype=body.dtype), body], dim=1)
    return body


def bos_prefix(tokenizer) -> list[int]:
    """[bos id] when the tokenizer puts a BOS token before every input by default, else []."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    return [bos] if tokenizer("a")["input_ids"][:1] == [bos] else []


@torch.no_grad()
def _window_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """Logits [1, T, vocab] of a transformers model, or of any scorer with `window_logits` (llama.cpp's,
    `core.evaluation.llama_cpp_scoring`), so a variant is measured in the runtime that serves it."""
    if hasattr(model, "window_logits"):
        return model.window_logits(ids)
    return model(input_ids=ids.to(next(model.parameters()).device)).logits


def _log_probs(model, windows: torch.Tensor):
    """Yield (window index, log-softmax [window-1, vocab], targets [window-1]) one window at a time, on the
    device the logits came from: only the per-position results leave it (a full log-softmax is window x
    vocabulary floats, 268 MB per 256-token window of Gemma's 262k vocabulary, and copying it to the host
    made a GPU measurement CPU-bound)."""
    for i in range(windows.size(0)):
        ids = windows[i : i + 1]
        logits = _window_logits(model, ids)[0, :-1].float()
        yield i, torch.log_softmax(logits, dim=-1), windows[i, 1:].to(logits.device)


def build_reference(model, windows: torch.Tensor, top_k: int = TOP_K) -> dict[str, torch.Tensor]:
    """The baseline's top-k log-probabilities, their ids and its NLL at every scored position."""
    top_lp, top_ids, nll = [], [], []
    for _, logp, targets in _log_probs(model, windows):
        values, ids = logp.topk(top_k, dim=-1)
        top_lp.append(values.cpu())
        top_ids.append(ids.to(torch.int32).cpu())
        nll.append(-logp.gather(1, targets[:, None])[:, 0].cpu())
    return {"windows": windows.to(torch.int32), "top_logprobs": torch.cat(top_lp), "top_ids": torch.cat(top_ids),
            "nll": torch.cat(nll)}


def save_reference(reference: dict[str, torch.Tensor], path: Path, source: str) -> None:
    """safetensors (no pickle), written to a temporary name and renamed. A full disk is E007, not the
    library's own error (safetensors reports ENOSPC as a SafetensorError, which is no OSError)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file({k: v.contiguous() for k, v in reference.items()}, str(tmp),
                  metadata={"source": source, "top_k": str(reference["top_ids"].size(1))})
    except Exception as exc:  # noqa: BLE001 - only a full disk is translated; anything else is raised as is
        tmp.unlink(missing_ok=True)
        if "No space left on device" in str(exc) or getattr(exc, "errno", None) == 28:
            raise DiskFull(f"disk full while writing the fidelity reference {path}.",
                           "Free disk space and run again; results written before are kept.") from None
        raise
    tmp.replace(path)


def load_reference(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def reference_digest(reference: dict[str, torch.Tensor]) -> str:
    """Identifies the scored tokens, so results from different texts are never compared."""
    return hashlib.sha256(reference["windows"].numpy().tobytes()).hexdigest()[:16]


def topk_kl(ref_lp: torch.Tensor, ref_ids: torch.Tensor, cand_logp: torch.Tensor) -> torch.Tensor:
    """Per-position KL(P || Q) over the baseline's top-k tokens plus one bucket for the rest.

    ref_lp, ref_ids: [n, k] the baseline's top-k log-probs and ids; cand_logp: [n, vocab]."""
    p = ref_lp.exp()
    q_lp = cand_logp.gather(1, ref_ids.long())
    kl = (p * (ref_lp - q_lp)).sum(1)
    p_rest = (1.0 - p.sum(1)).clamp_min(1e-12)
    q_rest = (1.0 - q_lp.exp().sum(1)).clamp_min(1e-12)
    return (kl + p_rest * (p_rest.log() - q_rest.log())).clamp_min(0.0)


def exact_kl(base_logp: torch.Tensor, cand_logp: torch.Tensor) -> torch.Tensor:
    return (base_logp.exp() * (base_logp - cand_logp)).sum(1).clamp_min(0.0)


def _block_means(values: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """Means of the whole blocks of `block` consecutive positions (a trailing partial block is dropped)."""
    n_blocks = values.numel() // block
    return values.double()[: n_blocks * block].view(n_blocks, -1).mean(1)


def _block_mean_se(values: torch.Tensor, block: int = BLOCK) -> tuple[float, float]:
    """Mean and a clustered standard error: the spread of block means over sqrt(blocks)."""
    values = values.double()
    n_blocks = max(values.numel() // block, 1)
    means = _block_means(values, block) if values.numel() >= block else values[None]
    se = float(means.std(unbiased=True) / math.sqrt(n_blocks)) if n_blocks > 1 else float("nan")
    return float(values.mean()), se


def paired_ratio(base: torch.Tensor, other: torch.Tensor, block: int = BLOCK) -> dict[str, float]:
    """mean(other) / mean(base) of two per-position series measured on the same positions (e.g. the KL of a
    mixed allocation and of the uniform format it replaces), with a 95 % interval from the ratio estimator's
    clustered standard error (delta method over block means). Pairing matters: both series rise and fall
    with the same hard passages, so the ratio is far tighter than the two standard errors suggest."""
    if base.shape != other.shape:
        raise ValueError(f"paired series differ in length: {base.numel()} and {other.numel()} positions")
    n_blocks = base.numel() // block
    if n_blocks < 2:
        raise ValueError(f"{base.numel()} positions make fewer than two blocks of {block}")
    a, b = _block_means(base, block), _block_means(other, block)
    ratio = float(b.mean() / a.mean())
    se = float(((b - ratio * a).pow(2).sum() / (n_blocks * (n_blocks - 1))).sqrt() / a.mean())
    return {"ratio": ratio, "ratio_low": ratio - 1.96 * se, "ratio_high": ratio + 1.96 * se,
            "ratio_stderr": se, "blocks": n_blocks}


def per_position(model, reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One forward pass of the candidate: per-position KL, top-1 agreement and NLL difference."""
    windows = reference["windows"].long()
    per_window = windows.size(1) - 1
    kl, agree, dnll = [], [], []
    for i, logp, targets in _log_probs(model, windows):
        rows = slice(i * per_window, (i + 1) * per_window)
        ref_lp, ref_ids = reference["top_logprobs"][rows].to(logp.device), reference["top_ids"][rows].to(logp.device)
        kl.append(topk_kl(ref_lp, ref_ids, logp).cpu())
        agree.append((logp.argmax(1) == ref_ids[:, 0].long()).float().cpu())
        dnll.append((-logp.gather(1, targets[:, None])[:, 0]).cpu() - reference["nll"][rows])
    return {"kl": torch.cat(kl), "agree": torch.cat(agree), "dnll": torch.cat(dnll)}


def summarise(values: dict[str, torch.Tensor], base_nll: torch.Tensor) -> Fidelity:
    kl, kl_se = _block_mean_se(values["kl"])
    agree, agree_se = _block_mean_se(values["agree"])
    dnll, dnll_se = _block_mean_se(values["dnll"])
    base_mean = float(base_nll.double().mean())
    half = 1.96 * (dnll_se if dnll_se == dnll_se else 0.0)
    return Fidelity(kl_divergence=kl, kl_stderr=kl_se, top1_agreement=agree, top1_stderr=agree_se,
                    ppl_ratio=math.exp(dnll), ppl_ratio_low=math.exp(dnll - half), ppl_ratio_high=math.exp(dnll + half),
                    perplexity=math.exp(base_mean + dnll), tokens=int(values["kl"].numel()))


def measure(model, reference: dict[str, torch.Tensor], max_positions: int | None = None) -> Fidelity:
    """Fidelity of `model` against a stored baseline reference (optionally on its first positions only:
    only the windows those positions lie in are run, a cheaper and noisier figure)."""
    if max_positions is not None:
        per_window = reference["windows"].size(1) - 1
        kept = -(-max_positions // per_window) * per_window
        reference = {"windows": reference["windows"][: kept // per_window],
                     **{k: reference[k][:kept] for k in ("top_logprobs", "top_ids", "nll")}}
    values = per_position(model, reference)
    base_nll = reference["nll"]
    if max_positions is not None:
        values = {k: v[:max_positions] for k, v in values.items()}
        base_nll = base_nll[:max_positions]
    return summarise(values, base_nll)


@torch.no_grad()
def exact_vs_topk_kl(base_model, model, windows: torch.Tensor, top_k: int = TOP_K) -> dict:
    """Mean exact KL (both full distributions) vs the stored top-k approximation, on `windows`."""
    exact, approx = [], []
    for (_, base_logp, _), (_, cand_logp, _) in zip(_log_probs(base_model, windows), _log_probs(model, windows)):
        cand_logp = cand_logp.to(base_logp.device)
        values, ids = base_logp.topk(top_k, dim=-1)
        exact.append(exact_kl(base_logp, cand_logp).cpu())
        approx.append(topk_kl(values, ids, cand_logp).cpu())
    exact_mean, approx_mean = float(torch.cat(exact).mean()), float(torch.cat(approx).mean())
    return {"exact_kl": exact_mean, "topk_kl": approx_mean, "top_k": top_k,
            "relative_error": (exact_mean - approx_mean) / exact_mean if exact_mean > 0 else 0.0}
