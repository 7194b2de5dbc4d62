"""Fidelity to the baseline (KL, top-1 agreement, perplexity ratio), flips and the above-chance test.

Models are the real tiny Llama (random weights, a BPE tokenizer trained on the corpus) and its
RTN quantizations made by the project's own `rtn` method (llm-compressor) and reloaded from disk.
"""

import math

import pytest
import torch

from greenai_dagster.core.evaluation import fidelity
from greenai_dagster.core.evaluation.flips import above_chance, compare


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    windows = fidelity.token_windows(tokenizer, fidelity.held_out_text()[0], 2048, window=256)
    return fidelity.build_reference(model, windows, top_k=16)


def test_baseline_against_itself_is_exactly_faithful(tiny_model, reference):
    model, _ = tiny_model
    fid = fidelity.measure(model, reference)
    assert fid.kl_divergence == 0.0
    assert fid.top1_agreement == 1.0
    assert fid.ppl_ratio == pytest.approx(1.0, abs=1e-6)
    assert fid.tokens == 8 * 255


@pytest.fixture(scope="module")
def rtn_kl(tiny_model_dir, reference, tmp_path_factory):
    """KL of RTN at 8, 4, 3 and 2 bits (group 32), each compressed, saved and reloaded."""
    from greenai_dagster.core.models.checkpoints import load_variant
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    spec = build_spec("tiny", load_model_and_tokenizer(str(tiny_model_dir))[0], str(tiny_model_dir))
    out = {}
    for bits in (8, 4, 3, 2):
        folder = tmp_path_factory.mktemp(f"rtn{bits}") / "model"
        strategy = Strategy(f"rtn{bits}", [Step("rtn", {"bits": bits, "group_size": 32})])
        compress_to_checkpoint(str(tiny_model_dir), strategy, spec, folder)
        model, _ = load_variant(folder)
        out[bits] = fidelity.measure(model, reference)
    return out


def test_kl_grows_as_rtn_gets_coarser(rtn_kl):
    kls = [rtn_kl[b].kl_divergence for b in (8, 4, 3, 2)]
    assert all(k > 0 for k in kls)
    assert kls == sorted(kls), kls
    # the differences are beyond the measurement noise at each step
    for finer, coarser in ((8, 4), (4, 3), (3, 2)):
        a, b = rtn_kl[finer], rtn_kl[coarser]
        assert b.kl_divergence - a.kl_divergence > 2 * math.hypot(a.kl_stderr, b.kl_stderr)
    assert rtn_kl[2].top1_agreement < rtn_kl[8].top1_agreement
    # (random weights: perplexity is about the vocabulary size, so its ratio barely moves; only its interval is checked)
    assert rtn_kl[2].ppl_ratio_low <= rtn_kl[2].ppl_ratio <= rtn_kl[2].ppl_ratio_high


def test_topk_kl_is_a_lower_bound_and_exact_with_the_whole_vocabulary():
    torch.manual_seed(0)
    base = torch.log_softmax(torch.randn(50, 40) * 3, dim=-1)
    cand = torch.log_softmax(base + torch.randn(50, 40), dim=-1)
    exact = fidelity.exact_kl(base, cand)
    for k in (1, 5, 20):
        values, ids = base.topk(k, dim=-1)
        approx = fidelity.topk_kl(values, ids, cand)
        assert (approx <= exact + 1e-5).all()
    values, ids = base.topk(40, dim=-1)
    assert torch.allclose(fidelity.topk_kl(values, ids, cand), exact, atol=1e-5)


def test_reference_survives_a_round_trip_through_safetensors(reference, tmp_path):
    path = tmp_path / fidelity.REFERENCE_FILE
    fidelity.save_reference(reference, path, "test")
    loaded = fidelity.load_reference(path)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    assert fidelity.reference_digest(loaded) == fidelity.reference_digest(reference)


