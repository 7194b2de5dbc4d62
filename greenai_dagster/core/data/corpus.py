"""Real English text for calibration and perplexity, available offline on every machine.

Source: the Python Language Reference topics that ship with CPython (`pydoc_data.topics`,
~465k characters of technical English prose, PSF licence). The sorted topics are split in two:
odd positions are the calibration corpus (GPTQ/AWQ/AutoRound calibration, LoRA/QLoRA training),
even positions the held-out corpus that fidelity is scored on. The topics repeat each other
(`compound` holds the text of `break`, `continue`, `return`...): about 26 % of the even half
appeared verbatim in the odd half. So the held-out text keeps only the even topics' paragraphs that
share no DISJOINT_SPAN-character span of text (markup underlines aside) with the calibration text,
checked on the joined text itself
(`tests/core/data/test_corpus.py` tests the property): held out means disjoint, measured. Calibration
samples are consecutive, non-overlapping token chunks: real text, never a repeated sentence.
"""

from __future__ import annotations

import functools
import random
from pydoc_data.topics import topics

DISJOINT_SPAN = 48      # characters (about 10-12 tokens of this prose; a 32-token span is ~130 characters)
MIN_DISTINCT_CHARS = 10  # fewer distinct characters in a span: markup, not text (`is_text`)
SEPARATOR = "\n\n"
CORPUS_SOURCE = ("CPython pydoc_data.topics (Python Language Reference), sorted topics; odd = calibration, even = "
                 f"held out minus every paragraph sharing a {DISJOINT_SPAN}-character span with the calibration half")


def _topics() -> list[str]:
    return [topics[key] for key in sorted(topics)]


def is_text(span: str) -> bool:
    """A span that carries text: not reStructuredText markup (a `=====` or `*****` underline, indentation),
    which every topic shares and which says nothing about what a model learned."""
    return len(set(span)) >= MIN_DISTINCT_CHARS


def spans(text: str, width: int = DISJOINT_SPAN) -> set[str]:
    """Every `width`-character substring of `text` that carries text (`is_text`)."""
    return {span for i in range(len(text) - width + 1) if is_text(span := text[i:i + width])}


@functools.lru_cache(maxsize=1)
def perplexity_text() -> str:
    """The held-out text: the even topics' paragraphs joined by SEPARATOR, each kept only if the text so far
    plus it shares no DISJOINT_SPAN-character span with the calibration text (joins are checked too). A kept
    paragraph whose ending plus the separator matches the calibration text (a shared last line) would block
    every later one, so it is dropped again."""
    taken, width = spans(calibration_text()), DISJOINT_SPAN
    text, ends = "", []                    # ends: len(text) after each kept paragraph
    for topic in _topics()[0::2]:
        for paragraph in (p.strip() for p in topic.split("\n\n")):
            while paragraph:
                candidate = (text + SEPARATOR if text else "") + paragraph
                hits = [i for i in range(max(0, len(text) - width + 1), len(candidate) - width + 1)
                        if candidate[i:i + width] in taken]
                if not hits:
                    text = candidate
                    ends.append(len(text))
                    break
                if ends and any(i + width <= len(text) + len(SEPARATOR) for i in hits):
                    ends.pop()             # the kept text's own ending is the match: drop that paragraph
                    text = text[:ends[-1]] if ends else ""
                    continue
                break                      # the paragraph itself shares a span: leave it out
    return text


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
