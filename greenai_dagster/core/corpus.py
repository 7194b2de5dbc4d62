"""Real English text for calibration and perplexity, available offline on every machine.

Source: the Python Language Reference topics that ship with CPython (`pydoc_data.topics`,
~465k characters of technical English prose, PSF licence). The sorted topics are split in two
disjoint halves: even positions are the perplexity corpus, odd positions the calibration
corpus, so we never calibrate on the text we score. Calibration samples are consecutive,
non-overlapping token chunks: real text, never a repeated sentence.
"""

from __future__ import annotations

import random

CORPUS_SOURCE = "CPython pydoc_data.topics (Python Language Reference), sorted topics; even=perplexity, odd=calibration"


def _topics() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def perplexity_text() -> str:
    return "\n\n".join(_topics()[0::2])


def calibration_text() -> str:
    return "\n\n".join(_topics()[1::2])


def calibration_chunks(tokenizer, num_samples: int, seq_len: int, seed: int = 0) -> list[list[int]]:
    """`num_samples` distinct token windows of `seq_len` tokens from the calibration corpus."""
    ids = tokenizer(calibration_text(), add_special_tokens=False)["input_ids"]
    chunks = [ids[i:i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]
    if len(chunks) < num_samples:
        raise ValueError(f"calibration corpus has {len(chunks)} chunks of {seq_len} tokens; {num_samples} asked")
    random.Random(seed).shuffle(chunks)
    return chunks[:num_samples]
