"""GGUF: compressed-tensors integers repacked into llama.cpp blocks without requantizing, and served.

The block layouts are checked against gguf-py's own dequantizer (no llama.cpp needed). The end-to-end
test builds a tiny Llama that uses the packaged model's tokenizer (llama.cpp's converter recognises
it), quantizes it with the project's `rtn` method, repacks it, and requires llama.cpp's logits to
match eager PyTorch's on the same checkpoint; it is skipped, with the reason, where llama-cpp-python
or llama.cpp's converter is not installed.
"""

import numpy as np
import pytest
import torch

from greenai_dagster.core.formats import compressed_tensors
from greenai_dagster.core.models import gguf_files


@pytest.mark.parametrize("bits,zero", [(4, False), (4, True), (5, False), (5, True), (8, False)])
def test_blocks_hold_the_checkpoints_integers_exactly(bits, zero):
    import gguf

    torch.manual_seed(0)
    rows, k, group = 6, 128, 64
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)
    q = torch.randint(low, high, (rows, k), dtype=torch.int8)
    scale = (torch.rand(rows, k // group) * 0.02 + 0.001).half().float()   # float16-exact, as bf16/fp16 checkpoints
    zp = torch.randint(-3, 4, (rows, k // group), dtype=torch.int8) if zero else None
    qtype, blocks = gguf_files.blocks_for_rows(q, scale, zp, bits)
    assert qtype.name == {(4, False): "Q4_0", (4, True): "Q4_1", (5, False): "Q5_0", (5, True): "Q5_1",
                          (8, False): "Q8_0"}[(bits, zero)]
    expected = (q.float() - (0 if zp is None else zp.float().repeat_interleave(group, 1))) \
        * scale.repeat_interleave(group, 1)
    back = gguf.quants.dequantize(blocks, qtype).reshape(rows, k)
    # exact integers; Q4_1's offset m = -(8 + zero point) * scale is rounded to float16, as llama.cpp stores it
    np.testing.assert_allclose(back, expected.numpy(), rtol=1e-3, atol=1e-3 * float(expected.abs().max()))


def test_a_group_that_is_not_a_multiple_of_32_is_refused():
    q = torch.zeros(2, 48, dtype=torch.int8)
    with pytest.raises(gguf_files.GGUFUnavailable, match="multiple of llama.cpp's block"):
        gguf_files.blocks_for_rows(q, torch.ones(2, 3), None, 4)
    with pytest.raises(gguf_files.GGUFUnavailable, match="no llama.cpp block holds 3-bit"):
        gguf_files.blocks_for_rows(torch.zeros(2, 64, dtype=torch.int8), torch.ones(2, 1), None, 3)


@pytest.mark.skipif(not gguf_files.converter_available(), reason="llama.cpp's converter not installed")
def test_a_mixed_allocation_of_4_5_8_bits_is_served_by_llama_cpp_as_its_own_integers(
        smol_tokenizer_llama, tmp_path, data_root):
    """Issue 15: a per-layer allocation saved as compressed-tensors (one config group per width) becomes a
    GGUF with per-tensor block types (Q4_0, Q5_0, Q8_0) holding the checkpoint's integers; a width no block
    holds (3 bits) keeps the allocation in eager PyTorch."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.runtimes import pick
    from greenai_dagster.core.formats.gguf import describe
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    model, tokenizer = load_model_and_tokenizer(str(smol_tokenizer_llama))
    spec = build_spec("tinysmol", model, str(smol_tokenizer_llama))
    names = [f"model.layers.{i}.{m}" for i in range(2) for m in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj")]
    allocation = {n: ("w4", "w5", "w8")[i % 3] for i, n in enumerate(names)}
    folder = tmp_path / "mixed"
    compress_to_checkpoint(str(smol_tokenizer_llama), Strategy("mixed", [Step("mixed", {
        "granularity": "linear", "allocation": allocation, "group_size": 32})]), spec, folder)
    assert pick(folder, "cpu")[0].name == "llama.cpp"
    out = tmp_path / "mixed.gguf"
    info = gguf_files.repack(folder, out)
    assert info["tensors_repacked"] == info["linears"] == 14
    assert info["block_types"] == ["Q4_0", "Q5_0", "Q8_0"]
    assert all(f"{t} ({n})" in describe(out) for t, n in (("Q4_0", 5), ("Q5_0", 5), ("Q8_0", 4)))
    assert _llama_cpp_vs_eager(folder, out, tokenizer) > 0.99

    three = tmp_path / "mixed3"
    compress_to_checkpoint(str(smol_tokenizer_llama), Strategy("mixed", [Step("mixed", {
        "granularity": "linear", "allocation": {**allocation, names[0]: "w3"}, "group_size": 32})]), spec, three)
    assert pick(three, "cpu")[0].name != "llama.cpp"


@pytest.mark.skipif(not gguf_files.converter_available(), reason="llama.cpp's converter not installed "
                    "(scripts/setup.sh unpacks it under .tools/llama.cpp)")
@pytest.mark.parametrize("bits,block", [(4, "Q4_0"), (8, "Q8_0")])
def test_repacked_checkpoint_serves_in_llama_cpp_like_eager(smol_tokenizer_llama, tmp_path, data_root, bits, block):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.runtimes import pick
    from greenai_dagster.core.formats.gguf import describe
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    model, tokenizer = load_model_and_tokenizer(str(smol_tokenizer_llama))
    spec = build_spec("tinysmol", model, str(smol_tokenizer_llama))
    folder = tmp_path / "w4"
    compress_to_checkpoint(str(smol_tokenizer_llama), Strategy("rtn", [Step("rtn", {"bits": bits, "group_size": 32})]),
                           spec, folder)
    assert pick(folder, "cpu")[0].name == "llama.cpp"
    out = tmp_path / "w4.gguf"
    info = gguf_files.repack(folder, out)
    # 8-bit values are packed four to an int32: read with the scheme's own bit width (a 4-bit misread
    # once gave a self-consistent wrong model; the repack now also checks against compressed-tensors)
    assert info["tensors_repacked"] == info["linears"] == 14 and info["block_types"] == [block]
    assert f"{block} (14)" in describe(out)
    from greenai_dagster.core.export import export_gguf   # `greenai export --format gguf` writes the same file

    exported = export_gguf(folder, tmp_path / "exported.gguf")
    assert f"{block} (14)" in describe(exported)

    # same integers and scales; the differences are llama.cpp's F16 embeddings and its q8 activations
    assert _llama_cpp_vs_eager(folder, out, tokenizer) > 0.99


@pytest.mark.skipif(not gguf_files.converter_available(), reason="llama.cpp's converter not installed")
def test_an_int8_checkpoint_is_served_by_llama_cpp_as_q8_0_holding_its_integers(smol_tokenizer_llama, tmp_path,
                                                                                data_root):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from greenai_dagster.core.models.checkpoints import load_variant
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.runtimes import pick
    from greenai_dagster.core.formats.int8_dynamic import dequantize_int8_dynamic
    from greenai_dagster.core.runtimes.llama_cpp import LlamaCppSession
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy

    model, tokenizer = load_model_and_tokenizer(str(smol_tokenizer_llama))
    spec = build_spec("tinysmol", model, str(smol_tokenizer_llama))
    folder = tmp_path / "int8"
    compress_to_checkpoint(str(smol_tokenizer_llama), Strategy("int8", [Step("int8", {})]), spec, folder)
    assert pick(folder, "cpu")[0].name == "llama.cpp"          # before torch's dynamic int8 (per-tensor activations)
    out = tmp_path / "int8.gguf"
    info = gguf_files.repack(folder, out)
    assert info["tensors_repacked"] == info["linears"] == 14 and info["block_types"] == ["Q8_0"]
    assert info["max_float16_scale_error"] < 1e-3
    assert info["quantized_here_to_q8_0"] == ["token_embd.weight"]    # the float embedding, as a Q8_0 GGUF has it

    ids = tokenizer("The quick brown fox jumps over the lazy dog", return_tensors="pt")["input_ids"][0].tolist()
    dense = dequantize_int8_dynamic(load_variant(folder, device="cpu")[0]).float()   # the same integers, in float
    with torch.no_grad():
        want = dense(torch.tensor([ids])).logits[0, -1].numpy()
    session = LlamaCppSession(out, threads=1, n_ctx=128)
    session.prefill(ids)
    assert float(np.corrcoef(np.array(session.last_logits()), want)[0, 1]) > 0.99


@pytest.mark.skipif(not gguf_files.converter_available(), reason="llama.cpp's converter not installed")
def test_gguf_method_writes_a_llama_cpp_file_that_reloads_and_serves(smol_tokenizer_llama, tmp_path, data_root):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from greenai_dagster.core.models.checkpoints import GGUF_FILE, checkpoint_format, load_variant, save_variant
    from greenai_dagster.core.compress import apply_strategy
    from greenai_dagster.core.models.loading import load_model_and_tokenizer
    from greenai_dagster.core.runtimes import pick
    from greenai_dagster.core.formats.gguf import describe
    from greenai_dagster.core.models.spec import weights_size_bytes
    from greenai_dagster.core.methods.assess import build_spec
    from greenai_dagster.core.strategy import Step, Strategy, validate_strategy

    model, tokenizer = load_model_and_tokenizer(str(smol_tokenizer_llama))
    spec = build_spec("tinysmol", model, str(smol_tokenizer_llama))
    with torch.no_grad():
        ids = tokenizer("The quick brown fox", return_tensors="pt")["input_ids"]
        dense_logits = model(ids).logits
    strategy = validate_strategy(Strategy("g", [Step("gguf", {"quant_type": "Q8_0"})]), spec)
    out, reports, fmt = apply_strategy(model, tokenizer, strategy, spec)
    folder = save_variant(out, tokenizer, tmp_path / "variant", fmt, {"step_reports": reports})
    assert fmt == "gguf" and checkpoint_format(folder) == "gguf" and (folder / GGUF_FILE).exists()
    assert "Q8_0 (15)" in describe(folder / GGUF_FILE)   # 14 linears + the embedding in 8-bit blocks
    assert pick(folder, "cpu")[0].name == "llama.cpp"
    reloaded, _ = load_variant(folder)
    with torch.no_grad():
        logits = reloaded(ids).logits
    # 8-bit blocks: close to the float model, but not identical
    assert 0 < (logits - dense_logits).abs().max() < 0.05 * dense_logits.abs().max()
    assert weights_size_bytes(folder) < weights_size_bytes(smol_tokenizer_llama)


def test_packed_zero_points_are_unpacked_along_the_rows():
    """AWQ-style asymmetric checkpoints store 4-bit zero points eight to an int32 along the output rows."""
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    zp = torch.randint(-8, 8, (16, 3), dtype=torch.int8)
    packed = pack_to_int32(zp, 4, packed_dim=0)
    assert packed.shape == (2, 3)
    assert torch.equal(compressed_tensors.stored_zero_point(packed, 16, 3).to(torch.int8), zp)
    assert compressed_tensors.stored_zero_point(None, 16, 3) is None


def _llama_cpp_vs_eager(folder, gguf_file, tokenizer) -> float:
    """Correlation of llama.cpp's last-position logits on `gguf_file` with eager PyTorch's on `folder`."""
    from greenai_dagster.core.runtimes import by_name
    from greenai_dagster.core.runtimes.llama_cpp import LlamaCppSession

    ids = tokenizer("The quick brown fox jumps over the lazy dog", return_tensors="pt")["input_ids"][0].tolist()
    eager, _ = by_name("torch-eager").load(folder, "cpu")
    with torch.no_grad():
        want = eager(torch.tensor([ids])).logits[0, -1].numpy()
    session = LlamaCppSession(gguf_file, threads=1, n_ctx=128)
    session.prefill(ids)
    return float(np.corrcoef(np.array(session.last_logits()), want)[0, 1])
