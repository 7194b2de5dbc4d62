"""Any causal LM, not only Llama-shaped ones (issue 13).

Seven families, each built from its config with random weights and tiny sizes and saved as a local
folder with a real tokenizer, go through what a run does with them: the model spec, the baseline
evaluation (fidelity reference, accuracy through lm-eval), one quantization and one pruning through
`compress_to_checkpoint` (the pipeline's compression step: load, compress, save), and a reload of
each checkpoint that is scored against the baseline (KL finite). What a family cannot take is
asserted as a stated exclusion in its spec and an E005 naming the method, before any work.

| family    | what is different                                          | quantization  | pruning          |
| gpt2      | Conv1D projections (weights transposed), fused c_attn, tied | gptq W4 g32   | wanda 50 %       |
| opt       | q/k/v/out_proj + fc1/fc2, learned positions, tied          | rtn W4 g32    | magnitude 2:4    |
| gpt_neox  | fused query_key_value, untied head (embed_out on disk)     | rtn W8 g64    | sparsegpt 50 %   |
| qwen2     | grouped-query attention (4 heads, 2 KV heads), untied      | int8 dynamic  | structured 30 %  |
| qwen2_moe | mixture of experts (fused 3-D experts), router + shared-expert gate | rtn W4 g32 | magnitude 50 % |
| phi3      | fused qkv_proj and gate_up_proj, untied                   | rtn W4 g64    | wanda 2:4        |
| llama_odd | hidden 72, intermediate 200: no group size of 32-256 fits  | gptq W4 g8    | magnitude 50 %   |
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from greenai_dagster.core.compress import compress_to_checkpoint
from greenai_dagster.core.data.benchmarks import prepare_benchmark
from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.evaluation import fidelity
from greenai_dagster.core.evaluation.evaluate import EvalSettings, accuracy, make_reference
from greenai_dagster.core.methods.assess import build_spec
from greenai_dagster.core.methods.sparsity import linear_sparsity
from greenai_dagster.core.models.checkpoints import VARIANT_FILE, load_variant
from greenai_dagster.core.models.loading import load_model_and_tokenizer
from greenai_dagster.core.search.coordinator.space import search_space
from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

CAL = {"num_calibration_samples": 4, "calibration_seq_len": 32}
SETTINGS = EvalSettings(limit_per_task=6, batch_size=8, fidelity_tokens=512)
COMMON = {"max_position_embeddings": 1024}

FAMILIES = {
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=1024, tie_word_embeddings=True),
    "opt": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128, word_embed_proj_dim=64,
                **COMMON),
    "gpt_neox": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     tie_word_embeddings=False, **COMMON),
    "qwen2": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, tie_word_embeddings=False, **COMMON),
    "qwen2_moe": dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, moe_intermediate_size=64, shared_expert_intermediate_size=64,
                      num_experts=4, num_experts_per_tok=2, tie_word_embeddings=False, **COMMON),
    "phi3": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                 intermediate_size=128, tie_word_embeddings=False, pad_token_id=0, **COMMON),
    "llama_odd": dict(hidden_size=72, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=200, tie_word_embeddings=True, **COMMON),
}
MODEL_TYPE = {"llama_odd": "llama"}

QUANTIZE = {
    "gpt2": ("gptq", {"bits": 4, "group_size": 32, **CAL}),
    "opt": ("rtn", {"bits": 4, "group_size": 32}),
    "gpt_neox": ("rtn", {"bits": 8, "group_size": 64}),
    "qwen2": ("int8", {}),
    "qwen2_moe": ("rtn", {"bits": 4, "group_size": 32}),
    "phi3": ("rtn", {"bits": 4, "group_size": 64}),
    "llama_odd": ("gptq", {"bits": 4, "group_size": 8, **CAL}),
}
PRUNE = {
    "gpt2": ("wanda", {"sparsity": 0.5, **CAL}),
    "opt": ("magnitude", {"sparsity": 0.5, "mask_structure": "2:4"}),
    "gpt_neox": ("sparsegpt", {"sparsity": 0.5, **CAL}),
    "qwen2": ("structured", {"sparsity": 0.3, "align": 32, **CAL}),
    "qwen2_moe": ("magnitude", {"sparsity": 0.5}),
    "phi3": ("wanda", {"sparsity": 0.5, "mask_structure": "2:4", **CAL}),
    "llama_odd": ("magnitude", {"sparsity": 0.5}),
}
# what each family's spec must leave out of its search space, and a word its reason must contain
EXCLUDED = {
    "gpt2": {"structured": "Llama-style", "awq": "mappings", "w8a8_smoothquant": "mappings"},
    "opt": {"structured": "Llama-style", "awq": "mappings", "w8a8_smoothquant": "mappings"},
    "gpt_neox": {"structured": "Llama-style", "awq": "mappings", "w8a8_smoothquant": "mappings"},
    "qwen2": {},
    "qwen2_moe": {"structured": "mixture-of-experts", "w8a8_smoothquant": "experts"},
    "phi3": {"structured": "layout"},
    "llama_odd": {"autoround": "multiples of 32"},
}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    """family -> saved folder (config + random weights + tokenizer), built once per module."""
    from tests.conftest import build_tiny_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = build_tiny_tokenizer()
    root = tmp_path_factory.mktemp("families")
    folders = {}
    for family, kwargs in FAMILIES.items():
        config = AutoConfig.for_model(MODEL_TYPE.get(family, family), vocab_size=len(tokenizer),
                                      eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                                      **kwargs)
        torch.manual_seed(0)
        folder = root / family
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[family] = folder
    return folders


@pytest.fixture(scope="module")
def specs(family_dirs):
    """family -> (model spec, loaded baseline model, tokenizer), as the pipeline's model_spec step builds them."""
    out = {}
    for family, folder in family_dirs.items():
        model, tokenizer = load_model_and_tokenizer(str(folder))
        out[family] = (build_spec(family, model, str(folder)), model, tokenizer)
    return out


