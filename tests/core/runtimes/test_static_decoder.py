"""The CUDA runtimes' shared decoder (`cuda_static.StaticDecoder`) run eagerly on the CPU: its static-cache
attention must compute the model transformers computes, at batch 1 and for a batch of sequences decoded
together (what `benchmarks/runtimes_gpu.py` times at batch 8 and 32). On CUDA the same step is compiled or
captured; here it runs as written, so the arithmetic is checked on every machine."""

from __future__ import annotations

import pytest
import torch

PROMPT = list(range(40, 60))
STEPS = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-static") / "tiny-llama")


def _session(folder, batch: int):
    from transformers import AutoModelForCausalLM

    from greenai_dagster.core.runtimes.cuda_compiled import CudaCompiled

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    runtime = CudaCompiled()
    runtime.convert(model)   # the decoder's linears as the runtime builds them (bf16 weights)
    for module in model.modules():   # the rest in bf16 too, as on the GPU
        module.to(torch.bfloat16)
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()   # the same weights
    return runtime.session_for(model, "cpu", max_len=64, batch=batch), reference


def test_batch_decoding_matches_single_sequence_and_transformers(tiny):
    single, model = _session(tiny, 1)
    batched, _ = _session(tiny, 3)
    assert batched.kernel_step_blocker == "not on CUDA" and batched.step_path == "eager step"
    single.prefill(PROMPT)
    batched.prefill(PROMPT)
    sequence = list(PROMPT)
    for step in range(STEPS + 1):
        one = single.last_logits()[0]
        rows = batched.last_logits()
        assert rows.shape == (3, model.config.vocab_size)
        for row in rows:   # every sequence of the batch holds the same prompt: the same logits
            assert torch.allclose(row, one, atol=2e-2, rtol=0), f"step {step}: a batch row differs from batch 1"
        with torch.no_grad():
            expected = model(torch.tensor([sequence])).logits[0, -1].float()
        error = ((one - expected).norm() / expected.norm()).item()
        assert error < 2e-2, f"step {step}: relative error {error:.4f} against transformers"
        assert single.last_token() == batched.last_token() == int(one.argmax())
        sequence.append(single.last_token())
        if step < STEPS:
            single.decode()
            batched.decode()
    assert int(batched.decoder.pos) == len(PROMPT) + STEPS
