"""Quality scored through llama.cpp's logits equals what transformers scores on the same weights.

A tiny random Llama with the packaged SmolLM2 tokenizer is converted to F16 GGUF by llama.cpp's
converter; llama.cpp's fidelity to the transformers model must be near zero KL, its lm-eval
log-likelihoods must match HFLM's request by request, and reusing the KV cache for a shared
context must not change any number. Skipped, with the reason, without llama-cpp-python or the
converter (scripts/setup.sh installs both).
"""

import math

import pytest
import torch

from greenai_dagster.core.models import gguf_files

pytestmark = [
    pytest.mark.skipif(not gguf_files.converter_available(), reason="llama.cpp's converter not installed "
                       "(scripts/setup.sh unpacks it under .tools/llama.cpp)"),
]


@pytest.fixture(scope="module")
def f16_gguf(smol_tokenizer_llama, tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    out = tmp_path_factory.mktemp("f16") / "model-f16.gguf"
    return gguf_files.convert(smol_tokenizer_llama, out, "f16")


def _requests(pairs):
    from lm_eval.api.instance import Instance

    return [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]


PAIRS = [("The quick brown fox", " jumps"), ("The quick brown fox", " sleeps over the dog"),
         ("Water freezes at zero degrees", " Celsius"), ("Water freezes at zero degrees", " Kelvin"),
         ("Question: 2 + 2 = ", "4")]   # trailing space moves to the continuation, as in lm-eval


def test_fidelity_through_llama_cpp_f16_is_the_float_model(smol_tokenizer_llama, f16_gguf):
    from greenai_dagster.core.evaluation import fidelity
    from greenai_dagster.core.evaluation.llama_cpp_scoring import LlamaCppScorer
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(smol_tokenizer_llama))
    text = "The committee met on Tuesday to review the budget. " * 40
    windows = fidelity.token_windows(tokenizer, text, 256, window=128)
    reference = fidelity.build_reference(model, windows)
    same = fidelity.measure(model, reference)
    served = fidelity.measure(LlamaCppScorer(f16_gguf, n_ctx=256), reference)
    assert same.kl_divergence == pytest.approx(0.0, abs=1e-6)
    # F16 weights and llama.cpp's kernels: a tiny but nonzero divergence from the float32 forward
    assert 0.0 < served.kl_divergence < 1e-3
    assert abs(served.ppl_ratio - 1.0) < 0.01


def test_loglikelihoods_match_hflm_and_cache_reuse_changes_nothing(smol_tokenizer_llama, f16_gguf):
    from lm_eval.models.huggingface import HFLM

    from greenai_dagster.core.evaluation.llama_cpp_scoring import LlamaCppLM, LlamaCppScorer
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(smol_tokenizer_llama))
    want = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1).loglikelihood(_requests(PAIRS))
    lm = LlamaCppLM(LlamaCppScorer(f16_gguf, n_ctx=256), tokenizer)
    got = lm.loglikelihood(_requests(PAIRS))
    for (ll_want, _), (ll_got, greedy) in zip(want, got):
        assert isinstance(greedy, bool)
        assert math.isfinite(ll_got) and ll_got == pytest.approx(ll_want, rel=2e-3, abs=2e-3)
    # the same requests in reverse order (no shared prefix with the cache) and on a fresh context
    again = LlamaCppLM(LlamaCppScorer(f16_gguf, n_ctx=256), tokenizer).loglikelihood(_requests(PAIRS[::-1]))[::-1]
    for (a, _), (b, _) in zip(got, again):
        assert a == pytest.approx(b, abs=1e-4)


def test_greedy_generation_stops_at_the_stop_string(smol_tokenizer_llama, f16_gguf):
    from lm_eval.api.instance import Instance

    from greenai_dagster.core.evaluation.llama_cpp_scoring import LlamaCppLM, LlamaCppScorer
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(smol_tokenizer_llama))
    lm = LlamaCppLM(LlamaCppScorer(f16_gguf, n_ctx=256), tokenizer)
    request = Instance(request_type="generate_until", doc={}, idx=0,
                       arguments=("Once upon a time", {"until": ["\n"], "max_gen_toks": 8}))
    (text,) = lm.generate_until([request])
    ids = tokenizer("Once upon a time", return_tensors="pt")["input_ids"]
    with torch.no_grad():   # the same greedy continuation as transformers, cut at the stop string
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    expected = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0]
    assert "\n" not in text and text == expected
