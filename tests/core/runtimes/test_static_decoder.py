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


def test_gemma3_sliding_window_layers_decode_as_transformers_does():
    """Gemma 3 (served by the CUDA runtimes since the lent H100 showed Gemma 3 270M falling back to torch eager
    at 21-33 ms/token): scaled embeddings, q/k norms, norms after attention and after the MLP, and sliding-window
    layers with their own rotary table. A prompt three times the window, then greedy steps, in float32 against
    transformers' own forward: the same logits, for each sequence of a batch of two."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from greenai_dagster.core.runtimes.cuda_compiled import CudaCompiled
    from greenai_dagster.core.runtimes.cuda_static import supported_config

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                              query_pre_attn_scalar=16, max_position_embeddings=256,
                              layer_types=["sliding_attention"] * 3 + ["full_attention"])
    assert supported_config(config, max_len=64)
    model = Gemma3ForCausalLM(config).eval()
    session = CudaCompiled().session_for(model, "cpu", max_len=64, batch=2)
    prompt = list(range(40, 64))   # 24 tokens, window 8
    session.prefill(prompt)
    sequence = list(prompt)
    for step in range(STEPS + 1):
        with torch.no_grad():
            expected = model(torch.tensor([sequence])).logits[0, -1].float()
        rows = session.last_logits()
        for row in rows:
            error = ((row - expected).norm() / expected.norm()).item()
            assert error < 1e-4, f"step {step}: relative error {error:.2e} against transformers"
        sequence.append(session.last_token())
        if step < STEPS:
            session.decode()


def test_a_gemma3_checkpoint_skeleton_keeps_its_embedding_scale(tmp_path):
    """The quantized CUDA runtimes build the model on the meta device and load the saved tensors into it;
    Gemma's embedding scale is a buffer that is never saved, so it must be rebuilt (sqrt(hidden)), not left
    on the meta device."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from greenai_dagster.core.runtimes.cuda_compiled import load_state, skeleton

    config = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    Gemma3ForCausalLM(config).save_pretrained(tmp_path)
    model = skeleton(tmp_path, "cpu", set(), load_state(tmp_path))
    scale = model.model.embed_tokens.embed_scale
    assert not scale.is_meta and abs(float(scale) - 64 ** 0.5) < 1e-3
