"""A record whose header names are not UTF-8 is read like any other.

Kafka does not check that a header's name is UTF-8, and producers other than Python's send any
bytes (``test_data/raw_headers.py``). confluent-kafka decodes every name as UTF-8 when its
``Message.headers()`` is called, and on one that is not it raises ``SystemError`` (its C code
returns a list holding a broken entry, with the ``UnicodeDecodeError`` set). Bytewax's Kafka
reader calls ``headers()`` for every message it reads: the hostile record stopped the flow, and
every restart read it again and stopped again. The flow reads no header, so such a record goes
on with one header instead of its own, :data:`UNREADABLE` (its value says why): a payment or a
label in it is decoded as any other, and a dead letter made of it says in
``dead_letters.message_headers`` that its headers could not be read.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message

UNREADABLE = "payscore-unreadable-headers"
UNREADABLE_WHY = b"a header name is not UTF-8: the Kafka client cannot read this record's headers"


class _Unreadable:
    """``message`` with :data:`UNREADABLE` as its only header; everything else its own."""

    __slots__ = ("_message",)

    def __init__(self, message: Message) -> None:
        self._message = message

    def headers(self) -> list[tuple[str, bytes]]:
        return [(UNREADABLE, UNREADABLE_WHY)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)


# ``message.headers()`` written out in Python is not safe: CPython 3.11+ specialises a hot call
# of a C method and then skips the check that turns "a result with an exception set" into a
# SystemError, so the broken list came back and the UnicodeDecodeError was raised later, from
# whatever Python ran next. Called through ``operator.methodcaller`` (``PyObject_Call``), the
# check always runs and the broken list is never handed out.
_headers_of = operator.methodcaller("headers")


def readable(message: Message) -> Message | _Unreadable:
    """``message`` if its headers can be read (they are then decoded once and kept by it), else
    the message with :data:`UNREADABLE` as its headers."""
    try:
        _headers_of(message)
    except (SystemError, UnicodeDecodeError):
        return _Unreadable(message)  # its own headers() is never called again: broken inside
    return message


class ReadableHeaders:
    """A consumer whose messages' headers can always be read (see the module); the rest is the
    consumer's own."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._consume: Callable[..., list[Message]] = consumer.consume

    def consume(self, *args: Any, **kwargs: Any) -> list[Message | _Unreadable]:
        return [readable(message) for message in self._consume(*args, **kwargs)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)
