"""The label claim as it was before it became one JSON document a statement (issue 23): four
statements a batch (the ledger read, the payments read with their JSON features, the marking
``UPDATE ... CASE``, the ledger upsert), every value a parameter of its own.

Kept as the oracle of the parity test (``tests/test_label_claims_parity.py``: the claim of
:mod:`storage.labels` must leave byte-identical ledger and payment rows and hand the learner the
same labels, on the same input) and as the "before" of ``benchmarks/bench_claim_cpu.py``. The
decisions are :func:`storage.labels.resolve`'s, shared: only the I/O around them is kept here.
Not used by the flow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import msgspec
from sqlalchemy import Connection

from features.contract import FraudLabel
from model_state.label_kinds import LabelKind
from storage.engine import ConcurrentChangeError
from storage.labels import Claimed, ReadLabel, Stored, _Payment, _Recorded, resolve
from storage.rows import utc_naive
from storage.tables import fraud_labels, review_verdicts, scored_payments

_FL, _SP, _RV = fraud_labels.name, scored_payments.name, review_verdicts.name
_LEDGER_COLUMNS = tuple(c.name for c in fraud_labels.columns)
_features = msgspec.json.Decoder(dict[str, float]).decode


def _kind_of(label: FraudLabel, row: Stored) -> LabelKind:
    if label.is_fraud and row.label_kind == LabelKind.IMPLICIT:
        return LabelKind.CORRECTION
    return LabelKind.EXPLICIT


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def _pairs(n: int) -> str:
    return ", ".join(["(%s, %s)"] * n)


def claim_labels_before(
    connection: Connection,
    topic: str,
    reads: Sequence[ReadLabel],
    *,
    expired: Callable[[ReadLabel], bool] = lambda _: False,
    now: datetime | None = None,
    sample_rate: float = 1.0,
) -> Claimed:
    """:func:`storage.labels.claim_labels` as it was: the same arguments and outcome."""
    moment = utc_naive(now or datetime.now(UTC))
    if not reads:
        return Claimed([], [], [])
    sql = connection.exec_driver_sql
    positions = sorted({r.position for r in reads})
    ledger = {
        (p, o): _Recorded(status, learned, reason)
        for p, o, status, learned, reason in sql(
            f"SELECT kafka_partition, kafka_offset, status, learned_version, reason FROM {_FL} "
            f"WHERE topic = %s AND (kafka_partition, kafka_offset) IN ({_pairs(len(positions))})",
            (topic, *(x for pair in positions for x in pair)),
        )
    }
    ids = sorted({r.label.transaction_id for r in reads})
    payments = {
        row[0]: _Payment(*row[:5], _features(row[5]), *row[6:])
        for row in sql(
            "SELECT transaction_id, card_id, merchant_id, terminal_id, event_time, features, "
            f"model_version, label_is_fraud, kafka_partition, kafka_offset, label_kind FROM {_SP} "
            f"WHERE transaction_id IN ({_marks(len(ids))})",
            tuple(ids),
        )
    }
    claimants = sorted(
        {r.label.transaction_id for r in reads if r.label.analyst and r.position not in ledger}
    )
    confirmed: set[tuple[str, str, str, bool, datetime]] = set()
    if claimants:
        confirmed = {
            (t, c, a, bool(f), d)
            for t, c, a, f, d in sql(
                "SELECT transaction_id, card_id, analyst, is_fraud, decided_at "
                f"FROM {_RV} WHERE transaction_id IN ({_marks(len(claimants))})",
                tuple(claimants),
            )
        }
    outcome, record, claims = resolve(
        topic, reads, ledger, payments, expired, moment, confirmed=confirmed,
        sample_rate=sample_rate,
    )  # fmt: skip
    if claims:
        whens = " ".join(["WHEN %s THEN %s"] * len(claims))
        rows = ", ".join(["(%s, %s, %s, %s)"] * len(claims))
        marked = sql(
            f"UPDATE {_SP} SET label_is_fraud = CASE transaction_id {whens} END, "
            f"label_reported_at = CASE transaction_id {whens} END, "
            f"label_kind = CASE transaction_id {whens} END "
            f"WHERE transaction_id IN ({_marks(len(claims))}) "
            "AND (label_is_fraud IS NULL OR label_kind = 'implicit') "
            "AND (transaction_id, kafka_partition, kafka_offset, COALESCE(label_kind, '')) "
            f"IN ({rows})",
            (
                *(x for t, c in claims.items() for x in (t, c.is_fraud)),
                *(x for t, c in claims.items() for x in (t, utc_naive(c.reported_at))),
                *(x for t in claims for x in (t, _kind_of(claims[t], payments[t]).value)),
                *claims,
                *(
                    x
                    for t in claims
                    for x in (
                        t,
                        payments[t].kafka_partition,
                        payments[t].kafka_offset,
                        payments[t].label_kind or "",
                    )
                ),
            ),
        )
        if marked.rowcount != len(claims):
            raise ConcurrentChangeError(
                f"{len(claims) - marked.rowcount} of {len(claims)} payments were labelled or "
                "replaced by another transaction during this claim"
            )
    if record:
        row = f"({_marks(len(_LEDGER_COLUMNS))})"
        sql(
            f"INSERT INTO {_FL} ({', '.join(_LEDGER_COLUMNS)}) "
            f"VALUES {', '.join([row] * len(record))} "
            "ON DUPLICATE KEY UPDATE status = VALUES(status), reason = VALUES(reason), "
            "resolved_at = VALUES(resolved_at)",
            tuple(r[c] for r in record for c in _LEDGER_COLUMNS),
        )
    return outcome
