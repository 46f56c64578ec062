"""What travels between the flow's steps: decoded events with their Kafka position; dead letters.

Decoding never raises: a message either becomes a :class:`Positioned` event or a
:class:`DeadLetter` that keeps the raw bytes, the reason and where the message was read, so the
flow keeps running and nothing is lost.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec
from bytewax.connectors.kafka import KafkaSourceMessage

from features.bounded import bounded
from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel, InvalidMessageError, LabelDecoder, Payment, PaymentDecoder
from storage.rows import dead_letter_row

E = TypeVar("E", Payment, FraudLabel)
RawMessage = KafkaSourceMessage[bytes | None, bytes | None]


class Positioned(msgspec.Struct, Generic[E]):
    """A decoded event and where it was read; ``features`` fill in as the flow goes."""

    event: E
    partition: int
    offset: int
    features: dict[str, float] = {}
    rejected: str = ""  # why a decoded event is refused after all (a reused id): a dead letter
    appended_at: float | None = None  # the Kafka record's timestamp, POSIX seconds

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Compact pickling, for the flow's processes exchange every payment between its keyed
        steps: the event as its JSON (exact, offsets kept) and the features, when their names
        are the catalogue's first ones (as the steps add them), as packed doubles. About half
        the bytes and the time of pickling the struct (``tests/test_dataflow_steps.py``)."""
        features = self.features
        n = len(features)
        values: object = features
        if n <= len(FEATURE_NAMES) and tuple(features) == _PREFIXES[n]:
            values = array("d", features.values()).tobytes()
        kind = _KINDS[type(self.event)]
        event = _event_json(self.event)
        return _positioned, (kind, event, self.partition, self.offset, n, values, self.rejected,
                             self.appended_at)  # fmt: skip


def _positioned(
    kind: int,
    event: bytes,
    partition: int,
    offset: int,
    n: int,
    values: bytes | dict[str, float],
    rejected: str,
    appended_at: float | None,
) -> Positioned:
    if isinstance(values, bytes):
        packed = array("d")
        packed.frombytes(values)
        values = dict(zip(_PREFIXES[n], packed, strict=True))
    return Positioned(_EVENTS[kind](event), partition, offset, values, rejected, appended_at)


_PREFIXES = {n: FEATURE_NAMES[:n] for n in range(len(FEATURE_NAMES) + 1)}
_KINDS: dict[type, int] = {Payment: 0, FraudLabel: 1}
_EVENTS = (msgspec.json.Decoder(Payment).decode, msgspec.json.Decoder(FraudLabel).decode)
_event_json = msgspec.json.Encoder().encode


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message that broke the contract, with everything needed to find and replay it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: str
    received_at: datetime | None
    dead_lettered_at: datetime
    headers: bytes | None = None  # the record's headers (:func:`headers_json`), if it had any
    # What the message broke, named where the letter is made (the decoder's
    # ``InvalidMessageError.kind``, ``reused_id``): the dead-letter metric's ``reason``.
    kind: str = "invalid"


def letter_row(letter: DeadLetter) -> dict[str, Any]:
    """The ``dead_letters`` row of ``letter`` (its ``kind`` is the metric's, not a column)."""
    fields = msgspec.structs.asdict(letter)
    del fields["kind"]
    return dead_letter_row(**fields)


def headers_json(headers: list[tuple[str, bytes | None]] | None) -> bytes | None:
    """A record's headers, whole and in order, as JSON ``[[name, value], ...]``, each value in
    base64 (any bytes) or null; None for a record without headers.

    >>> headers_json([("trace", b"\\xff"), ("empty", None)])
    b'[["trace","/w=="],["empty",null]]'
    """
    return _json.encode([[name, value] for name, value in headers]) if headers else None


def record_time(message: RawMessage) -> datetime | None:
    """The Kafka record timestamp (create or log-append time), if the record has one."""
    if message.timestamp is None:
        return None
    kind, millis = message.timestamp
    if kind == 0 or millis < 0:  # TIMESTAMP_NOT_AVAILABLE
        return None
    try:  # a producer may set any 64-bit create time; past year 9999 there is no datetime
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _decode(decoder: PaymentDecoder | LabelDecoder, message: RawMessage) -> Positioned | DeadLetter:
    received_at = record_time(message)
    try:
        event = decoder.decode(message.value, received_at)
    except InvalidMessageError as exc:
        return DeadLetter(
            topic=message.topic or "",
            partition=message.partition if message.partition is not None else -1,
            offset=message.offset if message.offset is not None else -1,
            key=message.key,
            value=message.value,
            error=str(exc),
            received_at=received_at,
            dead_lettered_at=datetime.now(UTC),
            headers=headers_json(message.headers),
            kind=exc.kind,
        )
    return Positioned(
        event,
        message.partition or 0,
        message.offset or 0,
        appended_at=received_at.timestamp() if received_at is not None else None,
    )


class MessageDecoder:
    """Decodes payment or label messages into events or dead letters; one per flow."""

    def __init__(self, payments: PaymentDecoder, labels: LabelDecoder) -> None:
        self._payments = payments
        self._labels = labels

    def payment(self, message: RawMessage) -> Positioned[Payment] | DeadLetter:
        return _decode(self._payments, message)

    def label(self, message: RawMessage) -> Positioned[FraudLabel] | DeadLetter:
        return _decode(self._labels, message)


_json = msgspec.json.Encoder()


def rejected_letter(positioned: Positioned, topic: str) -> DeadLetter:
    """A decoded event refused after all (``rejected`` says why) as a dead letter; its value is
    the event re-encoded as JSON, its key the card id, its record time the record's."""
    appended = positioned.appended_at
    return DeadLetter(
        topic=topic,
        partition=positioned.partition,
        offset=positioned.offset,
        key=positioned.event.card_id.encode(),
        value=_json.encode(positioned.event),
        error=bounded(positioned.rejected),
        received_at=datetime.fromtimestamp(appended, UTC) if appended is not None else None,
        dead_lettered_at=datetime.now(UTC),
        kind="reused_id",
    )
