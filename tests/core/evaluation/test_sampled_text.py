"""The second fidelity text: windows the baseline samples itself (core.evaluation.sampled_text), and its place in an
evaluation (kl_sampled). Models: the real tiny Llama of conftest (random weights, the corpus's BPE tokenizer)."""

import copy

import pytest
import torch

from greenai_dagster.core.evaluation import fidelity, sampled_text
from greenai_dagster.core.evaluation.eval_settings import EvalSettings


@pytest.fixture(scope="module")
def sampled(tiny_model_dir):
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    return model, tokenizer, sampled_text.sample_windows(model, tokenizer, 512, window=128)


def test_windows_are_whole_start_with_their_prompt_and_repeat_for_a_seed(sampled):
    model, tokenizer, windows = sampled
    assert windows.shape == (4, 128)
    for i in range(4):
        prompt = sampled_text.prompt_ids(tokenizer, sampled_text.PROMPTS[i][1])
        assert windows[i, :len(prompt)].tolist() == prompt
        assert len(set(windows[i, len(prompt):].tolist())) > 10      # a continuation, not one repeated token
    before = torch.random.get_rng_state()
    again = sampled_text.sample_windows(model, tokenizer, 512, window=128)
    assert torch.equal(again, windows)
    assert torch.equal(torch.random.get_rng_state(), before)         # the caller's random state is untouched
    other = sampled_text.sample_windows(model, tokenizer, 512, window=128, seed=sampled_text.SEED + 1)
    assert not torch.equal(other, windows)


def test_the_prompts_cover_distinct_domains():
    domains = [d for d, _ in sampled_text.PROMPTS]
    assert len(domains) == len(set(domains)) == 16
    assert "code" in domains and "chat" in domains


def test_kl_on_the_samples_is_zero_for_the_baseline_and_grows_with_noise(sampled):
    model, _, windows = sampled
    reference = fidelity.build_reference(model, windows, top_k=16)
    assert fidelity.measure(model, reference).kl_divergence == 0.0
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    kls = []
    for scale in (0.05, 0.3):
        with torch.no_grad():
            for name, p in noisy.named_parameters():
                if name.endswith("proj.weight"):
                    p.copy_(dict(model.named_parameters())[name] * (1 + scale * torch.randn(p.shape, generator=generator)))
        kls.append(fidelity.measure(noisy, reference).kl_divergence)
    assert 0 < kls[0] < kls[1], kls


def test_make_sampled_reference_is_drawn_once_and_can_be_turned_off(sampled, tmp_path):
    from greenai_dagster.core.evaluation.evaluate import load_sampled_reference, make_sampled_reference, sampled_reference_path

    model, tokenizer, _ = sampled
    assert make_sampled_reference(model, tokenizer, EvalSettings(sampled_tokens=0), tmp_path / "x") is None
    assert load_sampled_reference(tmp_path) is None
    path = sampled_reference_path(tmp_path)
    made = make_sampled_reference(model, tokenizer, EvalSettings(sampled_tokens=1024), path)
    assert made["windows"].shape == (2, fidelity.WINDOW)
    stamp = path.stat().st_mtime_ns
    loaded = load_sampled_reference(tmp_path)
    assert torch.equal(loaded["windows"], made["windows"]) and path.stat().st_mtime_ns == stamp
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert "sampled from the baseline" in f.metadata()["source"]


def test_a_reference_that_does_not_fit_the_disk_is_e007(sampled, tmp_path):
    """safetensors reports a full disk as its own SafetensorError; a user gets E007 and no half file."""
    import subprocess

    from greenai_dagster.core.errors import DiskFull

    model, _, windows = sampled
    folder = tmp_path / "tiny_disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    try:
        reference = fidelity.build_reference(model, windows, top_k=64)      # 4 x 127 positions x 64: > 64 KiB
        with pytest.raises(DiskFull, match="disk full while writing the fidelity reference"):
            fidelity.save_reference(reference, folder / "ref.safetensors", "test")
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["umount", str(folder)], check=False)
