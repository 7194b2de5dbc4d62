"""benchmarks/gpu/llama8b_pipeline.py's parts that run without a GPU: the model it builds and the formulas it
evaluates (the whole script runs end to end on CPU with --tiny; that takes minutes and is not a unit test)."""

from __future__ import annotations

import torch

from benchmarks.gpu.llama8b_pipeline import TINY, formula_checks, shape, spec_of_shape, stage_table
from benchmarks.runtimes_gpu import LLAMA3_8B, build_model

EVAL = {"sampled_tokens": 2048, "throughput_batch_size": 4, "prompt_len": 128, "new_tokens": 16, "batch_size": 8}


def test_the_8b_shape_is_llama_3_8b_and_the_smoke_mode_only_shrinks_it():
    assert shape(False) == LLAMA3_8B
    assert shape(True)["vocab_size"] == LLAMA3_8B["vocab_size"] and shape(True)["num_hidden_layers"] == 2


def test_the_smoke_model_builds_on_cpu_with_random_bf16_weights_and_the_tokenizer_s_ids():
    cfg = {k: v for k, v in shape(True).items() if k != "num_hidden_layers"}
    model = build_model(2, device="cpu", **cfg, bos_token_id=1, eos_token_id=2)
    assert model.config.bos_token_id == 1 and model.config.num_hidden_layers == 2
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert torch.equal(model.model.norm.weight, torch.ones_like(model.model.norm.weight))
    assert 0.015 < model.model.layers[0].mlp.up_proj.weight.float().std().item() < 0.025


def test_the_formulas_are_the_spec_s_own_for_this_model(tiny_model, tiny_model_dir):
    """What the script calls min/recommended VRAM is what the spec wrote (core.models.spec, seed 001)."""
    from greenai_dagster.core.methods.assess import build_spec

    spec = build_spec("tiny", tiny_model[0], str(tiny_model_dir)).to_json()
    checks = formula_checks(spec, [], EVAL)
    assert checks["for_this_model"]["min_vram_gb"] == spec["min_vram_gb"]
    assert checks["for_this_model"]["recommended_vram_gb"] == spec["recommended_vram_gb"]
    assert checks["stages"] == []


def test_the_8b_formulas_from_the_shape_alone_when_no_spec_was_written():
    """Llama-3-8B: 8.03 B parameters; the seed's inference formula at batch 1 x 2048 fp16 is the weights (about
    15 GiB), a 0.25 GiB GQA KV cache and the 10 % buffer."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    with torch.device("meta"):   # nothing allocated: the count comes from the config
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(LlamaConfig(**LLAMA3_8B)).parameters())
    assert 8.0e9 < params < 8.1e9
    spec = spec_of_shape({"parameters": params, "built": {"shape": LLAMA3_8B}})
    memory = formula_checks(spec, [], EVAL)["for_this_model"]["inference_memory_at_spec_conditions"]
    assert abs(memory["kv_cache_gb"] - 0.25) < 1e-9
    assert abs(memory["total_gb"] - (1.1 * memory["weights_gb"] + memory["kv_cache_gb"] + memory["activations_gb"])) < 1e-9


def test_a_cpu_row_has_no_gpu_stage_peaks_only_the_probe_s_own_figure():
    row = {"strategy_id": "baseline", "load_time_s": 0.6, "eval_seconds": {"fidelity": 1.0, "latency_probe": 2.0},
           "memory_gb": 0.3, "memory_source": "peak RSS while serving minus RSS before load", "runtime": "torch-eager"}
    (entry,) = stage_table([row])
    assert entry["stages"]["load"]["gpu_peak_gb"] is None and entry["stages"]["fidelity"]["gpu_peak_gb"] is None
    assert entry["stages"]["latency_probe"]["measured_by"].startswith("peak RSS")
    checks = formula_checks(spec_of_shape({"parameters": 10**6, "built": {"shape": {**LLAMA3_8B, **TINY}}}), [row],
                            EVAL)["stages"]
    assert [c["stage"] for c in checks] == ["latency_probe"]
