"""A GGUF's SentencePiece-BPE vocabulary (Gemma's) rebuilt as a real BPE tokenizer.

transformers 5.17 loads a Gemma GGUF's tokenizer as a Unigram model over the GGUF scores, which for
Gemma are BPE merge ranks (score = -rank), not log-probabilities; saved and reloaded, `GemmaTokenizer`
(a BPE class) then rebuilds it with no merges at all, so text is cut into single characters and the
model sees inputs it was never trained on (perplexity in the thousands). Here the merges are derived
from the ranks as SentencePiece does for a BPE model (a piece's pairs merge in the order of the piece's
score), control and user-defined tokens become added tokens, and the GGUF's add_bos_token is kept.
"""

from __future__ import annotations

from pathlib import Path

NORMAL, CONTROL, USER_DEFINED, BYTE = 1, 3, 4, 6   # llama.cpp's token types


def is_sentencepiece_bpe(gguf_path: Path) -> bool:
    """True for a GGUF whose tokenizer is SentencePiece ("llama") with rank scores on a Gemma model."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf_path)).fields
    return _text(fields, "tokenizer.ggml.model") == "llama" and _text(fields, "general.architecture").startswith("gemma")


def gemma_tokenizer_from_gguf(gguf_path: Path):
    """A `GemmaTokenizer` (BPE, byte fallback) with the GGUF's vocabulary, ranks as merges and special tokens."""
    from gguf import GGUFReader
    from tokenizers import AddedToken
    from transformers import GemmaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges

    fields = GGUFReader(str(gguf_path)).fields
    raw = [bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in fields["tokenizer.ggml.tokens"].data]
    # runs of spaces are stored with real spaces; the tokenizer sees them as "▁" after its normalizer
    tokens = ["▁" * len(t) if t and not t.strip(" ") else t for t in raw]
    scores = [float(fields["tokenizer.ggml.scores"].parts[i][0]) for i in fields["tokenizer.ggml.scores"].data]
    types = [int(fields["tokenizer.ggml.token_type"].parts[i][0]) for i in fields["tokenizer.ggml.token_type"].data]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f"{gguf_path.name}: duplicate tokens in the GGUF vocabulary")
    atoms = {t for t, kind in zip(tokens, types) if kind != NORMAL}
    merges = generate_merges(vocab, [(t, s) for t, s, kind in zip(tokens, scores, types) if kind == NORMAL],
                             skip_tokens=atoms)

    def role(key: str) -> str:
        field = fields[key]
        return tokens[int(field.parts[field.data[0]][0])]

    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, unk_token=role("tokenizer.ggml.unknown_token_id"),
                               bos_token=role("tokenizer.ggml.bos_token_id"), eos_token=role("tokenizer.ggml.eos_token_id"),
                               pad_token=role("tokenizer.ggml.padding_token_id"))
    tokenizer.add_tokens([AddedToken(t, special=kind == CONTROL, normalized="▁" in t)
                          for t, kind in zip(tokens, types) if kind in (CONTROL, USER_DEFINED)])
    field = fields.get("tokenizer.ggml.add_bos_token")
    tokenizer.add_bos_token = bool(field.parts[field.data[0]][0]) if field is not None else False
    return tokenizer


def _text(fields, key: str) -> str:
    field = fields.get(key)
    return bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None else ""
