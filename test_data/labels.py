"""When the truth arrives: label report times, late payments, and the order messages reach Kafka.

A bank learns of fraud when the cardholder disputes it. All fraudulent payments of one incident on
one card are reported together, a lognormal delay (see :class:`~test_data.spec.LabelDelays`)
after the last of them, but each within ``fraud_min_days`` to ``fraud_max_days`` of its own
payment. Legitimate payments are confirmed in the nightly batch at 02:00 UTC once
they have matured; a ``legit_fraction`` of them is labelled at all. A label never reaches Kafka
before its payment does.

Payments reach Kafka at their event time, except a ``late_fraction`` of them that comes up to
``late_max_minutes`` later (a terminal that was offline, a batching acquirer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from test_data.columns import LEGITIMATE, BoolArray, IntArray, Payments
from test_data.spec import SimulationSpec
from test_data.timeline import DAY_MS, HOUR_MS

NIGHTLY_BATCH_HOUR_UTC = 2
MIN_LATE_MS = 1_000


@dataclass(frozen=True, eq=False)
class Labels:
    """Labels as columns, in report order: which payment row, when reported, fraud or not."""

    payment: IntArray
    reported_ms: IntArray
    is_fraud: BoolArray

    def __len__(self) -> int:
        return len(self.payment)


def arrival_times(
    spec: SimulationSpec, at_ms: IntArray, rng: np.random.Generator
) -> tuple[IntArray, BoolArray]:
    """When each payment reaches Kafka, and which of them are late."""
    late = rng.random(len(at_ms)) < spec.late_fraction
    max_ms = int(spec.late_max_minutes * 60_000)
    if max_ms <= MIN_LATE_MS:
        return at_ms.copy(), np.zeros(len(at_ms), dtype=bool)
    delay = rng.integers(MIN_LATE_MS, max_ms + 1, len(at_ms))
    return np.where(late, at_ms + delay, at_ms), late


def _group_last(keys: IntArray, values: IntArray) -> IntArray:
    """For each row, the largest value among rows with the same key."""
    unique, inverse = np.unique(keys, return_inverse=True)
    last = np.full(len(unique), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, inverse, values)
    return last[inverse]


def report_labels(
    spec: SimulationSpec,
    payments: Payments,
    arrival_ms: IntArray,
    end_ms: int,
    rng: np.random.Generator,
) -> Labels:
    """Labels for ``payments`` (sorted by event time) with the bank's report times."""
    delays = spec.label_delays
    fraud = np.flatnonzero(payments.scenario != LEGITIMATE)
    # One dispute per incident and card: the cardholder reports all of it at once.
    group = (
        payments.incident[fraud] * (int(payments.card.max(initial=0)) + 1) + payments.card[fraud]
    )
    last_ms = _group_last(group, payments.at_ms[fraud])
    unique, inverse = np.unique(group, return_inverse=True)
    days = delays.fraud_median_days * np.exp(rng.normal(0.0, delays.fraud_sigma, len(unique)))
    delay_ms = (np.clip(days, delays.fraud_min_days, delays.fraud_max_days) * DAY_MS).astype(
        np.int64
    )[inverse]
    # ... but never later than ``fraud_max_days`` after any of its payments (nor sooner than
    # ``fraud_min_days``): an incident drawn out over weeks is reported in parts.
    at_ms = payments.at_ms[fraud]
    day_ms = float(DAY_MS)
    fraud_ms = np.clip(
        last_ms + delay_ms,
        at_ms + int(delays.fraud_min_days * day_ms),
        at_ms + int(delays.fraud_max_days * day_ms),
    )

    legit = np.flatnonzero(payments.scenario == LEGITIMATE)
    legit = legit[rng.random(len(legit)) < delays.legit_fraction]
    matured = payments.at_ms[legit] + int(delays.legit_maturity_days * DAY_MS)
    batch_offset = NIGHTLY_BATCH_HOUR_UTC * HOUR_MS
    legit_ms = ((matured - batch_offset) // DAY_MS + 1) * DAY_MS + batch_offset

    rows = np.concatenate([fraud, legit])
    reported = np.concatenate([fraud_ms, legit_ms])
    reported = np.maximum(reported, arrival_ms[rows] + MIN_LATE_MS)
    is_fraud = np.concatenate([np.ones(len(fraud), bool), np.zeros(len(legit), bool)])
    if spec.label_horizon_days is not None:
        keep = reported < end_ms + int(spec.label_horizon_days * DAY_MS)
        rows, reported, is_fraud = rows[keep], reported[keep], is_fraud[keep]
    order = np.lexsort((rows, reported))
    return Labels(payment=rows[order], reported_ms=reported[order], is_fraud=is_fraud[order])


def arrival_order(arrival_ms: IntArray, labels: Labels) -> IntArray:
    """Stream order: ``i >= 0`` is payment row ``i``, ``-1 - j`` is label ``j``.

    Sorted by the time each message reaches Kafka; at the same millisecond payments come first,
    each kind in its own order.
    """
    n, m = len(arrival_ms), len(labels)
    when = np.concatenate([arrival_ms, labels.reported_ms])
    kind = np.concatenate([np.zeros(n, np.int8), np.ones(m, np.int8)])
    item = np.concatenate([np.arange(n), -1 - np.arange(m)])
    rank = np.concatenate([np.arange(n), np.arange(m)])
    return np.asarray(item[np.lexsort((rank, kind, when))], dtype=np.int64)