def _strategy(spec, *steps):
    return validate_strategy(Strategy("s", [Step(m, dict(p)) for m, p in steps]), spec)


@pytest.fixture(scope="module")
def runs(family_dirs, specs, tmp_path_factory, data_root, tiny_benchmark):
    """family -> what the run did with it, computed once: the baseline's evaluation (fidelity reference,
    accuracy through lm-eval on a six-item benchmark), and per kind (quantization, pruning) the
    checkpoint folder, compression info and the reloaded variant's fidelity against the baseline."""
    benchmark = prepare_benchmark(str(tiny_benchmark), "offline")
    done: dict[str, dict] = {}

    def run(family: str) -> dict:
        if family in done:
            return done[family]
        spec, model, tokenizer = specs[family]
        root = tmp_path_factory.mktemp(family)
        reference = make_reference(model, tokenizer, SETTINGS, root / "reference.pt")
        result = {"baseline": fidelity.measure(model, reference), "accuracy": accuracy(model, tokenizer, benchmark,
                                                                                        SETTINGS)}
        for kind, step in (("quantization", QUANTIZE[family]), ("pruning", PRUNE[family])):
            out = root / kind
            info = compress_to_checkpoint(str(family_dirs[family]), _strategy(spec, step), spec, out)
            variant, _ = load_variant(out)   # what the benchmark step and a user load
            result[kind] = {"folder": out, "info": info, "variant": variant,
                            "fidelity": fidelity.measure(variant, reference)}
        done[family] = result
        return result

    return run


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_runs_spec_baseline_quantization_and_pruning(family, specs, runs):
    spec, _, _ = specs[family]

    # spec: nothing assumed about module names; exclusions stated, never offered
    assert spec.linear_in_features and spec.valid_group_sizes and spec.min_linear_rank > 0
    for method, word in EXCLUDED[family].items():
        assert word in spec.unsupported_methods.get(method, ""), (method, spec.unsupported_methods)
    offered = {m for s in search_space(spec) for m in s.methods}
    assert offered and not offered & set(spec.unsupported_methods)
    assert {"magnitude", "int8", "gptq"} <= offered

    result = runs(family)
    assert result["baseline"].kl_divergence == pytest.approx(0.0, abs=1e-6)
    assert 0.0 <= result["accuracy"].accuracy <= 1.0 and len(next(iter(result["accuracy"].item_correct.values()))) == 6
    for kind, step in (("quantization", QUANTIZE[family]), ("pruning", PRUNE[family])):
        fid, variant = result[kind]["fidelity"], result[kind]["variant"]
        assert math.isfinite(fid.kl_divergence) and fid.kl_divergence >= 0.0, (kind, fid)
        assert 0.0 <= fid.top1_agreement <= 1.0
        report = result[kind]["info"]["step_reports"][0]
        if kind == "quantization":
            assert report["quantized_linear_layers"] == sum(spec.linear_layer_types.values()), report
            assert fid.kl_divergence < 0.05, fid
        elif step[0] == "structured":   # GQA: whole KV groups go, with their query heads
            assert (variant.config.num_key_value_heads, variant.config.num_attention_heads) == (1, 2)
            assert variant.config.intermediate_size == 64
        else:
            assert report["measured_sparsity"] == pytest.approx(0.5, abs=0.02)
            assert linear_sparsity(variant) == pytest.approx(0.5, abs=0.02)


