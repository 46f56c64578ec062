"""An analyst's verdict: an audit row in ``review_verdicts`` and a label message on the labels
topic, which the flow then claims and learns like any other label.

The order makes every delivered label auditable: the row is written first (with what the verdict
overrides: the model's decision and probability, and the labels and verdicts known then), the
label is produced, and the row gets the partition and offset the broker acknowledged, or the
delivery error. A row without a position is a verdict that did not reach the topic.

Exactly once: the flow's ledger keys each label message by its position (a replay of the same
message is recognised) and rejects a second label for a payment as ``duplicate`` (same verdict)
or ``contradicts`` (the other one); the first label read wins (:mod:`storage.labels`). A verdict
given twice is therefore learned once; a verdict that contradicts an earlier label is recorded
here and on the topic, and rejected by the flow as ``contradicts``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Engine, insert, update

from features.contract import FraudLabel
from review import queries
from review.forms import quoted
from review.publish import LabelPublisher
from review.users import User
from storage.rows import utc_naive
from storage.tables import review_verdicts

_encode = msgspec.json.Encoder().encode


class PaymentNotFoundError(LookupError):
    """No scored payment has this transaction id."""


class Verdict(msgspec.Struct, frozen=True):
    id: int
    label: FraudLabel
    partition: int | None
    offset: int | None
    error: str | None


def earlier(labels: list[Any], verdicts: list[Any]) -> str | None:
    """The labels and verdicts known for a payment, in words (None when there are none)."""
    lines = [
        f"label {r.topic}/{r.kafka_partition}/{r.kafka_offset}: "
        f"{'fraud' if r.is_fraud else 'legitimate'}, {r.status}"
        + (f" ({r.reason.partition(':')[0]})" if r.reason else "")
        + (f" by {r.analyst}" if r.analyst else "")
        + (f" (names {r.unverified_analyst}, unverified)" if r.unverified_analyst else "")
        for r in labels
    ] + [
        f"verdict #{r.id} by {r.analyst}: {'fraud' if r.is_fraud else 'legitimate'}"
        for r in verdicts
    ]
    return "\n".join(lines) or None


def give_verdict(
    engine: Engine,
    publisher: LabelPublisher,
    analyst: User,
    transaction_id: str,
    *,
    is_fraud: bool,
    note: str | None,
    now: datetime | None = None,
) -> Verdict:
    """Record ``analyst``'s verdict on the payment and send it as a label; see the module."""
    if not analyst.may_decide:
        raise PermissionError(f"user {analyst.name} is a {analyst.role}: may not give verdicts")
    moment = now or datetime.now(UTC)
    with engine.begin() as connection:
        payment = queries.payment(connection, transaction_id)
        if payment is None:
            raise PaymentNotFoundError(
                f"no scored payment with transaction id {quoted(transaction_id)}"
            )
        label = FraudLabel(
            transaction_id=payment.transaction_id,
            card_id=payment.card_id,
            is_fraud=is_fraud,
            reported_at=moment,
            analyst=analyst.name,
            note=note or None,
        )
        verdict_id = connection.execute(
            insert(review_verdicts).values(
                transaction_id=payment.transaction_id,
                card_id=payment.card_id,
                analyst=analyst.name,
                is_fraud=is_fraud,
                note=label.note,
                decided_at=utc_naive(moment),
                model_version=payment.model_version,
                model_decision=payment.model_decision or payment.decision,  # older rows: one
                model_probability=payment.fraud_probability,
                earlier_label_is_fraud=payment.label_is_fraud,
                earlier=earlier(
                    queries.labels_of(connection, transaction_id),
                    queries.verdicts_of(connection, transaction_id),
                ),
                labels_topic=publisher.topic,
            )
        ).inserted_primary_key[0]
    partition = offset = error = None
    try:
        partition, offset = publisher.publish(payment.card_id.encode(), _encode(label))
    except Exception as exc:  # recorded on the row, then shown to the analyst
        error = f"{type(exc).__name__}: {exc}"
    with engine.begin() as connection:
        connection.execute(
            update(review_verdicts)
            .where(review_verdicts.c.id == verdict_id)
            .values(kafka_partition=partition, kafka_offset=offset, delivery_error=error)
        )
    return Verdict(int(verdict_id), label, partition, offset, error)
