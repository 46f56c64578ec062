"""Implicit negatives in MySQL: a payment nobody reported within the label delay is claimed as
legitimate, once, with its own ledger row.

Banks report frauds days to weeks late and almost never report "legitimate"
(:mod:`model_state.label_kinds`). So a stored payment whose ``event_time`` is at or before the
*cutoff* (the flow's event-time clock minus ``PAYSCORE_LABEL_DELAY_DAYS``) and that has no label
yet is claimed, in one transaction (:func:`claim_implicit`):

- its ``scored_payments`` row is marked ``label_is_fraud = 0``, ``label_kind = 'implicit'`` and
  ``label_reported_at = event_time + delay`` (so a retrain reads it as legitimate), only if it is
  still unlabelled and still the row that was read (the label join claims concurrently: if it
  came first, the transaction rolls back and runs again,
  :class:`~storage.engine.ConcurrentChangeError`);
- its ``implicit_labels`` row is written, keyed by the transaction id and the kind, with the
  number of the claim (1, 2, ... one per transaction that claimed rows) and, when negative
  downsampling does not keep it, the reason ``sampled_out`` (the learner is not given it).

**Replays.** The step that claims (:mod:`dataflows.implicit_negatives`) keeps in its snapshot
the number of the last claim it handed on. After a crash its snapshot is older than MySQL:
the claims made after it are handed on again (:func:`claims_after`), with the
``learned_version`` the version sink recorded for them, so that the learner skips those a
version it resumed from learned already, exactly as for a label message. The version sink names the
version that learned each (:func:`storage.versions.record_version`). A fraud reported later for
such a payment is a *correction* (:mod:`storage.labels`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Connection

from model_state.label_kinds import LabelKind, learn_weight
from storage.engine import ConcurrentChangeError
from storage.labels import SAMPLED_OUT, LabelledPayment, posix
from storage.rows import utc_naive
from storage.tables import implicit_labels, scored_payments

IMPLICIT = LabelKind.IMPLICIT.value
_SP, _IL = scored_payments.name, implicit_labels.name
_features = msgspec.json.Decoder(dict[str, float]).decode
_PAYMENT = (
    "transaction_id, card_id, merchant_id, terminal_id, event_time, features, model_version, "
    "kafka_partition, kafka_offset"
)


class ImplicitClaim(msgspec.Struct, frozen=True):
    """What one claim did: the implicit negatives for the learner, and how many rows it
    claimed (those and the ones sampled out); ``full``: it claimed as many as it may at once,
    so more may be due."""

    learnable: list[LabelledPayment]
    claimed: int
    sampled_out: int
    full: bool


def implicit_label(
    row: Any,
    *,
    delay: timedelta,
    weight: float,
    learned_version: str | None = None,
) -> LabelledPayment:
    """The implicit negative of a stored payment ``row`` (``event_time`` naive UTC): legitimate,
    reported when its label delay ran out, read from no labels topic (partition and offset -1).

    >>> from types import SimpleNamespace as Row
    >>> label = implicit_label(
    ...     Row(transaction_id="t", card_id="c", merchant_id="m", terminal_id="p",
    ...         event_time=datetime(2026, 1, 1), features={"x": 1.0}, model_version="v00001"),
    ...     delay=timedelta(days=30), weight=4.0)
    >>> label.kind.value, label.is_fraud, label.weight, label.reported_at - label.payment_time
    ('implicit', False, 4.0, 2592000.0)
    """
    payment_time = posix(row.event_time)
    return LabelledPayment(
        transaction_id=row.transaction_id,
        card_id=row.card_id,
        merchant_id=row.merchant_id,
        terminal_id=row.terminal_id,
        payment_time=payment_time,
        reported_at=payment_time + delay.total_seconds(),
        is_fraud=False,
        features=row.features,
        scored_by=row.model_version,
        learned_version=learned_version,
        kind=LabelKind.IMPLICIT,
        weight=weight,
    )


class _Stored(msgspec.Struct, frozen=True):
    transaction_id: str
    card_id: str
    merchant_id: str
    terminal_id: str
    event_time: datetime
    features: dict[str, float]
    model_version: str
    kafka_partition: int
    kafka_offset: int


def claim_implicit(
    connection: Connection,
    *,
    claim: int,
    cutoff: datetime,
    delay: timedelta,
    sample_rate: float,
    limit: int,
    now: datetime,
) -> ImplicitClaim:
    """Claim as claim number ``claim`` up to ``limit`` unlabelled payments made at or before
    ``cutoff`` (oldest first); call in a transaction. Nothing due: nothing written."""
    sql = connection.exec_driver_sql
    due = [
        _Stored(*row[:5], _features(row[5]), *row[6:])
        for row in sql(
            f"SELECT {_PAYMENT} FROM {_SP} WHERE label_is_fraud IS NULL AND event_time <= %s "
            "ORDER BY event_time, transaction_id LIMIT %s",
            (utc_naive(cutoff), limit),
        )
    ]
    if not due:
        return ImplicitClaim([], 0, 0, False)
    ids = [p.transaction_id for p in due]
    marked = sql(
        f"UPDATE {_SP} SET label_is_fraud = 0, label_kind = %s, "
        "label_reported_at = DATE_ADD(event_time, INTERVAL %s MICROSECOND) "
        f"WHERE transaction_id IN ({_marks(len(ids))}) AND label_is_fraud IS NULL "
        "AND (transaction_id, kafka_partition, kafka_offset) IN "
        f"({', '.join(['(%s, %s, %s)'] * len(due))})",
        (
            IMPLICIT,
            delay // timedelta(microseconds=1),
            *ids,
            *(x for p in due for x in (p.transaction_id, p.kafka_partition, p.kafka_offset)),
        ),
    )
    if marked.rowcount != len(due):  # a label or a replacement came first: again
        raise ConcurrentChangeError(
            f"{len(due) - marked.rowcount} of {len(due)} payments due as implicit negatives "
            "were labelled or replaced by another transaction during this claim"
        )
    learnable, rows = [], []
    moment, through = utc_naive(now), utc_naive(cutoff)
    for p in due:
        weight = learn_weight(is_fraud=False, transaction_id=p.transaction_id, rate=sample_rate)
        reason = None
        if weight is None:
            reason = (
                f"{SAMPLED_OUT}: negative downsampling at rate {sample_rate:g} does not keep it"
            )
        else:
            learnable.append(implicit_label(p, delay=delay, weight=weight))
        rows.append(
            (p.transaction_id, IMPLICIT, p.card_id, p.event_time, claim, through, moment, reason)
        )
    sql(
        f"INSERT INTO {_IL} (transaction_id, kind, card_id, event_time, claim, claimed_through, "
        f"claimed_at, reason) VALUES {', '.join([f'({_marks(8)})'] * len(rows))}",
        tuple(x for row in rows for x in row),
    )
    return ImplicitClaim(learnable, len(due), len(due) - len(learnable), len(due) >= limit)


def claims_after(
    connection: Connection,
    after: int,
    *,
    delay: timedelta,
    sample_rate: float,
    claims: int = 4,
    unlearned_only: bool = False,
) -> tuple[list[LabelledPayment], int | None]:
    """The implicit negatives of the next ``claims`` claims numbered above ``after``, for the
    learner again (those sampled out stay out; a kept one weighs ``1 / sample_rate``), and the
    last claim number read (None: there is none above ``after``). ``unlearned_only``: leave out
    those a recorded version learned (a learner built anew starts from the newest recorded
    version, which holds them all)."""
    sql = connection.exec_driver_sql
    numbers = [
        n
        for (n,) in sql(
            f"SELECT DISTINCT claim FROM {_IL} WHERE kind = %s AND claim > %s "
            "ORDER BY claim LIMIT %s",
            (IMPLICIT, after, claims),
        )
    ]
    if not numbers:
        return [], None
    learned_filter = " AND i.learned_version IS NULL" if unlearned_only else ""
    rows = sql(
        "SELECT p.transaction_id, p.card_id, p.merchant_id, p.terminal_id, p.event_time, "
        "p.features, p.model_version, i.learned_version "
        f"FROM {_IL} i JOIN {_SP} p ON p.transaction_id = i.transaction_id "
        "WHERE i.kind = %s AND i.claim > %s AND i.claim <= %s "
        f"AND (i.reason IS NULL OR i.reason NOT LIKE %s){learned_filter} "
        "ORDER BY i.claim, i.transaction_id",
        (IMPLICIT, after, numbers[-1], f"{SAMPLED_OUT}%"),
    ).all()
    weight = 1.0 / sample_rate
    out = [
        implicit_label(
            _Stored(*row[:5], _features(row[5]), row[6], -1, -1),
            delay=delay,
            weight=weight,
            learned_version=row[7],
        )
        for row in rows
    ]
    return out, numbers[-1]


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)
