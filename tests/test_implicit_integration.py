"""Implicit negatives, corrections and negative downsampling on the real server and broker.

In MySQL: a claim marks exactly the unlabelled payments due, writes one ``implicit_labels`` row
each, refuses to claim a payment twice, and a fraud reported afterwards is claimed as a
correction; ``record_version`` names the version that learned each. Through the flow
(``ops/run_flow.sh``, two processes): every payment made ``PAYSCORE_LABEL_DELAY_DAYS`` before
the newest is labelled, each implicit negative is claimed and learned once (a second run learns
none again), a fraud reported after its payment was learned as legitimate is learned as a
correction, and which legitimate labels are learned is decided by the transaction id alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Engine, inspect, select, text

from features.contract import FraudLabel
from model_state.label_kinds import sampled
from storage.accounts import Accounts
from storage.implicit import claim_implicit, claims_after
from storage.labels import ReadLabel, claim_labels
from storage.rows import model_version_row
from storage.schema import create_schema
from storage.sink import MySQLSinkPartition
from storage.tables import fraud_labels, implicit_labels, model_versions, scored_payments
from storage.versions import record_version, version_key
from test_data.chaos import account
from test_data.generator import simulate
from test_data.spec import FRAUDS_ONLY, SimulationSpec
from tests.builders import model_metadata
from tests.conftest import BASE
from tests.flowrun import flow_env, produce, run_flow
from tests.test_labels import T0, _row

pytestmark = pytest.mark.integration

NAIVE_T0 = T0.replace(tzinfo=None)


def fraud(txn: str, at: datetime, card: str = "c-1") -> FraudLabel:
    return FraudLabel(transaction_id=txn, card_id=card, is_fraud=True, reported_at=at)


def _stored(engine: Engine, days: dict[str, float]) -> None:
    rows = []
    for offset, (t, d) in enumerate(sorted(days.items())):
        row = _row(t, "c-1")
        row["event_time"] = NAIVE_T0 + timedelta(days=d)
        row["kafka_offset"] = offset
        rows.append(row)
    MySQLSinkPartition(engine, scored_payments).write_batch(rows)


def test_claims_in_mysql_mark_each_due_payment_once_and_a_late_fraud_corrects_it(
    engine: Engine,
) -> None:
    _stored(engine, {"a": 0.0, "b": 1.0, "c": 1.0, "d": 3.0})
    delay = timedelta(days=2)
    now = datetime.now(UTC)
    with engine.begin() as c:  # claim 1: a labelled payment is never due
        claim_labels(c, "labels", [ReadLabel(fraud("b", T0 + timedelta(days=1, hours=1)), 0, 0)])
    with engine.begin() as c:
        first = claim_implicit(
            c, claim=1, cutoff=T0 + timedelta(days=1), delay=delay, sample_rate=1.0, limit=1,
            now=now,
        )  # fmt: skip
    assert [x.transaction_id for x in first.learnable] == ["a"] and first.full
    with engine.begin() as c:
        second = claim_implicit(
            c, claim=2, cutoff=T0 + timedelta(days=1), delay=delay, sample_rate=1.0, limit=10,
            now=now,
        )  # fmt: skip
    assert [x.transaction_id for x in second.learnable] == ["c"] and not second.full
    with engine.begin() as c:
        none = claim_implicit(
            c, claim=3, cutoff=T0 + timedelta(days=1), delay=delay, sample_rate=1.0, limit=10,
            now=now,
        )  # fmt: skip
        assert none.claimed == 0
        rows = c.execute(
            select(
                scored_payments.c.transaction_id,
                scored_payments.c.label_is_fraud,
                scored_payments.c.label_kind,
                scored_payments.c.label_reported_at,
            ).order_by(scored_payments.c.transaction_id)
        ).all()
        ledger = c.execute(
            select(implicit_labels.c.transaction_id, implicit_labels.c.claim).order_by(
                implicit_labels.c.transaction_id
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("a", False, "implicit", NAIVE_T0 + delay),
        ("b", True, "explicit", NAIVE_T0 + timedelta(days=1, hours=1)),
        ("c", False, "implicit", NAIVE_T0 + timedelta(days=1) + delay),
        ("d", None, None, None),
    ]
    assert [tuple(r) for r in ledger] == [("a", 1), ("c", 2)]
    # After a crash, the claims above the snapshot's are handed on again.
    with engine.begin() as c:
        again, last = claims_after(c, 0, delay=delay, sample_rate=1.0)
        assert [x.transaction_id for x in again] == ["a", "c"] and last == 2
        assert claims_after(c, 2, delay=delay, sample_rate=1.0) == ([], None)
    # A fraud reported after "c" was learned as legitimate: a correction, not contradicts.
    late = fraud("c", T0 + timedelta(days=5))
    with engine.begin() as c:
        outcome = claim_labels(c, "labels", [ReadLabel(late, 0, 1)])
        kind = c.execute(
            text("SELECT label_is_fraud, label_kind FROM scored_payments WHERE transaction_id='c'")
        ).one()
        reason = c.execute(select(fraud_labels.c.reason).where(fraud_labels.c.kafka_offset == 1))
        assert reason.scalar_one().startswith("correction")
    assert [(x.transaction_id, x.kind.value) for x in outcome.learnable] == [("c", "correction")]
    assert tuple(kind) == (1, "correction")


def _labelled_counts(engine: Engine) -> dict[str, float]:
    with engine.connect() as c:
        rows = c.execute(select(model_versions.c.version, model_versions.c.metadata)).all()
    newest = max(rows, key=lambda r: version_key(r.version))
    return {"labels_learned": newest.metadata["labels_learned"], **newest.metadata["learner"]}


def test_the_flow_learns_implicit_negatives_once_and_a_late_fraud_as_a_correction(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    spec = SimulationSpec(
        seed=23, days=6, cards=300, merchants=60, fraud_rate=0.02, label_delays=FRAUDS_ONLY
    )
    sim = simulate(spec)
    payments = list(sim.payments())
    newest = max(p.event_time for p in payments)
    labels = [x for x in sim.labels() if x.reported_at <= newest]
    rate, delay = 0.5, timedelta(days=2)
    produce(topics, [*labels, *payments])
    env = flow_env(
        topics,
        mysql_url,
        models,
        label_delay_days="2",
        legit_sample_rate=str(rate),
        publish_every_labels="200",
        label_retry_seconds="1",
        label_wait_seconds="5",
    )
    run_flow(env)
    run_flow(env)  # again: every payment is stored, so each due one is claimed by now

    first = account(engine, payments, labels, topics["labels_topic"], label_delay=delay,
                    sample_rate=rate)  # fmt: skip
    print(first.summary())
    assert first.problems == [], first.summary()
    assert first.implicit > 1000 and 0 < first.implicit_learned < first.implicit, first.summary()
    counts = _labelled_counts(engine)
    with engine.connect() as c:
        implicit = c.execute(
            select(implicit_labels.c.transaction_id, implicit_labels.c.reason)
        ).all()
    # Downsampling is decided by the id: exactly the ids sampled() keeps were learned.
    assert {t for t, r in implicit if r is None} == {t for t, _ in implicit if sampled(t, rate)}

    # Frauds reported weeks later, for payments the flow learned as legitimate: corrections.
    # Not for one corrected already by a fraud report sent above (a second report of it is a
    # duplicate).
    by_id = {p.transaction_id: p for p in payments}
    reported = {x.transaction_id for x in labels}
    kept = min(t for t, r in implicit if r is None and t not in reported)
    left_out = min(t for t, r in implicit if r is not None and t not in reported)
    late = [
        fraud(t, by_id[t].event_time + timedelta(days=20), by_id[t].card_id)
        for t in (kept, left_out)
    ]
    produce(topics, late)
    run_flow(env)
    second = account(engine, payments, labels + late, topics["labels_topic"], label_delay=delay,
                     sample_rate=rate)  # fmt: skip
    print(second.summary())
    assert second.problems == [], second.summary()
    assert second.corrections == first.corrections + 2
    assert second.implicit == first.implicit  # nothing claimed twice
    after = _labelled_counts(engine)
    # The third run learned the two corrections and nothing else again.
    assert after["labels_learned"] == counts["labels_learned"] + 2
    assert after["correction"] == counts.get("correction", 0) + 2
    assert after["implicit"] == counts["implicit"]


def test_an_install_from_before_implicit_negatives_is_upgraded_by_the_schema_command(
    admin_engine: Engine, engine: Engine
) -> None:
    """``python -m storage.schema --create`` on an install without ``label_kind``, the index of
    unlabelled payments and ``implicit_labels``: it adds them and gives the flow its rights, and
    the flow's account then claims implicit negatives and corrections there."""
    with admin_engine.begin() as c:
        c.execute(text("DROP TABLE implicit_labels"))
        c.execute(text("DROP INDEX ix_scored_payments_unlabelled ON scored_payments"))
        c.execute(text("ALTER TABLE scored_payments DROP COLUMN label_kind"))
    _stored(engine, {"old": 0.0})  # stored before the upgrade
    create_schema(admin_engine, Accounts.of(BASE))
    inspector = inspect(admin_engine)
    assert "implicit_labels" in inspector.get_table_names()
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("scored_payments")}
    assert indexes["ix_scored_payments_unlabelled"] == ["label_is_fraud", "event_time"]
    kind = {c["name"]: c for c in inspector.get_columns("scored_payments")}["label_kind"]
    assert kind["nullable"] is True
    with engine.begin() as c:  # as the flow's account
        claimed = claim_implicit(
            c, claim=1, cutoff=T0 + timedelta(days=3), delay=timedelta(days=2), sample_rate=1.0,
            limit=10, now=datetime.now(UTC),
        )  # fmt: skip
        assert [x.transaction_id for x in claimed.learnable] == ["old"]
        record_version(
            c,
            model_version_row(
                metadata=msgspec.to_builtins(model_metadata("v00001")), payload=b"x",
                artifact_path="v00001",
            ),
            labels_topic="labels",
            learned=[],
            learned_implicit=["old"],
        )  # fmt: skip
        learned = c.execute(select(implicit_labels.c.learned_version)).scalar_one()
    assert learned == "v00001"
