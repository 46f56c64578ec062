"""What the review pages read from MySQL: the queue, one payment, its card, its labels.

**The queue** is the payments of the chosen decisions (``review`` by default, ``decline`` on
request), most likely fraud first, filtered by event time, merchant and decision, a page at a
time. Pages are keyset pages: the next page starts after the last row shown, by
``(fraud_probability, transaction_id)`` descending. Each decision is read with its own query,
served in index order by ``ix_scored_payments_queue`` (``decision, fraud_probability,
transaction_id``) or, with a merchant, ``ix_scored_payments_merchant_queue``: MySQL reads the
index backwards from the cursor and stops after a page, however many payments are stored. Two
decisions are two such reads, merged here. :func:`explain_queue` shows the plan.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Select, and_, or_, select, text

from features.bounded import bounded
from storage.tables import fraud_labels, review_verdicts, scored_payments

DECISIONS = ("review", "decline", "approve")
PAGE_SIZE = 50
CARD_HISTORY = 20


class Cursor(msgspec.Struct, frozen=True):
    """Where a page starts: after this row (the last of the page before).

    Its text, ``PROBABILITY~TRANSACTION_ID``, comes back from the client: :meth:`decode` takes
    only a decimal probability from 0 to 1 and a transaction id of the contract, so nothing
    else (``nan``, ``inf``, ``1e309``, a 10 kB id) reaches MySQL.
    """

    probability: float
    transaction_id: str

    def encode(self) -> str:
        return f"{self.probability!r}~{self.transaction_id}"

    @classmethod
    def decode(cls, text_: str) -> Cursor:
        """The cursor ``text_`` encodes, or ``ValueError`` saying what was expected."""
        probability, sep, transaction_id = text_.partition("~")
        if not sep or not _DECIMAL.match(probability) or not _IDENTIFIER.match(transaction_id):
            raise ValueError(
                f"page cursor {text_[:80]!r}: expected 'PROBABILITY~TRANSACTION_ID', a decimal "
                "number and a transaction id of 1-64 characters of A-Za-z0-9_.:-"
            )
        value = float(probability)
        if not 0.0 <= value <= 1.0:  # 1e309 is a decimal too, and inf as a float
            raise ValueError(
                f"page cursor {text_[:80]!r}: expected a probability from 0 to 1, "
                f"got {probability[:40]}"
            )
        return cls(value, transaction_id)


# What Cursor.encode writes: repr() of a float from 0 to 1 (0.25, 1e-05, 5e-324), and an id.
_DECIMAL = re.compile(r"\A[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?\Z")
_IDENTIFIER = re.compile(r"\A[A-Za-z0-9_.:\-]{1,64}\Z")


class QueueFilter(msgspec.Struct, frozen=True, kw_only=True):
    decisions: tuple[str, ...] = ("review",)
    since: datetime | None = None  # event time, naive UTC, inclusive
    until: datetime | None = None  # exclusive
    merchant_id: str | None = None
    after: Cursor | None = None
    limit: int = PAGE_SIZE

    def __post_init__(self) -> None:
        unknown = [d for d in self.decisions if d not in DECISIONS]
        if unknown or not self.decisions:
            shown = ", ".join(bounded(d, 64) for d in unknown[:3]) if unknown else "none"
            more = f" and {len(unknown) - 3:,} more" if len(unknown) > 3 else ""
            raise ValueError(f"decision {shown}{more}: expected some of {DECISIONS}")
        if not 1 <= self.limit <= 500:
            raise ValueError(f"page size {self.limit}: expected 1 to 500")


class QueuePage(msgspec.Struct, frozen=True):
    rows: list[Any]
    next: Cursor | None  # None: this is the last page


_QUEUE_COLUMNS = (
    scored_payments.c.transaction_id,
    scored_payments.c.card_id,
    scored_payments.c.merchant_id,
    scored_payments.c.amount_minor,
    scored_payments.c.currency,
    scored_payments.c.event_time,
    scored_payments.c.fraud_probability,
    scored_payments.c.decision,
    scored_payments.c.decided_by,  # a rule id, "model", or NULL (stored before the rules)
    scored_payments.c.reason_codes,
    scored_payments.c.model_version,
    scored_payments.c.label_is_fraud,
)


def queue_query(decision: str, where: QueueFilter) -> Select[Any]:
    """One decision's part of a page, in the order of its index."""
    sp = scored_payments
    query = select(*_QUEUE_COLUMNS).where(sp.c.decision == decision)
    if where.merchant_id:
        query = query.where(sp.c.merchant_id == where.merchant_id)
    if where.since is not None:
        query = query.where(sp.c.event_time >= where.since)
    if where.until is not None:
        query = query.where(sp.c.event_time < where.until)
    if where.after is not None:
        p, t = where.after.probability, where.after.transaction_id
        query = query.where(
            or_(
                sp.c.fraud_probability < p,
                and_(sp.c.fraud_probability == p, sp.c.transaction_id < t),
            )
        )
    return query.order_by(sp.c.fraud_probability.desc(), sp.c.transaction_id.desc()).limit(
        where.limit + 1
    )