def test_flips_and_mcnemar_by_hand():
    base = {"t1": "1111100000", "t2": "10"}
    cand = {"t1": "1110000011", "t2": "11"}
    flips = compare(base, cand)
    # t1: positions 3, 4 right->wrong; 8, 9 wrong->right; t2: position 1 wrong->right
    assert (flips.items, flips.correct_to_wrong, flips.wrong_to_correct) == (12, 2, 3)
    assert flips.flip_rate == pytest.approx(5 / 12)
    assert flips.accuracy_delta == pytest.approx(1 / 12)
    assert flips.p_value == pytest.approx(1.0)           # 3 vs 2 discordant: exact binomial, two-sided
    assert flips.verdict == "no difference"
    many = compare({"t": "0" * 30 + "1" * 10}, {"t": "1" * 20 + "0" * 10 + "1" * 10})
    assert many.verdict == "better" and many.p_value < 1e-5


def test_above_chance_needs_evidence():
    # 4-way multiple choice: 25 % is chance
    assert not above_chance({"t": "1000" * 10}, {"t": 0.25})["above_chance"]          # exactly chance
    assert not above_chance({"t": "1100" + "1000" * 2}, {"t": 0.25})["above_chance"]  # 4 of 12: weak evidence
    result = above_chance({"t": "1100" * 25}, {"t": 0.25})                            # 50 % of 100
    assert result["above_chance"] and result["z"] == pytest.approx((50 - 25) / math.sqrt(100 * 0.25 * 0.75))
    assert above_chance({"gen": "0001" * 5}, {"gen": 0.0})["above_chance"]            # any exact match beats 0


def test_windows_start_with_bos_when_the_tokenizer_adds_one(tiny_model_dir):
    """Gemma-style tokenizers prepend BOS to every input: so does every fidelity window; tokenizers that
    do not (SmolLM2, the tiny one) get plain windows, so existing references keep their tokens."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text = fidelity.held_out_text()[0]
    windows = fidelity.token_windows(plain, text, 1024, window=256)
    assert fidelity.bos_prefix(plain) == [] and windows.shape == (4, 256)
    bos_tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    eos = bos_tok.eos_token
    bos_tok._tokenizer.post_processor = TemplateProcessing(single=f"{eos} $A", special_tokens=[(eos, bos_tok.eos_token_id)])
    bos_tok.bos_token = eos
    with_bos = fidelity.token_windows(bos_tok, text, 1024, window=256)
    assert fidelity.bos_prefix(bos_tok) == [bos_tok.bos_token_id]
    assert with_bos.shape == (4, 256) and bool((with_bos[:, 0] == bos_tok.bos_token_id).all())
    assert torch.equal(with_bos[0, 1:], windows.flatten()[:255])


def test_paired_ratio_of_kl_series():
    """The ratio of two paired per-position series and its interval: exact when one is a multiple of the
    other, covering the true ratio when noise is added, and tighter than the two standard errors unpaired."""
    torch.manual_seed(0)
    hard = torch.rand(64).repeat_interleave(fidelity.BLOCK) * 4   # passages of varying difficulty, shared
    base = hard + 0.1 * torch.rand(hard.numel())
    exact = fidelity.paired_ratio(base, 0.7 * base)
    assert exact["ratio"] == pytest.approx(0.7, rel=1e-6) and exact["ratio_stderr"] < 1e-8   # float32 rounding only
    assert exact["blocks"] == 64

    other = 0.7 * hard + 0.1 * torch.rand(hard.numel())
    paired = fidelity.paired_ratio(base, other)
    true_ratio = float(other.mean() / base.mean())
    assert paired["ratio"] == pytest.approx(true_ratio)
    assert paired["ratio_low"] < 0.7 * 1.02 and paired["ratio_high"] > 0.7 * 0.98
    _, se_base = fidelity._block_mean_se(base)
    _, se_other = fidelity._block_mean_se(other)
    unpaired = true_ratio * ((se_base / float(base.mean())) ** 2 + (se_other / float(other.mean())) ** 2) ** 0.5
    assert paired["ratio_stderr"] < unpaired / 5

    with pytest.raises(ValueError, match="differ in length"):
        fidelity.paired_ratio(base, other[:-1])
    with pytest.raises(ValueError, match="fewer than two blocks"):
        fidelity.paired_ratio(base[:10], other[:10])
