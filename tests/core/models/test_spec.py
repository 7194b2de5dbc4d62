"""Spec formulas against hand-computed values, and spec facts of a real (tiny) model."""

import pytest

from greenai_dagster.core.models.spec import GIB, inference_memory, training_memory, valid_group_sizes


def test_inference_memory_matches_hand_computation():
    # 1e9 params, fp16: weights 2e9 B; KV = 2*32 layers*1 batch*8 kv heads*4096 seq*128 d_head*2 B = 536,870,912 B
    # activations = 1*4096*4096*2 = 33,554,432 B; buffer = 0.1*2e9 = 2e8 B
    m = inference_memory(10**9, batch_size=1, seq_len=4096, d_model=4096, n_layers=32, n_kv_heads=8, d_head=128)
    assert m["weights_gb"] * GIB == pytest.approx(2e9)
    assert m["kv_cache_gb"] * GIB == pytest.approx(536_870_912)
    assert m["activations_gb"] * GIB == pytest.approx(33_554_432)
    assert m["buffer_gb"] * GIB == pytest.approx(2e8)
    assert m["total_gb"] * GIB == pytest.approx(2e9 + 536_870_912 + 33_554_432 + 2e8)
    assert m["kv_cache_per_token_mb"] == pytest.approx(536_870_912 / 4096 / 1024**2)  # 0.125 MB


def test_kv_cache_with_all_heads_is_the_seeds_formula():
    # seed: 2*L*B*H*S*(D/H)*bytes with H = 12, D = 768 (gpt2), L = 12, S = 1024, fp32
    m = inference_memory(124_000_000, batch_size=1, seq_len=1024, d_model=768, n_layers=12,
                         n_kv_heads=12, d_head=64, precision="fp32")
    assert m["kv_cache_gb"] * GIB == pytest.approx(2 * 12 * 1 * 12 * 1024 * 64 * 4)


def test_training_memory_matches_hand_computation():
    # 1e8 params fp16: state = 1e8*(2+8+2) = 1.2e9; activations = 2*512*1024*2*24 = 50,331,648; buffer = 2.4e8
    m = training_memory(10**8, batch_size=2, seq_len=512, d_model=1024, n_layers=24)
    assert m["model_state_gb"] * GIB == pytest.approx(1.2e9)
    assert m["activations_gb"] * GIB == pytest.approx(50_331_648)
    assert m["buffer_gb"] * GIB == pytest.approx(2.4e8)
    assert m["total_gb"] * GIB == pytest.approx(1.2e9 + 50_331_648 + 2.4e8)


def test_smollm2_widths_admit_32_and_64_but_not_128():
    assert valid_group_sizes({576, 1536}) == [32, 64]


def test_spec_of_tiny_model(tiny_spec, tiny_model):
    model = tiny_model[0]
    assert tiny_spec.parameter_count_exact == sum(p.numel() for p in model.parameters())
    assert tiny_spec.linear_in_features == [64, 128]
    assert tiny_spec.valid_group_sizes == [32, 64]
    assert tiny_spec.num_key_value_heads == 2 and tiny_spec.head_dim == 16
    assert 0 < tiny_spec.min_vram_gb < tiny_spec.recommended_vram_gb
    assert tiny_spec.model_size_gb > 0
