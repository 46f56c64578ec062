"""Fraud labels meet their scored payments in MySQL, and each is claimed once.

A label is joined with the row the flow stored when it scored the payment: the features used at
that moment (point in time, never recomputed), the merchant, the terminal and the event time. So
the flow keeps no per-payment memory while it waits days or weeks for labels.

:func:`claim_labels` does this for a batch in one transaction: it reads the rows of the batch's
transactions (locking them), sets ``label_is_fraud`` and ``label_reported_at`` on those that had
no label yet, and returns them. A label for a payment that already has one, or whose card differs
from the payment's, or whose payment is not stored, is returned separately and never learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
from sqlalchemy import Connection, case, select, update

from features.contract import FraudLabel
from storage.rows import utc_naive
from storage.tables import scored_payments


class LabelledPayment(msgspec.Struct, frozen=True, kw_only=True):
    """A label joined with what was known when its payment was scored."""

    transaction_id: str
    card_id: str
    merchant_id: str
    terminal_id: str
    payment_time: float  # POSIX seconds
    reported_at: float  # POSIX seconds
    is_fraud: bool
    features: dict[str, float]
    scored_by: str  # the model version that scored the payment


class Claimed(msgspec.Struct, frozen=True):
    """Outcome of :func:`claim_labels` for one batch."""

    learnable: list[LabelledPayment]
    already_labelled: list[FraudLabel]
    card_mismatch: list[FraudLabel]
    not_found: list[FraudLabel]


def claim_labels(connection: Connection, labels: Sequence[FraudLabel]) -> Claimed:
    """Join ``labels`` with their stored payments and mark them labelled; call in a transaction.

    Duplicates within the batch: the first label of a transaction is claimed, later ones count as
    already labelled. The caller must not claim labels of one card concurrently (the flow keys
    this step by card, so one worker claims a card's labels, one batch after another); then no
    lock is needed for the read, and the update touches only rows that exist.
    """
    sp = scored_payments
    ids = sorted({label.transaction_id for label in labels})
    rows = {
        row.transaction_id: row
        for row in connection.execute(
            select(
                sp.c.transaction_id,
                sp.c.card_id,
                sp.c.merchant_id,
                sp.c.terminal_id,
                sp.c.event_time,
                sp.c.features,
                sp.c.model_version,
                sp.c.label_is_fraud,
            ).where(sp.c.transaction_id.in_(ids))
        )
    }
    claimed: dict[str, FraudLabel] = {}
    outcome = Claimed([], [], [], [])
    for label in labels:
        row = rows.get(label.transaction_id)
        if row is None:
            outcome.not_found.append(label)
        elif row.card_id != label.card_id:
            outcome.card_mismatch.append(label)
        elif row.label_is_fraud is not None or label.transaction_id in claimed:
            outcome.already_labelled.append(label)
        else:
            claimed[label.transaction_id] = label
            outcome.learnable.append(
                LabelledPayment(
                    transaction_id=row.transaction_id,
                    card_id=row.card_id,
                    merchant_id=row.merchant_id,
                    terminal_id=row.terminal_id,
                    payment_time=_posix(row.event_time),
                    reported_at=label.reported_at.timestamp(),
                    is_fraud=label.is_fraud,
                    features=row.features,
                    scored_by=row.model_version,
                )
            )
    if claimed:
        # One statement for the batch (an executemany of UPDATEs is one round trip per row).
        key = sp.c.transaction_id
        connection.execute(
            update(sp)
            .where(key.in_(list(claimed)), sp.c.label_is_fraud.is_(None))
            .values(
                label_is_fraud=case({t: lab.is_fraud for t, lab in claimed.items()}, value=key),
                label_reported_at=case(
                    {t: utc_naive(lab.reported_at) for t, lab in claimed.items()}, value=key
                ),
            )
        )
    return outcome


def _posix(naive_utc: datetime) -> float:
    return (naive_utc - datetime(1970, 1, 1)).total_seconds()


class StoredExample(msgspec.Struct, frozen=True):
    """A labelled payment as stored: when it happened, the features it was scored with, and
    its label."""

    event_time: datetime  # naive UTC, as stored
    features: dict[str, float]
    is_fraud: bool


def labelled_since(connection: Connection, since: datetime) -> list[StoredExample]:
    """Every stored payment with a label and an event time at or after ``since``, oldest first.

    The rows a retrain learns from (:mod:`model_state.retrain`): features as they were when the
    payment was scored, never recomputed.
    """
    sp = scored_payments
    rows = connection.execute(
        select(sp.c.event_time, sp.c.features, sp.c.label_is_fraud)
        .where(sp.c.label_is_fraud.is_not(None), sp.c.event_time >= utc_naive(since))
        .order_by(sp.c.event_time, sp.c.transaction_id)
    )
    return [StoredExample(r.event_time, r.features, bool(r.label_is_fraud)) for r in rows]
