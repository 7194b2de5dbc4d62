"""Gemma's GGUF vocabulary (SentencePiece BPE, scores = -merge rank) rebuilt as a BPE tokenizer:
whole words come out as one piece where the ranks say so, not characters (transformers' own GGUF
loader gives characters once saved, which put Gemma's perplexity in the thousands). And the GGUF's
add_bos_token survives the conversion (Gemma needs its BOS before every input; transformers' GGUF
tokenizer loader drops the flag, and fidelity windows then lacked BOS)."""

from pathlib import Path

import pytest

from tests.conftest import build_tiny_tokenizer

# (piece, score, llama.cpp type): specials, a user-defined newline and space run, then normal pieces
VOCAB = [("<pad>", -1000.0, 3), ("<eos>", -1000.0, 3), ("<bos>", -1000.0, 3), ("<unk>", -1000.0, 3),
         ("\n", -1000.0, 4), ("  ", -1000.0, 4),
         ("he", -1.0, 1), ("the", -2.0, 1), ("▁the", -3.0, 1), ("at", -4.0, 1), ("hat", -5.0, 1), ("▁hat", -6.0, 1),
         ("t", -100.0, 1), ("h", -101.0, 1), ("e", -102.0, 1), ("a", -103.0, 1), ("▁", -104.0, 1)]


def _gguf(path: Path, arch: str = "gemma3", add_bos: bool = True, vocab: list | None = VOCAB,
          bos_id: int = 2) -> Path:
    """A GGUF holding only tokenizer metadata (no tensors), written with the real gguf writer: Gemma-like
    vocabulary and special ids, or (vocab=None) just the BOS/EOS ids and the add_bos_token flag."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    if vocab is not None:
        writer.add_tokenizer_model("llama")
        writer.add_token_list([p for p, _, _ in vocab])
        writer.add_token_scores([s for _, s, _ in vocab])
        writer.add_token_types([t for _, _, t in vocab])
        writer.add_pad_token_id(0)
        writer.add_eos_token_id(1)
        writer.add_unk_token_id(3)
    else:
        writer.add_eos_token_id(bos_id)
    writer.add_bos_token_id(bos_id)
    writer.add_add_bos_token(add_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gemma_vocabulary_becomes_bpe_with_rank_merges_and_specials(tmp_path):
    from transformers import AutoTokenizer

    from greenai_dagster.core.models.gguf_tokenizer import gemma_tokenizer_from_gguf, is_sentencepiece_bpe

    path = _gguf(tmp_path / "gemma.gguf")
    assert is_sentencepiece_bpe(path)
    tokenizer = gemma_tokenizer_from_gguf(path)
    tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")   # what the converted checkpoint loads
    for tok in (tokenizer, reloaded):
        ids = tok("the hat\nthe  hat")["input_ids"]
        assert tok.convert_ids_to_tokens(ids) == ["<bos>", "the", "▁hat", "\n", "the", "▁▁", "hat"]
        assert ids == [2, 7, 11, 4, 7, 5, 10]
        assert tok.decode(ids, skip_special_tokens=True) == "the hat\nthe  hat"
        assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (2, 1, 0)


def test_other_gguf_tokenizers_are_left_to_transformers(tmp_path):
    from greenai_dagster.core.models.gguf_tokenizer import gemma_tokenizer_from_gguf, is_sentencepiece_bpe

    assert not is_sentencepiece_bpe(_gguf(tmp_path / "llama.gguf", arch="llama"))
    no_bos = gemma_tokenizer_from_gguf(_gguf(tmp_path / "nobos.gguf", add_bos=False))
    assert no_bos("the")["input_ids"] == [7]


@pytest.mark.parametrize("add_bos", [True, False])
def test_add_bos_token_taken_from_gguf_and_kept_on_save(tmp_path, add_bos):
    from transformers import AutoTokenizer

    from greenai_dagster.core.models.default_model import _special_tokens_from_gguf
    from greenai_dagster.core.evaluation.fidelity import bos_prefix, token_windows

    tokenizer = build_tiny_tokenizer()
    plain = tokenizer("a")["input_ids"]
    assert bos_prefix(tokenizer) == []
    _special_tokens_from_gguf(tokenizer, _gguf(tmp_path / "meta.gguf", "llama", add_bos, vocab=None, bos_id=0))
    tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    expected = [0] if add_bos else []
    assert reloaded("a")["input_ids"] == expected + plain
    assert bos_prefix(reloaded) == expected
    windows = token_windows(reloaded, "the quick brown fox jumps over the lazy dog " * 40, 200, window=64)
    assert (windows[:, 0] == 0).all() == add_bos