def queue(connection: Connection, where: QueueFilter) -> QueuePage:
    """One page of the queue, and the cursor of the next page if there is one."""
    rows: list[Any] = []
    for decision in where.decisions:
        rows += connection.execute(queue_query(decision, where)).all()
    rows.sort(key=lambda r: (r.fraud_probability, r.transaction_id), reverse=True)
    page = rows[: where.limit]
    more = len(rows) > where.limit
    last = page[-1] if page else None
    return QueuePage(
        page, Cursor(last.fraud_probability, last.transaction_id) if more and last else None
    )


def explain_queue(connection: Connection, where: QueueFilter) -> list[dict[str, Any]]:
    """MySQL's plan for each decision's query of a page (``EXPLAIN``), as rows."""
    plans = []
    for decision in where.decisions:
        compiled = queue_query(decision, where).compile(
            dialect=connection.dialect, compile_kwargs={"literal_binds": True}
        )
        plans += [dict(r._mapping) for r in connection.execute(text(f"EXPLAIN {compiled}"))]
    return plans


def payment(connection: Connection, transaction_id: str) -> Any | None:
    """Every stored column of one scored payment, or None."""
    return connection.execute(
        select(scored_payments).where(scored_payments.c.transaction_id == transaction_id)
    ).first()


def card_history(connection: Connection, card_id: str, limit: int = CARD_HISTORY) -> list[Any]:
    """The card's most recent payments, newest first, with their scores."""
    sp = scored_payments
    return connection.execute(
        select(*_QUEUE_COLUMNS)
        .where(sp.c.card_id == card_id)
        .order_by(sp.c.event_time.desc(), sp.c.transaction_id.desc())
        .limit(limit)
    ).all()


def labels_of(connection: Connection, transaction_id: str) -> list[Any]:
    """Every label message read for the payment (``fraud_labels``), in the order first seen."""
    fl = fraud_labels
    return connection.execute(
        select(fl)
        .where(fl.c.transaction_id == transaction_id)
        .order_by(fl.c.first_seen_at, fl.c.topic, fl.c.kafka_partition, fl.c.kafka_offset)
    ).all()


def verdicts_of(connection: Connection, transaction_id: str) -> list[Any]:
    """Every verdict given on the payment in the review queue, oldest first."""
    rv = review_verdicts
    return connection.execute(
        select(rv).where(rv.c.transaction_id == transaction_id).order_by(rv.c.id)
    ).all()


def stored_reasons(connection: Connection, transaction_ids: Sequence[str]) -> dict[str, Any]:
    """Of the payments ``transaction_ids``, what their reason codes are read or computed from:
    decision, stored reason codes, model version and features, by transaction id (those not
    stored are left out)."""
    sp = scored_payments
    if not transaction_ids:
        return {}
    rows = connection.execute(
        select(
            sp.c.transaction_id, sp.c.decision, sp.c.reason_codes, sp.c.model_version, sp.c.features
        ).where(sp.c.transaction_id.in_(sorted(set(transaction_ids))))
    )
    return {r.transaction_id: r for r in rows}
