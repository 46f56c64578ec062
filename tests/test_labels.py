"""Labels meet their payments: each is learned at most once, whatever the order of arrival."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from dataflows.label_join import LabelJoin
from dataflows.messages import Positioned
from features.contract import FraudLabel
from storage.labels import Claimed, LabelledPayment, claim_labels
from storage.sink import MySQLSinkPartition
from storage.tables import scored_payments

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def label(txn: str, card: str = "c-1", fraud: bool = True, days: float = 7) -> FraudLabel:
    return FraudLabel(
        transaction_id=txn, card_id=card, is_fraud=fraud, reported_at=T0 + timedelta(days=days)
    )


class FakeStore:
    """In-memory stand-in for the scored_payments table: txn -> (card, labelled?)."""

    def __init__(self, payments: dict[str, str]) -> None:
        self.payments = dict(payments)
        self.labelled: set[str] = set()

    def __call__(self, labels: list[FraudLabel]) -> Claimed:
        out = Claimed([], [], [], [])
        for lab in labels:
            card = self.payments.get(lab.transaction_id)
            if card is None:
                out.not_found.append(lab)
            elif card != lab.card_id:
                out.card_mismatch.append(lab)
            elif lab.transaction_id in self.labelled:
                out.already_labelled.append(lab)
            else:
                self.labelled.add(lab.transaction_id)
                out.learnable.append(
                    LabelledPayment(
                        transaction_id=lab.transaction_id,
                        card_id=card,
                        merchant_id="m",
                        terminal_id="t",
                        payment_time=T0.timestamp(),
                        reported_at=lab.reported_at.timestamp(),
                        is_fraud=lab.is_fraud,
                        features={},
                        scored_by="v00001",
                    )
                )
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def positioned(lab: FraudLabel) -> Positioned[FraudLabel]:
    return Positioned(lab, 0, 0)


@settings(max_examples=200, deadline=None)
@given(
    txns=st.lists(st.sampled_from([f"t{i}" for i in range(8)]), min_size=1, max_size=40),
    stored_before=st.sets(st.sampled_from([f"t{i}" for i in range(8)])),
    batch_sizes=st.lists(st.integers(1, 5), min_size=1, max_size=40),
    arrivals=st.lists(st.sampled_from([f"t{i}" for i in range(8)]), max_size=8),
)
def test_every_label_is_learned_at_most_once_whatever_the_order(
    txns: list[str], stored_before: set[str], batch_sizes: list[int], arrivals: list[str]
) -> None:
    store = FakeStore({t: "c-1" for t in stored_before})
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=1, wait_seconds=30, clock=clock)
    learned: list[str] = []
    # Labels arrive in batches; payments get stored between batches; timers fire.
    queue = [label(t) for t in txns]
    position = 0
    for size in batch_sizes * 40:
        if position >= len(queue):
            break
        out, _ = join.on_batch([positioned(x) for x in queue[position : position + size]])
        learned += [x.transaction_id for x in out]
        position += size
        if arrivals:
            store.payments[arrivals.pop(0)] = "c-1"
        clock.now += 1
        out, _ = join.on_notify()
        learned += [x.transaction_id for x in out]
    out, _ = join.on_eof()
    learned += [x.transaction_id for x in out]

    assert len(learned) == len(set(learned)), "a label was learned twice"
    assert set(learned) <= set(txns)
    # Every transaction whose payment was stored by the end is learned exactly once.
    assert set(learned) == set(txns) & set(store.payments)


def test_a_waiting_label_is_dropped_after_the_wait_and_the_key_discarded() -> None:
    store = FakeStore({})
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=1, wait_seconds=10, clock=clock)
    out, discard = join.on_batch([positioned(label("t1"))])
    assert out == [] and discard is False
    assert join.notify_at() == datetime.fromtimestamp(clock.now + 1, UTC)
    clock.now += 10
    out, discard = join.on_notify()
    assert out == [] and discard is True
    assert join.notify_at() is None


def test_label_for_another_card_is_never_learned() -> None:
    join = LabelJoin(FakeStore({"t1": "c-1"}), [], retry_seconds=1, wait_seconds=10)
    out, discard = join.on_batch([positioned(label("t1", card="c-2"))])
    assert out == [] and discard is True


def _row(txn: str, card: str) -> dict[str, object]:
    return {
        "transaction_id": txn,
        "card_id": card,
        "merchant_id": "m-1",
        "terminal_id": "t-1",
        "amount_minor": 100,
        "currency": "EUR",
        "event_time": T0.replace(tzinfo=None),
        "utc_offset_minutes": 0,
        "fraud_probability": 0.1,
        "decision": "approve",
        "reason_codes": [],
        "model_version": "v00001",
        "features": {"amount_eur": 1.0},
        "kafka_partition": 0,
        "kafka_offset": 0,
        "scored_at": T0.replace(tzinfo=None),
    }


@pytest.mark.integration
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["t1", "t2", "t3", "t4"]), st.booleans(), st.booleans()),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_claims_in_mysql_learn_each_stored_payment_once(engine: Engine, batches) -> None:
    with engine.begin() as c:
        c.execute(text("DELETE FROM scored_payments"))
    MySQLSinkPartition(engine, scored_payments).write_batch(
        [_row("t1", "c-1"), _row("t2", "c-1"), _row("t3", "c-2")]
    )
    learned: list[str] = []
    for batch in batches:
        labels = [label(t, card="c-2" if wrong else "c-1", fraud=f) for t, f, wrong in batch]
        with engine.begin() as c:
            outcome = claim_labels(c, labels)
        learned += [x.transaction_id for x in outcome.learnable]
        assert all(x.features == {"amount_eur": 1.0} for x in outcome.learnable)
        assert {x.transaction_id for x in outcome.not_found} <= {"t4"}
    assert len(learned) == len(set(learned))
    with engine.connect() as c:
        marked = {
            r[0]
            for r in c.execute(
                text("SELECT transaction_id FROM scored_payments WHERE label_is_fraud IS NOT NULL")
            )
        }
    assert marked == set(learned)
