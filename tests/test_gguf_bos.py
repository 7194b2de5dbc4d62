"""The GGUF's add_bos_token survives the conversion to a HF checkpoint (Gemma needs its BOS before
every input; transformers' GGUF tokenizer loader drops the flag, and fidelity windows then lack BOS)."""

from pathlib import Path

import pytest

from conftest import build_tiny_tokenizer


def _metadata_gguf(path: Path, add_bos: bool) -> Path:
    """A GGUF holding only tokenizer metadata, written with the real gguf writer."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_add_bos_token(add_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("add_bos", [True, False])
def test_add_bos_token_taken_from_gguf_and_kept_on_save(tmp_path, add_bos):
    from transformers import AutoTokenizer

    from greenai_dagster.core.default_model import _special_tokens_from_gguf
    from greenai_dagster.core.fidelity import bos_prefix, token_windows

    tokenizer = build_tiny_tokenizer()
    plain = tokenizer("a")["input_ids"]
    assert bos_prefix(tokenizer) == []
    _special_tokens_from_gguf(tokenizer, _metadata_gguf(tmp_path / "meta.gguf", add_bos))
    tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    expected = [0] if add_bos else []
    assert reloaded("a")["input_ids"] == expected + plain
    assert bos_prefix(reloaded) == expected
    windows = token_windows(reloaded, "the quick brown fox jumps over the lazy dog " * 40, 200, window=64)
    assert (windows[:, 0] == 0).all() == add_bos
