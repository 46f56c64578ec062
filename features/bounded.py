"""Every text made from input (an error, a reason, a log line, a Kafka header) is bounded here.

A producer decides what msgspec quotes in its errors: an unknown field's name of 70,000
characters came back whole in the error, and from there went into ``dead_letters.error`` (a
``TEXT`` column of 65,535 bytes), a Kafka header and a log line. :func:`bounded` is the one
helper every such text goes through:

- at most ``limit`` characters (:data:`TEXT_CHARS`, 2,000, by default): the head and the tail
  are kept (the tail of a msgspec error is where it happened, ``- at `$.currency```) with a
  marker that says how much was cut between them;
- printable: control characters, lone surrogates and other characters that are not printable
  are written as Python escapes (``\\x00``, ``\\n``, ``\\ud800``), so the text encodes to UTF-8
  whatever it holds, MySQL takes it, and a log line stays one line (``lines=True`` keeps line
  breaks, for tracebacks).

Why 2,000 characters: enough for any reason this project writes (msgspec's own errors are
under 200 characters unless they quote input) and for a reader to see what came; at most 8,000
bytes in UTF-8, an eighth of the ``TEXT`` column, so a dead letter's reason joined with MySQL's
own refusal still fits; small enough for a Kafka header and a log line.

>>> bounded("Object contains unknown field `" + "A" * 70_000 + "` - at `$`", 80)
'Object contains unknown field `AAAAAAAA …[69,988 characters cut]… AAAA` - at `$`'
>>> bounded("card\\x00id\\n")
'card\\\\x00id\\\\n'
"""

from __future__ import annotations

TEXT_CHARS = 2_000  # reasons, errors, log lines that quote input
TRACEBACK_CHARS = 8_000  # a logged traceback (lines kept)
_SMALLEST = 64


def bounded(text: str, limit: int = TEXT_CHARS, *, lines: bool = False) -> str:
    """``text`` cut to ``limit`` characters, marked where it was cut, every character printable
    (escaped where not; ``lines``: line breaks are kept). Costs a scan of at most ``limit``
    characters, whatever the length of ``text``."""
    if limit < _SMALLEST:
        raise ValueError(f"a bound of text must be at least {_SMALLEST} characters; got {limit}")
    if len(text) <= limit:
        if _printable(text, lines):
            return text
        whole = "".join(_shown(c, lines) for c in text)
        if len(whole) <= limit:
            return whole
    keep = limit - len(_marker(len(text)))
    head, start = _take(text, keep * 3 // 4, lines, 0, len(text))
    tail, end = _take(text, keep - len(head), lines, start, len(text), backwards=True)
    return head + _marker(end - start) + tail


def _marker(cut: int) -> str:
    return f" …[{cut:,} characters cut]… "


def _take(
    text: str, room: int, lines: bool, start: int, end: int, *, backwards: bool = False
) -> tuple[str, int]:
    """As much of ``text[start:end]`` as fits in ``room`` printable characters, from its start
    (or its end), and where that stopped."""
    span = text[max(end - room, start) : end] if backwards else text[start : min(start + room, end)]
    if _printable(span, lines):
        return span, (end - len(span) if backwards else start + len(span))
    pieces: list[str] = []
    used = 0
    at = end if backwards else start
    while start < at if backwards else at < end:
        shown = _shown(text[at - 1 if backwards else at], lines)
        if used + len(shown) > room:
            break
        pieces.append(shown)
        used += len(shown)
        at += -1 if backwards else 1
    return "".join(reversed(pieces) if backwards else pieces), at


def _printable(text: str, lines: bool) -> bool:
    return text.isprintable() or (lines and all(line.isprintable() for line in text.split("\n")))


def _shown(character: str, lines: bool) -> str:
    if character.isprintable() or (lines and character == "\n"):
        return character
    return character.encode("unicode_escape").decode("ascii")
