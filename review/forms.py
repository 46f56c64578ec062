"""Reading the review pages' form fields and query parameters: each one bounded, each refusal a
400 that names the field, what was expected and what came (quoted, shortened)."""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from features.bounded import bounded

SHOWN = 40  # characters of a refused value quoted back (repr: at most 10 bytes each)
QUOTED = 64  # characters of an input quoted back in an error page (features.bounded's marker)
_DIGITS = re.compile(r"\A[0-9]{1,18}\Z")


def quoted(value: object) -> str:
    """``value`` quoted for an error page: at most :data:`QUOTED` characters, marked where cut,
    printable (``features.bounded``); a value that is not text is named by its type.

    >>> quoted("Z" * 100)
    "'ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ …[60 characters cut]… ZZZZZZZZZZ'"
    >>> quoted(None)
    'NoneType'
    """
    if not isinstance(value, str):
        return type(value).__name__
    return f"'{bounded(value, QUOTED)}'"


def moment(text: str | None) -> datetime | None:
    """A time from a ``datetime-local`` field, read as UTC (naive, as stored)."""
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text[:SHOWN]!r}: expected YYYY-MM-DDTHH:MM (UTC)") from None
    if found.tzinfo is not None:
        raise ValueError(f"time {text[:SHOWN]!r}: expected no UTC offset (times are UTC)")
    return found


def text(form: Mapping[str, Any], name: str, *, at_most: int, required: bool = False) -> str:
    """Field ``name`` as text, stripped: at most ``at_most`` characters (400 otherwise)."""
    value = form.get(name)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise HTTPException(400, f"{name}: expected text, got a file")
    value = value.strip()
    if len(value) > at_most:
        raise HTTPException(
            400, f"{name}: expected at most {at_most:,} characters, got {len(value):,}"
        )
    if required and not value:
        raise HTTPException(400, f"{name}: expected a value, got none")
    return value


def choice(form: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = form.get(name)
    if value not in allowed:
        shown = str(value)[:SHOWN] if isinstance(value, str) else type(value).__name__
        raise HTTPException(400, f"{name}: expected one of {', '.join(allowed)}, got {shown!r}")
    return str(value)


def when(form: Mapping[str, Any], name: str) -> datetime | None:
    """Field ``name`` as a UTC time (``datetime-local``), or None when empty."""
    try:
        return moment(text(form, name, at_most=SHOWN))
    except ValueError as exc:
        raise HTTPException(400, f"{name}: {exc}") from None


def number(args: Mapping[str, Any], name: str, *, at_least: int = 0) -> int | None:
    """Parameter ``name`` as a whole number, or None when absent or empty."""
    value = args.get(name)
    if not value:
        return None
    if not isinstance(value, str) or not _DIGITS.match(value):
        raise HTTPException(400, f"{name}: expected a whole number, got {str(value)[:SHOWN]!r}")
    if int(value) < at_least:
        raise HTTPException(400, f"{name}: expected at least {at_least}, got {value}")
    return int(value)


SIGN_IN_FORM_BYTES = 16 * 1024  # a name (64), a password, a CSRF token: any real sign-in fits
VERDICT_FORM_BYTES = 64 * 1024  # a note of 2,000 characters, URL-encoded, fits


async def bounded_form(
    request: Request, at_most: int, *, repeatable: frozenset[str] = frozenset()
) -> Any:
    """The form of ``request``, once its stated size allows it: refused unread (411, 413)
    otherwise. ``POST /login``, open to anyone, read a body of any size into memory.

    A field named more than once is refused (400) unless it is ``repeatable`` (a list's entries
    to remove): ``verdict=fraud&verdict=legitimate`` recorded the last one without a word, as a
    Kafka message naming a key twice would have had one value win (those are refused too)."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise HTTPException(411, "a form must state its Content-Length")
    if int(length) > at_most:
        raise HTTPException(
            413, f"the form has {int(length):,} bytes; expected at most {at_most:,}"
        )
    form = await request.form(max_part_size=at_most)
    counts = collections.Counter(name for name, _ in form.multi_items())
    twice = [(name, n) for name, n in counts.items() if n > 1 and name not in repeatable]
    if twice:
        name, n = twice[0]
        raise HTTPException(
            400, f"{str(name)[:SHOWN]!r}: given {n:,} times; expected once (which is meant?)"
        )
    return form
