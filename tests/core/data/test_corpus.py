"""Held out means disjoint: no span of the text fidelity is scored on appears in the calibration text."""

from __future__ import annotations

from greenai_dagster.core.data import corpus


def _shared_share(text: str, taken: set[str]) -> float:
    """Share of `text`'s character positions covered by a DISJOINT_SPAN-character span found in `taken`."""
    width = corpus.DISJOINT_SPAN
    covered = bytearray(len(text))
    for i in range(len(text) - width + 1):
        if text[i:i + width] in taken:
            covered[i:i + width] = b"\x01" * width
    return sum(covered) / max(1, len(text))


def test_no_held_out_span_is_in_the_calibration_text():
    taken = corpus.spans(corpus.calibration_text())
    held_out = corpus.perplexity_text()
    assert not [s for s in corpus.spans(held_out) if s in taken]
    assert len(held_out) > 150_000            # still ~48k tokens of the default model: fidelity_tokens fits 10x


def test_the_plain_even_odd_split_was_not_disjoint():
    """What the filter removes is real: a quarter of the raw even half's opening reappears in the odd half."""
    raw_even = "\n\n".join(corpus._topics()[0::2])[:18_000]
    taken = corpus.spans(corpus.calibration_text())
    assert _shared_share(raw_even, taken) > 0.2
    assert _shared_share(corpus.perplexity_text()[:18_000], taken) == 0.0


def test_markup_underlines_do_not_count_as_shared_text():
    assert not corpus.is_text("=" * corpus.DISJOINT_SPAN) and not corpus.is_text(" " * corpus.DISJOINT_SPAN)
    assert corpus.is_text("Called to implement the built-in function len().")
