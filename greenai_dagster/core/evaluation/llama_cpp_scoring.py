"""Quality measured where the variant is served: llama.cpp's own logits, for fidelity and for lm-eval.

A GGUF variant (the `gguf` method, or the packaged Q4_K/Q4_1 files) is deployed through llama.cpp,
whose CPU kernels also quantize activations (to 8 bits for the dot products with quantized
weights). Scoring it through transformers' GGUF loader would measure weights dequantized to float,
not what the user gets. This module scores through llama-cpp-python instead:

- `LlamaCppScorer`: the logits of every position of a token window (`logits_all=True`), so
  `core.evaluation.fidelity` measures KL / top-1 agreement / perplexity ratio on llama.cpp's distributions;
- `LlamaCppLM`: an lm-eval `LM` on the same scorer (log-likelihood of a continuation, greedy
  generation), tokenising exactly as lm-eval's HFLM does with the checkpoint's own tokenizer, so
  the same items are asked the same way and per-item results pair with the baseline's.

Requests sharing a context (the options of one multiple-choice item) reuse llama.cpp's KV cache for
the common prefix. `benchmarks/gguf_quality.py` shows the baseline converted to F16 GGUF scores
like the transformers baseline within noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from greenai_dagster.core.formats import int8_dynamic, name_of as format_of
from greenai_dagster.core.formats.gguf import describe
from greenai_dagster.core.models.gguf_files import GGUFUnavailable
from greenai_dagster.core.runtimes.llama_cpp import gguf_in, serving_file
from greenai_dagster.core.runtimes.verdicts import unavailable_reason

LIBRARY = "llama-cpp-python"


class LlamaCppScorer:
    """One llama.cpp context that returns the logits of every position it evaluates."""

    def __init__(self, gguf_path: Path, n_ctx: int = 1024, threads: int = 0):
        from llama_cpp import Llama

        self.path = Path(gguf_path)
        self.n_ctx = n_ctx
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, n_batch=512, n_threads=threads or os.cpu_count() or 1,
                         n_threads_batch=threads or os.cpu_count() or 1, logits_all=True, use_mmap=False,
                         verbose=False)

    def logits(self, tokens: list[int]) -> np.ndarray:
        """float32 [len(tokens), vocab]: the next-token logits after each prefix of `tokens`.

        The part of `tokens` already in the KV cache (a shared prefix with the previous call) is not
        evaluated again; at least the last token always is."""
        if not 0 < len(tokens) <= self.n_ctx:
            raise ValueError(f"{len(tokens)} tokens do not fit a {self.n_ctx}-token context")
        cached = self.llm.input_ids[: self.llm.n_tokens]
        keep = 0
        limit = min(len(cached), len(tokens) - 1)
        while keep < limit and cached[keep] == tokens[keep]:
            keep += 1
        self.llm.n_tokens = keep
        self.llm.eval(tokens[keep:])
        return self.llm.scores[: len(tokens)]

    def window_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """The interface `core.evaluation.fidelity` uses: ids [1, T] -> logits [1, T, vocab] (float32, CPU)."""
        return torch.from_numpy(np.array(self.logits(ids[0].tolist()), copy=True))[None]

    def describe(self) -> str:
        return f"llama.cpp ({LIBRARY}, CPU, logits of every position) on {self.path.name}: {describe(self.path)}"


def _lm_base():
    from lm_eval.api.model import LM

    return LM


class LlamaCppLM(_lm_base()):
    """lm-eval's model interface over a `LlamaCppScorer`, tokenising as HFLM does."""

    def __init__(self, scorer: LlamaCppScorer, tokenizer, max_gen_toks: int = 256):
        super().__init__()
        self.scorer = scorer
        self.tokenizer = tokenizer
        self.max_length = scorer.n_ctx
        self.max_gen_toks = max_gen_toks
        self.prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id

    # -- tokenisation, as lm-eval's HFLM (causal backend, add_bos_token unset) -------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if not context:
            return [self.prefix_token_id], self._encode(continuation)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self._encode(context + continuation)
        context_enc = self._encode(context)
        return context_enc, whole[len(context_enc):]

    def _continuation_logprob(self, context_enc: list[int], continuation_enc: list[int]) -> tuple[float, bool]:
        whole = (context_enc + continuation_enc)[-(self.max_length + 1):]
        inputs, n = whole[:-1], len(continuation_enc)
        logits = torch.from_numpy(np.array(self.scorer.logits(inputs)[-n:], copy=True))
        logp = torch.log_softmax(logits.float(), dim=-1)
        target = torch.tensor(whole[-n:])
        return float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())

    # -- lm-eval's three request types -------------------------------------------------------------------
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        encoded = [self._encode_pair(*req.args) for req in requests]
        # options of one item share their context: in context order, llama.cpp keeps it cached
        order = sorted(range(len(encoded)), key=lambda i: encoded[i][0])
        out: list[tuple[float, bool] | None] = [None] * len(encoded)
        for i in order:
            out[i] = self._continuation_logprob(*encoded[i])
            self.cache_hook.add_partial("loglikelihood", requests[i].args, out[i])
        return out  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests) -> list[float]:
        scores = []
        for req in requests:
            tokens = self._encode(req.args[0])
            total, start = 0.0, 0
            while start < len(tokens):   # disjoint windows, each conditioned on the tokens before it
                end = min(start + self.max_length, len(tokens))
                context = tokens[max(0, end - self.max_length - 1):start] or [self.prefix_token_id]
                total += self._continuation_logprob(context, tokens[start:end])[0]
                start = end
            scores.append(total)
        return scores

    def generate_until(self, requests) -> list[str]:
        outputs = []
        for req in requests:
            context, kwargs = req.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            limit = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            tokens = self._encode(context)[-(self.max_length - limit):]
            generated: list[int] = []
            text = ""
            for _ in range(limit):
                token = int(self.scorer.logits(tokens + generated)[-1].argmax())
                if token == self.tokenizer.eos_token_id:
                    break
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if any(stop in text for stop in until):
                    break
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
            self.cache_hook.add_partial("generate_until", req.args, text)
        return outputs


def scorer_for(checkpoint: Path, device: str, n_ctx: int = 1024) -> LlamaCppScorer | None:
    """A llama.cpp scorer for a GGUF checkpoint, or an `int8` checkpoint (served repacked to Q8_0), on CPU
    (the formats and device llama.cpp serves them in), or None otherwise: not GGUF, another device (its runtime is not llama.cpp here),
    llama-cpp-python not installed, or llama.cpp failed the self-test on this machine (`core.runtimes.verdicts`:
    scoring runs in this process, where a crash would take the run down)."""
    if device != "cpu":
        return None

    path = gguf_in(Path(checkpoint))
    int8 = path is None and format_of(checkpoint) == int8_dynamic.NAME
    if path is None and not int8:
        return None
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    if unavailable_reason("llama.cpp"):     # it crashed or disagreed here: score through PyTorch instead
        return None
    if int8:    # served repacked to Q8_0 (the CPU int8 GEMM's per-token activations are not what the user gets)

        try:
            path = serving_file(Path(checkpoint))
        except GGUFUnavailable:
            return None
    return LlamaCppScorer(path, n_ctx=n_ctx)
