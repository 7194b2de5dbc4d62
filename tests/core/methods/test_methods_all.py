"""Every method and chain on a real tiny model, with an assertion on what each must change."""

import pytest
import torch

from greenai_dagster.core.compress import apply_strategy
from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods import REGISTRY
from greenai_dagster.core.methods.sparsity import linear_sparsity
from greenai_dagster.core.models.checkpoints import load_variant, save_variant
from greenai_dagster.core.models.spec import weights_size_bytes
from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

CAL = {"num_calibration_samples": 8}


def run(tiny_model, tiny_spec, steps, tmp_path, inspect=None):
    """Apply, let `inspect(model)` look at the in-memory result (saving packs quantized weights),
    save, and reload in the checkpoint's own format."""
    model, tokenizer = tiny_model
    strategy = validate_strategy(Strategy("s", [Step(m, p) for m, p in steps]), tiny_spec)
    out, reports, fmt = apply_strategy(model, tokenizer, strategy, tiny_spec)
    if inspect is not None:
        inspect(out)
    folder = save_variant(out, tokenizer, tmp_path / "variant", fmt, {"step_reports": reports})
    reloaded, _ = load_variant(folder)  # every checkpoint reloads
    with torch.no_grad():
        logits = reloaded(**tokenizer("The import statement", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()
    return out, reports, reloaded, folder


@pytest.fixture()
def dense_size(tiny_model_dir, tmp_path):
    """Bytes of the untouched tiny model stored like every variant (float tensors in bf16)."""
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    return weights_size_bytes(save_variant(model, tokenizer, tmp_path / "dense", "hf", {}))


def assert_on_grid(folder, name, bits, group):
    """The weights a user loads are integer multiples of their group scale, within 2**bits levels."""
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 quantization_config=CompressedTensorsConfig(run_compressed=False))
    module = model.get_submodule(name)  # decompressed: float weight + its scale / zero point
    weight, scale = module.weight.detach().float(), module.weight_scale.detach().float()
    zero = getattr(module, "weight_zero_point", None)
    q = weight.view(weight.shape[0], -1, group) / scale.view(scale.shape[0], -1, 1)
    if zero is not None:
        q = q + zero.detach().float().view(zero.shape[0], -1, 1)
    assert torch.allclose(q, q.round(), atol=0.05)
    assert q.round().max() - q.round().min() <= 2 ** bits - 1


def test_every_registered_method_is_covered_here():
    # gguf is covered in test_gguf.py, on a tiny model with a tokenizer llama.cpp's converter knows;
    # mixed in test_mixed_precision.py
    assert set(REGISTRY) == {"gptq", "awq", "autoround", "rtn", "int8", "w8a8_smoothquant", "magnitude",
                             "structured", "sparsegpt", "wanda", "asvd", "lora", "qlora", "gguf", "mixed"}


@pytest.mark.parametrize("method,params,bits", [
    ("awq", {"bits": 4, "group_size": 32, **CAL}, 4),
    ("autoround", {"bits": 4, "group_size": 32, "iters": 4, **CAL}, 4),
    ("autoround", {"bits": 2, "group_size": 32, "iters": 4, **CAL}, 2),
    ("rtn", {"bits": 3, "group_size": 64}, 3),
])
def test_weight_quantizers_put_weights_on_the_int_grid(tiny_model, tiny_spec, tmp_path, dense_size, method, params, bits):
    out, reports, _, folder = run(tiny_model, tiny_spec, [(method, params)], tmp_path)
    assert reports[0]["quantized_linear_layers"] == 14
    assert_on_grid(folder, "model.layers.1.mlp.up_proj", bits, params["group_size"])
    assert weights_size_bytes(folder) < dense_size


def test_smoothquant_w8a8_quantizes_weights_and_activations(tiny_model, tiny_spec, tmp_path):
    out, reports, _, _ = run(tiny_model, tiny_spec, [("w8a8_smoothquant", CAL)], tmp_path)
    scheme = out.model.layers[0].self_attn.q_proj.quantization_scheme
    assert scheme.weights.num_bits == 8 and scheme.input_activations.num_bits == 8
    assert scheme.input_activations.dynamic


@pytest.mark.parametrize("method,params", [
    ("magnitude", {"sparsity": 0.4}),
    ("wanda", {"sparsity": 0.5, **CAL}),
    ("sparsegpt", {"sparsity": 0.5, **CAL}),
])
def test_unstructured_pruning_reaches_the_sparsity(tiny_model, tiny_spec, tmp_path, method, params):
    out, reports, reloaded, _ = run(tiny_model, tiny_spec, [(method, params)], tmp_path)
    assert linear_sparsity(out) == pytest.approx(params["sparsity"], abs=0.02)
    assert linear_sparsity(reloaded) == pytest.approx(params["sparsity"], abs=0.02)
    assert reports[0]["measured_sparsity"] == pytest.approx(params["sparsity"], abs=0.02)


@pytest.mark.parametrize("method", ["magnitude", "sparsegpt", "wanda"])
def test_two_four_pruning_keeps_two_of_every_four(tiny_model, tiny_spec, tmp_path, method):
    params = {"sparsity": 0.5, "mask_structure": "2:4", **({} if method == "magnitude" else CAL)}
    out, _, _, _ = run(tiny_model, tiny_spec, [(method, params)], tmp_path)
    weight = out.model.layers[0].mlp.gate_proj.weight.detach()
    nonzero_per_group = (weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1)
    assert (nonzero_per_group <= 2).all()


def test_two_four_needs_half_sparsity(tiny_spec):
    with pytest.raises(CompressionFailed, match="disagrees"):
        validate_strategy(Strategy("s", [Step("sparsegpt", {"sparsity": 0.3, "mask_structure": "2:4"})]), tiny_spec)


def test_structured_pruning_shrinks_shapes_and_loads_plainly(tiny_model, tiny_spec, tmp_path, dense_size):
    from transformers import AutoModelForCausalLM

    out, reports, _, folder = run(tiny_model, tiny_spec, [("structured", {"sparsity": 0.3, "align": 32, **CAL})], tmp_path)
    assert out.config.intermediate_size == 64          # 128 * 0.7 = 89.6 -> 64 at align 32
    assert out.config.num_key_value_heads == 1          # 2 kv groups, 30% -> 1 removed
    assert out.model.layers[0].mlp.down_proj.in_features == 64
    plain = AutoModelForCausalLM.from_pretrained(folder)  # no custom loader needed
    assert plain.model.layers[0].self_attn.q_proj.out_features == 2 * 16
    assert weights_size_bytes(folder) < 0.85 * dense_size


def test_asvd_halves_linear_parameters_and_reloads(tiny_model, tiny_spec, tmp_path):
    tokens = tiny_model[1]("The while statement", return_tensors="pt")
    before_save = {}

    def inspect(model):
        q = model.model.layers[0].self_attn.q_proj
        assert q.rank < min(q.in_features, q.out_features)
        with torch.no_grad():
            before_save["logits"] = model(**tokens).logits

    _, reports, reloaded, _ = run(tiny_model, tiny_spec, [("asvd", {"param_ratio": 0.5, "align": 1, **CAL})], tmp_path,
                                  inspect=inspect)
    assert reports[0]["linear_param_ratio"] == pytest.approx(0.5, abs=0.05)
    with torch.no_grad():  # same function after the bf16 round trip
        assert torch.allclose(before_save["logits"], reloaded(**tokens).logits, atol=0.1)


def test_lora_lowers_loss_and_keeps_sparsity(tiny_model, tiny_spec, tmp_path):
    steps = [("magnitude", {"sparsity": 0.5}), ("lora", {"steps": 40, "learning_rate": 3e-3, "batch_size": 2})]
    out, reports, reloaded, _ = run(tiny_model, tiny_spec, steps, tmp_path)
    lora = reports[1]
    assert lora["heldout_loss_after"] < lora["heldout_loss_before"]
    assert lora["adapter"] == "merged"
    assert linear_sparsity(out) == pytest.approx(0.5, abs=0.01)


def test_chain_structured_gptq_lora(tiny_model, tiny_spec, tmp_path):
    steps = [("structured", {"sparsity": 0.3, "align": 32, **CAL}), ("gptq", {"bits": 4, "group_size": 32, **CAL}),
             ("lora", {"steps": 20, "learning_rate": 3e-3, "batch_size": 2})]
    out, reports, reloaded, folder = run(tiny_model, tiny_spec, steps, tmp_path)
    assert [r["method"] for r in reports] == ["structured", "gptq", "lora"]
    assert reports[2]["adapter"] == "kept separate (quantized base)"
    assert (folder / "lora_adapter").exists()
    assert reloaded.base_model.model.config.intermediate_size == 64
    assert reports[2]["heldout_loss_after"] < reports[2]["heldout_loss_before"]


def test_rank_above_layer_rank_is_refused(tiny_spec):
    with pytest.raises(CompressionFailed):
        validate_strategy(Strategy("s", [Step("asvd", {"param_ratio": 0.99, "align": 64})]), tiny_spec)


def test_qlora_trains_adapters_on_an_nf4_base(tiny_model, tiny_spec, tmp_path, dense_size):
    """The reloaded checkpoint is the model that was trained: its logits match the in-memory ones (the NF4
    quantization state kept float32 on disk; narrowed to bfloat16 it reloaded as noise, KL 11.9 on SmolLM2)."""
    inputs = tiny_model[1]("The import statement is a statement", return_tensors="pt")
    trained = {}

    def keep_logits(model):
        with torch.no_grad():
            trained["logits"] = model(**inputs).logits.float()

    _, reports, reloaded, folder = run(tiny_model, tiny_spec, [("qlora", {"steps": 20, "learning_rate": 3e-3,
                                                                          "batch_size": 2})], tmp_path,
                                       inspect=keep_logits)
    with torch.no_grad():
        again = reloaded(**inputs).logits.float()
    # bf16 storage of norms and embeddings moves logits a little; a broken NF4 state moves them by their scale
    assert (again - trained["logits"]).abs().max() < 0.05 * trained["logits"].abs().max()
    assert reports[0]["heldout_loss_after"] < reports[0]["heldout_loss_before"]
    assert (folder / "lora_adapter").exists()
    base = reloaded.base_model.model
    assert type(base.model.layers[0].mlp.down_proj.base_layer).__name__ == "Linear4bit"
    assert weights_size_bytes(folder) < dense_size


def test_qlora_must_come_first(tiny_spec):
    with pytest.raises(CompressionFailed, match="first step"):
        validate_strategy(Strategy("s", [Step("magnitude", {"sparsity": 0.3}), Step("qlora", {})]), tiny_spec)
