"""Form fields of the review pages: whatever comes, a field is returned bounded or refused with a
400 whose message is bounded and names the field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.exceptions import HTTPException

from review import forms

# A refused value is quoted back shortened to forms.SHOWN characters, each at most 10 in repr.
MESSAGE_BOUND = forms.SHOWN * 10 + 120


def outcome(read: Callable[[], Any]) -> tuple[Any, HTTPException | None]:
    try:
        return read(), None
    except HTTPException as exc:
        return None, exc


def refused(exc: HTTPException | None, field: str) -> bool:
    return (
        exc is not None
        and exc.status_code == 400
        and str(exc.detail).startswith(f"{field}: ")
        and len(str(exc.detail)) <= MESSAGE_BOUND
    )


@given(st.text(max_size=300), st.integers(1, 100), st.booleans())
def test_a_text_field_is_bounded_or_refused_with_a_bounded_message(value, at_most, required):
    got, exc = outcome(lambda: forms.text({"f": value}, "f", at_most=at_most, required=required))
    if exc is None:
        assert got == value.strip()
        assert len(got) <= at_most
        assert got or not required
    else:
        assert refused(exc, "f")
        assert len(value.strip()) > at_most or (required and not value.strip())


@given(st.text(max_size=200))
def test_a_time_is_a_naive_utc_datetime_or_a_bounded_refusal(value):
    got, exc = outcome(lambda: forms.when({"t": value}, "t"))
    if exc is None:
        assert got is None or (isinstance(got, datetime) and got.tzinfo is None)
    else:
        assert refused(exc, "t")


@given(st.text(max_size=40))
def test_a_choice_is_one_of_the_allowed_or_refused(value):
    got, exc = outcome(lambda: forms.choice({"c": value}, "c", ("active", "shadow")))
    if exc is None:
        assert got == value
        assert got in ("active", "shadow")
    else:
        assert refused(exc, "c")


@given(st.text(max_size=30))
def test_a_number_is_decimal_digits_or_refused(value):
    got, exc = outcome(lambda: forms.number({"n": value}, "n"))
    if exc is None:
        assert (got is None and not value) or (got == int(value) and value.isascii())
    else:
        assert refused(exc, "n")


def test_examples() -> None:
    assert forms.when({"t": "2026-03-02T09:30"}, "t") == datetime(2026, 3, 2, 9, 30)
    with pytest.raises(HTTPException, match="expected no UTC offset"):
        forms.when({"t": "2026-03-02T09:30+01:00"}, "t")
    assert forms.number({"n": "12"}, "n") == 12
    assert forms.number({}, "n") is None
    for bad in ("-1", "1e3", "9" * 19, "１２"):
        with pytest.raises(HTTPException, match="n: expected a whole number"):
            forms.number({"n": bad}, "n")
