"""Per-layer mixed precision (`core.methods.mixed`, the `mixed` method) on the real tiny Llama.

The simulation must be what the checkpoint holds: fake-quantized weights equal llm-compressor's RTN
weights after saving and reloading, and a saved allocation's measured KL equals the simulated one.
The knapsack must be exact (checked against brute force) and respect its budget.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from greenai_dagster.core.evaluation import fidelity
from greenai_dagster.core.methods.mixed import levels as lv, sensitivity, solvers


@pytest.fixture(scope="module")
def float_model(tiny_model_dir):
    from greenai_dagster.core.models.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def reference(float_model):
    model, tokenizer = float_model
    windows = fidelity.token_windows(tokenizer, fidelity.held_out_text()[0], 1024, window=256)
    return fidelity.build_reference(model, windows, top_k=16)


@pytest.fixture(scope="module")
def block_table(float_model, reference):
    model, _ = float_model
    unit_list = lv.units(model, "block")
    quantizer = sensitivity.Quantizer(model, unit_list)
    return unit_list, quantizer, sensitivity.table(quantizer, reference, ["w2", "w3", "w4", "w8", "f16"])


def _compress(tiny_model_dir, params: dict, folder):
    from greenai_dagster.core.models.checkpoints import load_variant
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    spec = build_spec("tiny", load_model_and_tokenizer(str(tiny_model_dir))[0], str(tiny_model_dir))
    info = compress_to_checkpoint(str(tiny_model_dir), Strategy("mixed", [Step("mixed", params)]), spec, folder)
    return info, load_variant(folder)[0]


def test_units_cover_every_block_linear_once(float_model):
    model, _ = float_model
    blocks, linears = lv.units(model, "block"), lv.units(model, "linear")
    assert [u.name for u in blocks] == ["model.layers.0", "model.layers.1"]
    assert sorted(n for u in blocks for n in u.linears) == sorted(u.name for u in linears)
    assert len(linears) == 14 and "lm_head" not in {u.name for u in linears}
    assert sum(u.params for u in blocks) == sum(u.params for u in linears)
    assert lv.average_bits(lv.uniform(blocks, "w4"), blocks) == 4.0
    assert lv.average_bits({}, blocks) == 16.0   # units not named stay in float


def test_quantizer_restores_the_float_weights(float_model, reference):
    model, _ = float_model
    unit_list = lv.units(model, "block")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    quantizer = sensitivity.Quantizer(model, unit_list)
    assert sensitivity.measure(quantizer, reference, lv.uniform(unit_list, "w2")).kl_divergence > 1e-5
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert fidelity.measure(model, reference).kl_divergence == 0.0


def test_sensitivity_grows_as_levels_get_coarser(block_table):
    _, _, table = block_table
    for unit, row in table.items():
        assert row["f16"] == 0.0
        assert row["w2"] > row["w3"] > row["w4"] > row["w8"] > 0.0, (unit, row)


def test_knapsack_is_exact_and_within_budget(block_table):
    unit_list, _, table = block_table
    levels = ["w2", "w3", "w4", "w8"]
    for budget in (2.0, 3.0, 3.5, 4.0, 6.0, 8.0):
        chosen = solvers.knapsack(table, unit_list, levels, budget)
        assert lv.average_bits(chosen, unit_list) <= budget + 1e-9
        feasible = [dict(zip([u.name for u in unit_list], combo)) for combo in itertools.product(levels, repeat=len(unit_list))]
        feasible = [a for a in feasible if lv.average_bits(a, unit_list) <= budget + 1e-9]
        best = min(sensitivity.predicted_kl(table, a) for a in feasible)
        assert sensitivity.predicted_kl(table, chosen) == pytest.approx(best, rel=1e-9)
    with pytest.raises(ValueError, match="no allocation fits"):
        solvers.knapsack(table, unit_list, levels, 1.5)


def test_evolutionary_front_starts_from_the_uniform_menu(block_table, reference):
    unit_list, quantizer, _ = block_table
    trials = solvers.evolutionary(lambda a: sensitivity.measure(quantizer, reference, a).kl_divergence,
                                  unit_list, ["w2", "w3", "w4"], trials=12, population=4, seed=0)
    assert len(trials) == 12
    uniform_w3 = sensitivity.measure(quantizer, reference, lv.uniform(unit_list, "w3")).kl_divergence
    best = solvers.best_within(trials, 3.0)
    assert best["avg_bits"] <= 3.0 and best["kl"] <= uniform_w3 + 1e-12
    with pytest.raises(ValueError):
        solvers.best_within(trials, 1.0)


def test_budget_evolution_keeps_the_budget_and_improves_on_measured_kl(float_model, reference):
    """Per linear, from an allocation that wastes half a bit (uniform w3 at a 3.5-bit budget): every
    accepted step stays within the budget, the measured KL never rises, and it ends strictly lower."""
    model, _ = float_model
    unit_list = lv.units(model, "linear")
    quantizer = sensitivity.Quantizer(model, unit_list)
    start = lv.uniform(unit_list, "w3")
    saved: list[dict] = []
    found = solvers.evolve_at_budget(lambda a: sensitivity.measure(quantizer, reference, a).kl_divergence,
                                     unit_list, ["w2", "w3", "w4", "w8"], 3.5, start, generations=12, offspring=3,
                                     checkpoint=saved.append)
    assert found["evaluations"] == 1 + 12 * 3
    # one checkpoint, after generation 10: what a killed search would go on from
    assert len(saved) == 1 and saved[0]["evaluations"] == 1 + 10 * 3 and len(saved[0]["history"]) == 11
    assert saved[0]["kl"] >= found["kl"] and saved[0]["avg_bits"] <= 3.5 + 1e-9
    assert found["avg_bits"] <= 3.5 + 1e-9
    assert all(b <= a for a, b in zip(found["history"], found["history"][1:]))
    measured = sensitivity.measure(quantizer, reference, found["allocation"]).kl_divergence
    assert measured == pytest.approx(found["kl"], rel=1e-6)
    assert found["kl"] < found["history"][0]
    with pytest.raises(ValueError, match="over 3"):
        solvers.evolve_at_budget(lambda a: 0.0, unit_list, ["w3", "w4"], 3.0, lv.uniform(unit_list, "w4"))


def test_budget_evolution_screens_children_on_few_tokens_before_judging_them(float_model, reference):
    """EvoPress's multi-step selection: each generation's children are ranked by the cheap fitness and
    only its best `keep` are measured by the full one, which alone decides whether the parent moves."""
    model, _ = float_model
    unit_list = lv.units(model, "linear")
    quantizer = sensitivity.Quantizer(model, unit_list)
    screened: list[list[tuple[tuple, float]]] = []
    judged: list[tuple] = []

    def key(allocation):
        return tuple(sorted(allocation.items()))

    def cheap(allocation):   # the first 40 scored positions only
        value = sensitivity.measure(quantizer, reference, allocation, max_positions=40).kl_divergence
        if not screened or len(screened[-1]) == 6:
            screened.append([])
        screened[-1].append((key(allocation), value))
        return value

    def full(allocation):
        judged.append(key(allocation))
        return sensitivity.measure(quantizer, reference, allocation).kl_divergence

    found = solvers.evolve_at_budget(full, unit_list, ["w2", "w3", "w4", "w8"], 3.5, lv.uniform(unit_list, "w3"),
                                     generations=4, offspring=6, screens=[(cheap, 2)])
    assert found["evaluations"] == 1 + 4 * 2 and found["screen_evaluations"] == 4 * 6
    assert len(screened) == 4 and len(judged) == 1 + 4 * 2
    for generation, children in enumerate(screened):   # the two judged are the two the screen ranked best
        best_two = sorted(value for _, value in children)[:2]
        scores = dict(children)
        assert sorted(scores[k] for k in judged[1 + 2 * generation: 3 + 2 * generation]) == best_two
    assert all(b <= a for a, b in zip(found["history"], found["history"][1:]))
    assert found["avg_bits"] <= 3.5 + 1e-9


def test_simulated_weights_equal_the_saved_checkpoint(tiny_model_dir, float_model, reference, block_table, tmp_path):
    """A saved allocation holds exactly the simulated weights, so its measured KL is the simulated KL."""
    model, _ = float_model
    unit_list, quantizer, _ = block_table
    allocation = {"model.layers.0": "w3", "model.layers.1": "w8"}
    info, saved = _compress(tiny_model_dir, {"allocation": allocation}, tmp_path / "model")
    report = info["step_reports"][0]
    assert report["avg_bits"] == pytest.approx(lv.average_bits(allocation, unit_list))
    assert report["level_counts"] == {"w3": 1, "w8": 1}
    groups = json.loads((tmp_path / "model" / "config.json").read_text())["quantization_config"]["config_groups"]
    assert {g["weights"]["num_bits"] for g in groups.values()} == {3, 8}
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from safetensors.torch import load_file

    stored = {}
    for shard in (tmp_path / "model").glob("*.safetensors"):
        stored.update(load_file(str(shard)))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.bfloat16}
    for unit, level in allocation.items():   # every stored integer times its scale is the simulated weight
        for name in next(u for u in unit_list if u.name == unit).linears:
            ints = unpack_from_int32(stored[f"{name}.weight_packed"], lv.level_bits(level),
                                     torch.Size(stored[f"{name}.weight_shape"].tolist()))
            scale = stored[f"{name}.weight_scale"].repeat_interleave(lv.GROUP_SIZE, dim=1)
            assert torch.equal((ints.to(scale.dtype) * scale).float(), quantizer.weight(name, level)), name
    simulated = sensitivity.measure(quantizer, reference, allocation).kl_divergence
    # the checkpoint also stores embeddings and norms in bfloat16, which the float simulation does not round
    assert fidelity.measure(saved, reference).kl_divergence == pytest.approx(simulated, rel=0.05)


def test_saved_float32_tensors_are_narrowed_to_the_storage_dtype(tmp_path):
    """What reaches the disk is bfloat16 whatever a library's save wrote (a GPU machine's llm-compressor
    save wrote float32 scales and embeddings); integers and NVFP4's float32 global scales stay as they are."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from greenai_dagster.core.models.checkpoints import STORAGE_DTYPE, narrow_floats_on_disk

    wide = torch.randn(8, 64)
    save_file({"embed.weight": wide, "q.weight_scale": wide[:, :1].clone(), "q.weight_global_scale": torch.ones(1),
               "q.weight_packed": torch.arange(8, dtype=torch.int32), "norm.weight": torch.ones(8, dtype=torch.bfloat16)},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    assert narrow_floats_on_disk(tmp_path) == ["embed.weight", "q.weight_scale"]
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
        dtypes = {k: handle.get_tensor(k).dtype for k in handle.keys()}
        assert torch.equal(handle.get_tensor("embed.weight"), wide.to(STORAGE_DTYPE))
    assert dtypes == {"embed.weight": torch.bfloat16, "q.weight_scale": torch.bfloat16,
                      "q.weight_global_scale": torch.float32, "q.weight_packed": torch.int32,
                      "norm.weight": torch.bfloat16}
    assert narrow_floats_on_disk(tmp_path) == []   # nothing left to do


def test_budget_mode_solves_and_keeps_the_budget(tiny_model_dir, tmp_path, data_root):
    info, saved = _compress(tiny_model_dir, {"budget_bits": 3.5, "levels": ["w2", "w3", "w4", "w8"],
                                             "sensitivity_windows": 2}, tmp_path / "model")
    report = info["step_reports"][0]
    assert report["avg_bits"] <= 3.5 and report["solver"] == "knapsack"
    assert set(report["sensitivity"]) == {"model.layers.0", "model.layers.1"}
    assert report["predicted_kl"] > 0
    assert list((data_root / "mixed").glob("sensitivity_*.json"))   # cached for the next budget


def test_bad_params_are_refused_with_e005(tiny_spec):
    from greenai_dagster.core.errors import CompressionFailed
    from greenai_dagster.core.methods import get_method

    method = get_method("mixed")
    with pytest.raises(CompressionFailed, match="budget_bits or allocation, not both"):
        method.validate({"budget_bits": 4, "allocation": {"model.layers.0": "w4"}}, tiny_spec)
    assert method.validate({}, tiny_spec)["budget_bits"] == 4.25
    with pytest.raises(CompressionFailed, match="below the cheapest level"):
        method.validate({"budget_bits": 1.0}, tiny_spec)
    with pytest.raises(CompressionFailed, match="group size 48"):
        method.validate({"budget_bits": 4, "group_size": 48}, tiny_spec)


def test_gptq_levels_quantize_each_group_at_its_bits_on_calibration_text(tiny_model_dir, float_model, reference,
                                                                          tmp_path):
    """`algorithm: gptq`: the same allocation, integers found by GPTQ (llm-compressor) per config group: each
    linear holds its level's bits, and the held-out KL is lower than RTN's
    at the same bits (GPTQ minimises each layer's output error on calibration text)."""
    model, _ = float_model
    blocks = lv.units(model, "block")
    allocation = {blocks[0].name: "w3", blocks[1].name: "w4"}
    base = {"allocation": allocation, "granularity": "block", "group_size": 32}
    rtn_info, rtn = _compress(tiny_model_dir, base, tmp_path / "rtn")
    gptq_info, gptq = _compress(tiny_model_dir, base | {"algorithm": "gptq", "num_calibration_samples": 16},
                                tmp_path / "gptq")
    report = gptq_info["step_reports"][0]
    assert report["algorithm"] == "gptq" and "GPTQModifier" in report["engine"]
    assert report["level_counts"] == rtn_info["step_reports"][0]["level_counts"] == {"w3": 1, "w4": 1}
    config = json.loads((tmp_path / "gptq" / "config.json").read_text())["quantization_config"]["config_groups"]
    assert sorted(g["weights"]["num_bits"] for g in config.values()) == [3, 4]
    assert fidelity.measure(gptq, reference).kl_divergence < fidelity.measure(rtn, reference).kl_divergence


def test_autoround_levels_tune_each_group_at_its_bits(tiny_model_dir, float_model, reference, tmp_path):
    """`algorithm: autoround`: AutoRound (llm-compressor's AutoRoundModifier) tunes every block with each linear
    at its allocation's bits, 5 and 6 bits included (auto-round's per-layer config): the saved config has one
    group per level and the checkpoint is closer to the float model than RTN at the same allocation."""
    model, _ = float_model
    blocks = lv.units(model, "block")
    allocation = {blocks[0].name: "w3", blocks[1].name: "w5"}
    base = {"allocation": allocation, "granularity": "block", "group_size": 32}
    _, rtn = _compress(tiny_model_dir, base, tmp_path / "rtn")
    info, tuned = _compress(tiny_model_dir, base | {"algorithm": "autoround", "num_calibration_samples": 8,
                                                    "calibration_seq_len": 64, "iters": 20}, tmp_path / "autoround")
    report = info["step_reports"][0]
    assert report["algorithm"] == "autoround" and "AutoRoundModifier" in report["engine"]
    assert report["level_counts"] == {"w3": 1, "w5": 1}
    config = json.loads((tmp_path / "autoround" / "config.json").read_text())["quantization_config"]["config_groups"]
    assert sorted(g["weights"]["num_bits"] for g in config.values()) == [3, 5]
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from safetensors.torch import load_file

    stored = {}
    for shard in (tmp_path / "autoround").glob("*.safetensors"):
        stored.update(load_file(str(shard)))
    spans = {}
    for name in lv.quantizable_linears(float_model[0]):
        bits = 3 if name.startswith(blocks[0].name + ".") else 5
        ints = unpack_from_int32(stored[f"{name}.weight_packed"], bits, torch.Size(stored[f"{name}.weight_shape"].tolist()))
        assert -(2 ** (bits - 1)) <= ints.min() and ints.max() <= 2 ** (bits - 1) - 1, name
        spans[bits] = max(spans.get(bits, 0), int(ints.max() - ints.min()))
    assert spans[5] > 2 ** 3   # the 5-bit linears use more than 3 bits' worth of integers
    assert fidelity.measure(tuned, reference).kl_divergence != fidelity.measure(rtn, reference).kl_divergence
