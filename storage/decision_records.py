"""A stored payment's decision as the systems that act on it receive it (the decisions topic).

:func:`stored_decisions` reads, in the payments sink's transaction, what ``scored_payments``
holds for some transaction ids, locking those rows until the transaction ends (so no other
worker's transaction changes them between this read and its commit); :class:`DecisionRecord` is
one payment's final decision and why, encoded as JSON by :func:`encode`. Rows stored before the
flow applied rules have no ``model_decision``: their decision was the model's.

>>> record = DecisionRecord(
...     "t-1", "decline", "approve", 0.02, "burst-1h", ("burst-1h",), (),
...     ("decline by rule burst-1h (priority 10)",), ("card_count_1h",), "v00001", 4,
...     "2026-11-02T08:30:00+00:00", 0, 17, None, "2026-11-02T08:30:01.250000+00:00",
... )
>>> decode(encode(record)) == record
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

Read = Callable[[str, Sequence[Any]], Sequence[Sequence[Any]]]
IDS_A_QUERY: Final = 1000


class DecisionRecord(msgspec.Struct, frozen=True, array_like=False):
    """One payment's decision on the decisions topic (keyed by ``transaction_id``)."""

    transaction_id: str
    decision: str  # the final decision: approve, review or decline
    model_decision: str  # the model's own
    fraud_probability: float
    decided_by: str  # a rule id, or "model"
    rules_fired: tuple[str, ...]  # active rules that fired, the deciding one first
    shadow_hits: tuple[str, ...]  # shadow rules that would have fired
    reasons: tuple[str, ...]  # words naming the rules (empty: the model alone)
    reason_codes: tuple[str, ...]  # features that pushed the model most (empty: approved)
    model_version: str
    ruleset_version: int | None  # None: stored before the flow applied rules
    event_time: str  # UTC, ISO 8601
    kafka_partition: int  # where the payment was read
    kafka_offset: int
    appended_at: str | None  # the payment's Kafka record time, UTC
    stored_at: str | None  # when MySQL wrote the row, UTC


COLUMNS: Final = (
    "transaction_id",
    "decision",
    "model_decision",
    "fraud_probability",
    "decided_by",
    "rules_fired",
    "shadow_hits",
    "rule_reasons",
    "reason_codes",
    "model_version",
    "ruleset_version",
    "event_time",
    "kafka_partition",
    "kafka_offset",
    "appended_at",
    "stored_at",
)


def _json_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes | bytearray):
        value = msgspec.json.decode(value)
    return tuple(str(v) for v in value)


def _utc(moment: datetime | None) -> str | None:
    return moment.replace(tzinfo=UTC).isoformat() if moment is not None else None


def record_of(row: Sequence[Any]) -> DecisionRecord:
    """A row of :data:`COLUMNS`, as read from ``scored_payments``."""
    (txid, decision, model_decision, probability, decided_by, fired, shadow, reasons, codes,
     version, ruleset, event_time, partition, offset, appended, stored) = row  # fmt: skip
    return DecisionRecord(
        transaction_id=str(txid),
        decision=str(decision),
        model_decision=str(model_decision or decision),
        fraud_probability=float(probability),
        decided_by=str(decided_by or "model"),
        rules_fired=_json_list(fired),
        shadow_hits=_json_list(shadow),
        reasons=_json_list(reasons),
        reason_codes=_json_list(codes),
        model_version=str(version),
        ruleset_version=int(ruleset) if ruleset is not None else None,
        event_time=_utc(event_time) or "",
        kafka_partition=int(partition),
        kafka_offset=int(offset),
        appended_at=_utc(appended),
        stored_at=_utc(stored),
    )


def stored_decisions(read: Read, transaction_ids: Sequence[str]) -> list[DecisionRecord]:
    """What ``scored_payments`` holds for ``transaction_ids`` (those stored; each once, by id),
    read with ``read`` in the caller's transaction and locked until it ends."""
    ids = sorted(set(transaction_ids))
    out: list[DecisionRecord] = []
    for start in range(0, len(ids), IDS_A_QUERY):
        chunk = ids[start : start + IDS_A_QUERY]
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM scored_payments "
            f"WHERE transaction_id IN ({', '.join(['%s'] * len(chunk))}) "
            "ORDER BY transaction_id LOCK IN SHARE MODE"
        )
        out += [record_of(row) for row in read(sql, chunk)]
    return out


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DecisionRecord)


def encode(record: DecisionRecord) -> bytes:
    return _encoder.encode(record)


def decode(value: bytes) -> DecisionRecord:
    return _decoder.decode(value)
