"""A JSON object that names one key twice: msgspec keeps the last value and says nothing.

RFC 8259 leaves a repeated name's meaning open; parsers differ (first wins, last wins, error),
so a message with ``"transaction_id"`` twice means one thing to us and another to the producer's
own tools. The contract refuses it (msgspec has no option for it: msgspec issue #648).

The check runs on every message that msgspec already decoded into a payment or a label, so it
must cost little (``benchmarks/bench_json_keys.py`` prints its µs per message). Such a message
is one flat object of plain values (strings, numbers, booleans, null), and its keys are the
struct's field names. Its members are therefore its commas plus one, unless a string value
holds a comma itself, which only free text can (a label's ``note``). Comparing that count with
the number of distinct keys (msgspec decodes the object as ``dict[str, Raw]`` without looking
into the values, escapes in keys resolved) finds every repeat; only a message with free text,
or one that has a repeat, is parsed again key by key (Python's :mod:`json`) to name the key.

>>> repeated_key(b'{"a": 1, "b": "x"}')
>>> repeated_key(b'{"a": 1, "\\\\u0061": 2}')
'a'
"""

from __future__ import annotations

import json

import msgspec

_KEYS = msgspec.json.Decoder(dict[str, msgspec.Raw])


def repeated_key(raw: bytes, *, free_text: bool = False) -> str | None:
    """The first key that ``raw``'s top-level object names twice, or None.

    ``raw`` is a flat JSON object that msgspec decoded already; ``free_text``: a string value
    may hold a comma (then the count of commas says nothing and the object is parsed again).
    """
    if not free_text and raw.count(b",") + 1 == len(_KEYS.decode(raw)):
        return None
    return _first_repeat(raw)


class _RepeatedKeyError(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKeyError(key)
        seen[key] = value
    return seen


def _first_repeat(raw: bytes) -> str | None:
    try:
        json.loads(raw, object_pairs_hook=_pairs)
    except _RepeatedKeyError as repeat:
        return repeat.key
    except (ValueError, RecursionError):  # JSON msgspec read and Python's json cannot: unnamed
        return "?"
    return None
