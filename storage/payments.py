"""Transaction ids used twice: what the payments sink finds when a row's id is stored already.

The sink keeps the first row of a transaction id (first write wins). A later row with that id is
one of three things, told apart by the stored row:

- the same Kafka message (same partition and offset): a replay after a crash; nothing to say;
- another message with the same payment (card, merchant, terminal, amount, currency and event
  time): a harmless repeat, counted in ``payscore_duplicate_payments_total``;
- another payment: the id was reused. :func:`reused_ids` returns it with a reason, and the sink
  makes it a dead letter, so that it ends somewhere one can query.

This is checked only for batches in which MySQL skipped a row, so it costs nothing otherwise.
It sees every reuse whose first payment is stored; the card step sees a reuse within a card's
last 64 payments earlier, before the copy is folded into any feature
(:mod:`dataflows.keyed_history`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter
from sqlalchemy import Connection, select

from storage.tables import scored_payments

SAME_PAYMENT = ("card_id", "merchant_id", "terminal_id", "amount_minor", "currency", "event_time")
REPEATS = Counter(
    "payscore_repeated_payments", "Payments stored already from another message, same content"
)


def reused_ids(
    connection: Connection, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], str]]:
    """The rows whose transaction id is stored for another payment, each with the reason."""
    sp = scored_payments
    columns = [sp.c[name] for name in ("transaction_id", *SAME_PAYMENT)]
    stored = {
        r.transaction_id: r
        for r in connection.execute(
            select(*columns, sp.c.kafka_partition, sp.c.kafka_offset).where(
                sp.c.transaction_id.in_([row["transaction_id"] for row in rows])
            )
        )
    }
    reused = []
    for row in rows:
        first = stored.get(row["transaction_id"])
        if first is None or (first.kafka_partition, first.kafka_offset) == (
            row["kafka_partition"],
            row["kafka_offset"],
        ):
            continue
        if all(getattr(first, name) == row[name] for name in SAME_PAYMENT):
            REPEATS.inc()
            continue
        reused.append(
            (
                row,
                f"transaction id {row['transaction_id']!r} reused: stored for card "
                f"{first.card_id!r}, {first.amount_minor} {first.currency} at "
                f"{first.event_time.isoformat()} UTC (partition {first.kafka_partition}, offset "
                f"{first.kafka_offset}); this message: card {row['card_id']!r}, "
                f"{row['amount_minor']} {row['currency']} at {row['event_time'].isoformat()} UTC",
            )
        )
    return reused
