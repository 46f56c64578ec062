"""Messages on disk: the JSON Lines envelope of the samples, generated histories and the producer.

One JSON object per line, holding the exact bytes of one Kafka message and what they are::

    {"kind": "valid", "event": "payment", "key": "s7-c0000042", "value": "{\\"amount_minor\\": ..."}
    {"kind": "malformed", "reason": "truncated JSON", "key": null, "value": "{\\"transaction_id"}
    {"kind": "malformed", "reason": "not UTF-8", "key": null, "value_base64": "/w=="}

- ``kind``: ``"valid"`` (meets the contract) or ``"malformed"`` (must end as a dead letter);
  a malformed line says why in ``reason``.
- ``event``: ``"payment"`` (the default) or ``"label"``: which topic the message goes to.
- ``key``: the record key as text (the card id), or ``null`` for none.
- ``value``: the message as a JSON string when it is UTF-8 text; ``value_base64`` otherwise;
  ``"value": null`` is a record without a value (a tombstone).
- ``is_fraud`` and ``scenario`` (optional): the ground truth of a generated payment, for
  evaluation only; the producer never sends them.

>>> line = dump_line(SampleMessage(key=None, value=b"\\xff", kind="malformed", reason="not UTF-8"))
>>> line
b'{"kind":"malformed","key":null,"value_base64":"/w==","reason":"not UTF-8"}'
>>> parse_line(line).value
b'\\xff'
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from features.bounded import bounded
from features.contract import FraudLabel, Payment

Kind = Literal["valid", "malformed"]
Event = Literal["payment", "label"]


class SampleMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One Kafka message as stored in a sample or history file."""

    key: str | None
    value: bytes | None
    kind: Kind
    reason: str | None = None
    event: Event = "payment"
    is_fraud: bool | None = None
    scenario: str | None = None

    @property
    def key_bytes(self) -> bytes | None:
        return None if self.key is None else self.key.encode()


class _Envelope(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    kind: Kind
    event: Event = "payment"
    key: str | None  # required, so that a missing key is written as null
    value: str | UnsetType | None = UNSET
    value_base64: str | UnsetType = UNSET
    reason: str | None = None
    is_fraud: bool | None = None
    scenario: str | None = None


_decoder = msgspec.json.Decoder(_Envelope)
_encoder = msgspec.json.Encoder()


def parse_line(line: bytes) -> SampleMessage:
    """One envelope line as a :class:`SampleMessage`; ``ValueError`` saying what is wrong."""
    try:
        env = _decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a sample envelope: {exc}") from None
    if (env.value is UNSET) == (env.value_base64 is UNSET):
        raise ValueError('an envelope needs exactly one of "value" and "value_base64"')
    if (env.kind == "malformed") != bool(env.reason):
        raise ValueError(
            f'a "malformed" envelope needs a "reason" and a "valid" one has none; '
            f"got kind={env.kind!r}, reason={env.reason!r}"
        )
    if isinstance(env.value_base64, str):
        try:
            value: bytes | None = base64.b64decode(env.value_base64, validate=True)
        except binascii.Error as exc:
            raise ValueError(f'"value_base64" is not base64: {exc}') from None
    else:
        value = None if env.value is None or env.value is UNSET else env.value.encode()
    return SampleMessage(
        key=env.key,
        value=value,
        kind=env.kind,
        reason=env.reason,
        event=env.event,
        is_fraud=env.is_fraud,
        scenario=env.scenario,
    )


def dump_line(message: SampleMessage) -> bytes:
    """``message`` as one envelope line (without the newline)."""
    value: str | UnsetType | None = UNSET
    value_base64: str | UnsetType = UNSET
    if message.value is None:
        value = None
    else:
        try:
            value = message.value.decode("utf-8")
        except UnicodeDecodeError:
            value_base64 = base64.b64encode(message.value).decode("ascii")
    env = _Envelope(
        kind=message.kind,
        event=message.event,
        key=message.key,
        value=value,
        value_base64=value_base64,
        reason=message.reason,
        is_fraud=message.is_fraud,
        scenario=message.scenario,
    )
    return _encoder.encode(env)


# The longest envelope line read: a message (Kafka's default limit is 1 MiB; the hostile corpus
# holds 2 MB ones) in base64, and room to spare. A longer line (``/dev/zero``, a file without
# line breaks) was read whole until memory ran out.
MAX_LINE_BYTES = 64 * 1024 * 1024


def iter_samples(path: str | Path, *, max_line: int = MAX_LINE_BYTES) -> Iterator[SampleMessage]:
    """The messages of a JSON Lines envelope file, one at a time; blank lines are skipped; a line
    longer than ``max_line`` bytes is refused (ValueError naming the file and line)."""
    with open(path, "rb") as f:
        for number, line in enumerate(iter(lambda: f.readline(max_line + 1), b""), start=1):
            if len(line) > max_line:
                raise ValueError(
                    f"{bounded(str(path), 300)}:{number}: a line longer than {max_line:,} bytes; "
                    "expected one sample envelope (JSON) a line"
                )
            if not line.strip():
                continue
            try:
                yield parse_line(line)
            except ValueError as exc:
                raise ValueError(
                    f"{bounded(str(path), 300)}:{number}: {bounded(str(exc), 500)}"
                ) from None


def load_samples(path: str | Path) -> list[SampleMessage]:
    """All messages of a JSON Lines envelope file."""
    return list(iter_samples(path))


def write_samples(path: str | Path, messages: Iterable[SampleMessage]) -> int:
    """Write ``messages`` as envelope lines to ``path``; returns how many."""
    count = 0
    with open(path, "wb") as f:
        for message in messages:
            f.write(dump_line(message) + b"\n")
            count += 1
    return count


_event_encoder = msgspec.json.Encoder()


def from_event(event: Payment | FraudLabel, truth: str | UnsetType | None = UNSET) -> SampleMessage:
    """A valid message carrying ``event``, keyed by its card; ``truth`` is a payment's scenario
    (``None`` for a legitimate one) when known."""
    is_payment = isinstance(event, Payment)
    known = is_payment and truth is not UNSET
    return SampleMessage(
        key=event.card_id,
        value=_event_encoder.encode(event),
        kind="valid",
        event="payment" if is_payment else "label",
        is_fraud=(truth is not None) if known else None,
        scenario=truth if known and isinstance(truth, str) else None,
    )
