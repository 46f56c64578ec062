"""Every text made from input is bounded, printable and encodable, and says where it was cut."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.bounded import TEXT_CHARS, bounded

texts = st.text(st.characters(codec=None), max_size=300) | st.builds(
    lambda unit, n: unit * n, st.text(min_size=1, max_size=5), st.integers(0, 30_000)
)


@settings(max_examples=500, deadline=None)
@given(text=texts, limit=st.integers(64, 3_000), lines=st.booleans())
def test_any_text_comes_out_bounded_printable_and_encodable(
    text: str, limit: int, lines: bool
) -> None:
    out = bounded(text, limit, lines=lines)
    assert len(out) <= limit
    assert all(c.isprintable() or (lines and c == "\n") for c in out)
    out.encode("utf-8")  # no lone surrogate left
    if len(text) <= limit and text.isprintable():
        assert out == text  # nothing to do: nothing done
    cut = re.search(r" …\[([\d,]+) characters cut\]… ", out)
    if cut is not None and text.isprintable():  # the marker says exactly how much went
        assert len(out) - len(cut.group(0)) + int(cut.group(1).replace(",", "")) == len(text)
        head, _, tail = out.partition(cut.group(0))
        assert text.startswith(head) and text.endswith(tail)


def test_the_default_bound_and_a_floor() -> None:
    assert TEXT_CHARS - 10 <= len(bounded("x" * 1_000_000)) <= TEXT_CHARS
    with pytest.raises(ValueError, match="at least 64"):
        bounded("x", 10)
