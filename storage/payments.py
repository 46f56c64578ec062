"""Transaction ids used twice: what the payments sink finds when a row's id is stored already.

A transaction id names one payment. When two messages carry one id, the stored row belongs to
the **first in Kafka order** (:func:`kafka_order`): within a partition the lower offset; across
partitions the earlier record timestamp (the broker's append time on the payments topic, which
``ops/create_topics.py`` makes ``LogAppendTime`` and the flow requires at start:
``dataflows/payments_topic.py``), then the lower partition, then the offset. The other message
is a dead letter.

The sinks of several workers write concurrently, and the card step sends two cards' payments to
different workers, so the later message may be stored first. A row MySQL skipped as stored
already is therefore settled here, in one transaction that locks the stored rows
(:func:`settle_reused_ids`). The stored row is one of:

- the same Kafka message (same partition and offset): a replay after a crash; nothing to do;
- the same payment from another message (every field of it, :data:`SAME_PAYMENT`): a
  harmless repeat, counted in ``payscore_repeated_payments_total``;
- another payment read *earlier*: this row is the dead letter;
- another payment read *later*: this row replaces it, and the stored one becomes the dead
  letter, in the same transaction. Unless a fraud label was claimed against the stored row
  already: a claimed label has been learned and fed into fraud rates, so the stored row stays
  and this row is the dead letter (the reason says so).

Whichever worker commits first and however often a batch is replayed, the rows settle on the
first message in Kafka order (replays change nothing: a replayed row finds itself or the winner).
The window: between the later message's commit and the earlier one's, the later payment is the
stored row, for as long as the sinks are apart (milliseconds; an epoch at most). What reads the
row in that window sees it: a label claimed then (then the stored row stays, as above), a
label of the earlier card rejected as ``card_mismatch``, and anything that reacts to a stored
row. The README's *Delivery and recovery* says what that means downstream.

The card step sees a reuse within a card's last 64 payments earlier, before the copy is folded
into any feature (:mod:`dataflows.keyed_history`); this module sees every other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from prometheus_client import Counter
from sqlalchemy import Connection, func, select, update

from features.bounded import bounded
from storage.engine import ConcurrentChangeError
from storage.tables import scored_payments

Row = Mapping[str, Any]
# What a payment says (every field of its message but the id): two messages of one id that
# agree on all of it are one payment sent twice. It compared the first six alone: a message of
# one id and card with another country, channel, device or place, past the card step's memory of
# the card's last 64 ids, was taken for a repeat and vanished.
SAME_PAYMENT = (
    "card_id", "merchant_id", "terminal_id", "amount_minor", "currency", "event_time",
    "utc_offset_minutes", "mcc", "channel", "country", "device_id", "latitude", "longitude",
)  # fmt: skip
# What a row stored before the payment's other fields were kept holds (its country is NULL).
SAME_PAYMENT_BEFORE = SAME_PAYMENT[:7]
REPEATS = Counter(
    "payscore_repeated_payments", "Payments stored already from another message, same content"
)


class Refusal(NamedTuple):
    """A row that becomes a dead letter, and why."""

    row: Row
    reason: str


def kafka_order(row: Row) -> tuple[bool, datetime, int, int]:
    """Sorts messages of one topic in the order this module calls Kafka's: record timestamp
    (none last), partition, offset. Within a partition whose timestamps follow its offsets (the
    broker's append time) that is offset order; :func:`read_before` makes it so in any case."""
    appended = row.get("appended_at")
    return appended is None, appended or datetime.min, row["kafka_partition"], row["kafka_offset"]


def read_before(a: Row, b: Row) -> bool:
    """Whether message ``a`` comes before ``b`` in Kafka order: offsets within a partition,
    :func:`kafka_order` across partitions."""
    if a["kafka_partition"] == b["kafka_partition"]:
        return a["kafka_offset"] < b["kafka_offset"]
    return kafka_order(a) < kafka_order(b)


def settle_reused_ids(connection: Connection, rows: Sequence[Row]) -> list[Refusal]:
    """In ``connection``'s transaction: the rows of ``rows`` (a batch in which MySQL skipped
    some as stored) whose id is stored for another payment, each settled by Kafka order (see
    the module docstring); stored rows replaced here. Returns the rows that become dead
    letters (of ``rows``, or stored ones they displaced), with the reason."""
    sp = scored_payments
    ids = sorted({row["transaction_id"] for row in rows})
    stored = {
        r["transaction_id"]: dict(r)
        for r in connection.execute(
            select(sp).where(sp.c.transaction_id.in_(ids)).with_for_update()
        ).mappings()
    }
    refused: list[Refusal] = []
    for row in sorted(rows, key=kafka_order):
        first = stored.get(row["transaction_id"])
        if first is None or _position(first) == _position(row):
            continue
        same = SAME_PAYMENT if first.get("country") is not None else SAME_PAYMENT_BEFORE
        if all(first[name] == row.get(name) for name in same):
            REPEATS.inc()
            continue
        if not read_before(row, first):
            refused.append(Refusal(row, _reason(row, first, "read later in Kafka order")))
            continue
        if first["label_is_fraud"] is not None:
            why = "read earlier in Kafka order, but a label was claimed for the stored one"
            refused.append(Refusal(row, _reason(row, first, why)))
            continue
        _replace(connection, first, row)
        refused.append(Refusal(first, _displaced(first, row)))
        stored[row["transaction_id"]] = {**row, "label_is_fraud": None}
    return refused


def _replace(connection: Connection, first: Row, row: Row) -> None:
    """Replace the stored payment ``first`` by ``row`` in place: every column but the id (the
    flow's account may change no other, ``storage/accounts.py``)."""
    sp = scored_payments
    values = {name: row[name] for name in row if name in sp.c and not sp.c[name].primary_key}
    done = connection.execute(
        update(sp)
        .where(
            sp.c.transaction_id == first["transaction_id"],
            sp.c.kafka_partition == first["kafka_partition"],
            sp.c.kafka_offset == first["kafka_offset"],
            sp.c.label_is_fraud.is_(None),
        )
        .values(**values, stored_at=func.sysdate(6))
    )
    if done.rowcount != 1:  # the row is locked: only a bug gets here, but never replace blind
        raise ConcurrentChangeError(
            f"the stored payment {first['transaction_id']!r} changed while it was replaced"
        )


def _position(row: Row) -> tuple[int, int]:
    return row["kafka_partition"], row["kafka_offset"]


def _described(row: Row) -> str:
    return (
        f"card {row['card_id']!r}, {row['amount_minor']} {row['currency']} at "
        f"{row['event_time'].isoformat()} UTC (partition {row['kafka_partition']}, offset "
        f"{row['kafka_offset']})"
    )


def _reason(row: Row, first: Row, why: str) -> str:
    return bounded(
        f"transaction id {row['transaction_id']!r} reused: stored for {_described(first)}; "
        f"this message, {why}: {_described(row)}"
    )


def _displaced(first: Row, row: Row) -> str:
    return bounded(
        f"transaction id {first['transaction_id']!r} reused: this payment, {_described(first)}, "
        f"was stored until the message read earlier in Kafka order, {_described(row)}, "
        "replaced it"
    )