def test_gpt2_conv1d_layers_are_found_and_quantized(specs, runs):
    """The reported failure: a GPT-2-shaped folder died in model_spec (`min() arg is an empty sequence`)."""
    spec, _, _ = specs["gpt2"]
    assert spec.linear_layer_types == {"Conv1D": 8} and spec.tied_embeddings
    assert spec.linear_in_features == [64, 256] and spec.min_linear_rank == 64
    quantized = runs("gpt2")["quantization"]
    assert json.loads((quantized["folder"] / VARIANT_FILE).read_text())["conv1d_as_linear"] is True
    attn = quantized["variant"].transformer.h[0].attn.c_attn   # rebuilt as nn.Linear before loading
    assert isinstance(attn, torch.nn.Linear) and attn.quantization_scheme.weights.num_bits == 4
    pruned = runs("gpt2")["pruning"]["variant"].transformer.h[0].mlp.c_fc
    assert (pruned.weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_untied_heads_and_routers_stay_in_float(family_dirs, specs, runs):
    from transformers import AutoModelForCausalLM

    spec, _, _ = specs["qwen2_moe"]
    assert not spec.tied_embeddings and spec.num_experts == 4 and spec.expert_layout == "per-expert"
    assert {"model.layers.0.mlp.gate", "model.layers.0.mlp.shared_expert_gate"} <= set(spec.router_layers)
    assert spec.linear_layer_types["fused experts"] == 4 * 3 and "Linear" in spec.linear_layer_types
    quantized = runs("qwen2_moe")["quantization"]
    quant = json.loads((quantized["folder"] / "config.json").read_text())["quantization_config"]
    assert {"lm_head", "model.layers.0.mlp.shared_expert_gate"} <= set(quant["ignore"])
    # experts were quantized per expert and come back, through transformers' own loader, into the fused
    # tensors: close to the originals (not re-initialised), routers as they were (bf16 storage aside)
    original = AutoModelForCausalLM.from_pretrained(family_dirs["qwen2_moe"]).model.layers[0].mlp
    mlp = quantized["variant"].model.layers[0].mlp
    for name in ("gate_up_proj", "down_proj"):
        before, after = getattr(original.experts, name).detach(), getattr(mlp.experts, name).detach()
        assert not torch.equal(before.bfloat16().float(), after)
        assert (after - before).abs().max() < 0.25 * before.abs().max()
    for router in ("gate", "shared_expert_gate"):
        stored = getattr(original, router).weight.detach().bfloat16().float()
        assert torch.equal(getattr(mlp, router).weight.detach(), stored)
    pruned = runs("qwen2_moe")["pruning"]["variant"].model.layers[0].mlp
    assert (pruned.experts.down_proj == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)   # experts pruned
    assert (pruned.gate.weight != 0).all()                                                       # router not

    untied, _, _ = specs["gpt_neox"]
    assert not untied.tied_embeddings


def test_grouped_query_attention_is_read(specs):
    from greenai_dagster.core.models.spec import GIB

    spec, _, _ = specs["qwen2"]
    assert (spec.num_attention_heads, spec.num_key_value_heads, spec.head_dim) == (4, 2, 16)
    assert spec.inference_memory["kv_cache_gb"] == pytest.approx(2 * 2 * 1 * 2 * 2048 * 16 * 2 / GIB)  # H_kv, not H
    assert spec.linear_out_features == [32, 64, 128]        # k/v projections are half as wide as q


def test_widths_without_a_common_group_size(specs):
    spec, _, _ = specs["llama_odd"]
    assert spec.linear_in_features == [72, 200] and spec.valid_group_sizes == [8]
    assert "group size 8 is used for this model" in spec.group_size_note
    assert all(s.steps[0].params.get("group_size", 8) == 8 for s in search_space(spec))
    with pytest.raises(CompressionFailed, match=r"E005: group size 32 does not divide the input width 72 of layer "
                                                r"model\.layers\.0\.self_attn\.q_proj"):
        _strategy(spec, ("rtn", {"bits": 4, "group_size": 32}))
    # structured pruning leaves 1 KV group x 2 heads x 18 = 36 wide attention outputs: group 8 cannot follow
    with pytest.raises(CompressionFailed, match="does not divide the input width 36"):
        _strategy(spec, ("structured", {"sparsity": 0.3, "align": 8}), ("gptq", {"bits": 4, "group_size": 8}))
    assert _strategy(spec, ("structured", {"sparsity": 0.3, "align": 8, "prune_heads": False}),
                     ("gptq", {"bits": 4, "group_size": 8}))


@pytest.mark.parametrize("family,method", [(f, m) for f, e in EXCLUDED.items() for m in e])
def test_an_excluded_method_is_refused_with_e005_naming_it(family, method, specs):
    spec, _, _ = specs[family]
    params = {"bits": 4, "group_size": spec.valid_group_sizes[0]} if method in ("awq", "autoround") else {}
    with pytest.raises(CompressionFailed, match=rf"E005: '{method}' cannot compress {family} \(") as err:
        _strategy(spec, (method, params))
    assert EXCLUDED[family][method] in str(err.value)


def test_config_asking_for_an_unusable_method_fails_in_the_model_spec_step(family_dirs, data_root, tmp_path):
    """Before the baseline or any compression: the run's model_spec step raises E005 with the reason."""
    from greenai_dagster.core import pipeline
    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.core.experiment import open_experiment
    from greenai_dagster.core.storage.store import ResultsStore

    store = ResultsStore(tmp_path / "results.duckdb")
    config = ExperimentConfig(model=str(family_dirs["gpt2"]), dataset="tinymc", name="gpt2_structured",
                              output_dir=str(tmp_path), compression_methods=["gptq", "structured"])
    store.create_experiment(config.name, config.model, config.dataset, config.model_dump(), config.output_dir)
    with pytest.raises(CompressionFailed, match=r"E005: .*'structured': it slices Llama-style decoders") as err:
        pipeline.build_model_spec(store, open_experiment(store, config.name))
    assert "Remove structured from compression_methods (left: gptq)" in str(err.value)
    written = json.loads((tmp_path / config.name / "model_spec.json").read_text())
    assert written["linear_layer_types"] == {"Conv1D": 8} and "structured" in written["unsupported_methods"]


def test_mixture_of_experts_quantizers_need_symmetric_weights(specs):
    spec, _, _ = specs["qwen2_moe"]
    with pytest.raises(CompressionFailed, match="symmetric: true"):
        _strategy(spec, ("gptq", {"bits": 4, "group_size": 32, "symmetric": False}))
    assert all(s.steps[0].params.get("symmetric", True) for s in search_space(spec) if s.methods == ["awq"])
