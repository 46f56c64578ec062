"""Labels meet their payments: each label message is accounted for once, and takes effect exactly
once downstream, whatever the order of arrival and however often the flow crashes."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from dataflows.label_join import LabelJoin, label_join
from dataflows.learning import LearnStep, Lineages
from dataflows.messages import Positioned
from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel
from model_state.artifact import ModelArtifact, VersionRecord
from model_state.learner import OnlineLearner
from storage.labels import (
    CLAIMED,
    Claimed,
    LabelledPayment,
    ReadLabel,
    _kind_of,
    claim_labels,
    resolve,
)
from storage.sink import MySQLSinkPartition
from storage.tables import fraud_labels, scored_payments
from storage.versions import version_key
from tests.builders import model_metadata

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def label(txn: str, card: str = "c-1", fraud: bool = True, days: float = 7) -> FraudLabel:
    return FraudLabel(
        transaction_id=txn, card_id=card, is_fraud=fraud, reported_at=T0 + timedelta(days=days)
    )


class FakeStore:
    """The two tables in memory, driven by the same decisions as MySQL (:func:`resolve`):
    payments by transaction id (card, verdict), the label ledger by position."""

    def __init__(self, payments: dict[str, str]) -> None:
        self.payments = {t: self._payment(t, card) for t, card in payments.items()}
        self.ledger: dict[tuple[int, int], SimpleNamespace] = {}

    @staticmethod
    def _payment(txn: str, card: str) -> SimpleNamespace:
        return SimpleNamespace(
            transaction_id=txn,
            card_id=card,
            merchant_id="m",
            terminal_id="t",
            event_time=T0.replace(tzinfo=None),
            features={},
            model_version="v00001",
            label_is_fraud=None,
            label_kind=None,
        )

    def store(self, txn: str, card: str = "c-1") -> None:
        self.payments.setdefault(txn, self._payment(txn, card))

    def __call__(self, reads: list[ReadLabel], expired=lambda _: False) -> Claimed:
        outcome, record, claims = resolve(
            "labels",
            reads,
            self.ledger,
            self.payments,
            expired,
            T0.replace(tzinfo=None),
            sample_rate=self.sample_rate,
            waiting_max=self.waiting_max,
        )
        for txn, claim in claims.items():
            kind = _kind_of(claim, self.payments[txn])
            self.payments[txn].label_is_fraud = claim.is_fraud
            self.payments[txn].label_kind = kind.value
        for row in record:
            position = (row["kafka_partition"], row["kafka_offset"])
            known = self.ledger.get(position)
            self.ledger[position] = SimpleNamespace(
                status=row["status"],
                learned_version=known.learned_version if known else None,
                reason=row["reason"],
            )
        return outcome

    sample_rate = 1.0
    waiting_max: int | None = None

    def claim_implicit(self, txn: str) -> bool:
        """As storage.implicit does for a due payment: True if it was unlabelled."""
        payment = self.payments.get(txn)
        if payment is None or payment.label_is_fraud is not None:
            return False
        payment.label_is_fraud, payment.label_kind = False, "implicit"
        return True

    def mark_learned(self, record: VersionRecord) -> None:
        for position in record.learned:
            if self.ledger[position].learned_version is None:
                self.ledger[position].learned_version = record.metadata.version

    def claimed(self) -> set[tuple[int, int]]:
        return {p for p, row in self.ledger.items() if row.status == CLAIMED}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def positioned(lab: FraudLabel, offset: int = 0) -> Positioned[FraudLabel]:
    return Positioned(lab, 0, offset)


@settings(max_examples=200, deadline=None)
@given(
    txns=st.lists(st.sampled_from([f"t{i}" for i in range(8)]), min_size=1, max_size=40),
    stored_before=st.sets(st.sampled_from([f"t{i}" for i in range(8)])),
    batch_sizes=st.lists(st.integers(1, 5), min_size=1, max_size=40),
    arrivals=st.lists(st.sampled_from([f"t{i}" for i in range(8)]), max_size=8),
    retry_seconds=st.sampled_from([1, 3, 1000]),
)
def test_every_label_is_learned_at_most_once_whatever_the_order(
    txns: list[str],
    stored_before: set[str],
    batch_sizes: list[int],
    arrivals: list[str],
    retry_seconds: int,
) -> None:
    """With retries due at every batch, now and then, or never before the end (then only new
    labels, and the waiting ones of the same payments, are tried as batches come)."""
    store = FakeStore({t: "c-1" for t in stored_before})
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=retry_seconds, wait_seconds=30, clock=clock)
    first_read: dict[str, int] = {}
    for offset, t in enumerate(txns):
        first_read.setdefault(t, offset)
    learned: list[str] = []
    # Labels arrive in batches; payments get stored between batches; timers fire.
    queue = [positioned(label(t), offset) for offset, t in enumerate(txns)]
    position = 0
    for size in batch_sizes * 40:
        if position >= len(queue):
            break
        out, _ = join.on_batch(queue[position : position + size])
        learned += [x.transaction_id for x in out]
        position += size
        if arrivals:
            store.store(arrivals.pop(0))
        clock.now += 1
        out, _ = join.on_notify()
        learned += [x.transaction_id for x in out]
    clock.now += 30  # every label has waited its 30 s
    out, _ = join.on_eof()
    learned += [x.transaction_id for x in out]

    assert len(learned) == len(set(learned)), "a label was learned twice"
    # Every transaction whose payment was stored by the end is learned exactly once.
    assert set(learned) == set(txns) & set(store.payments)
    # Every label message ends in the ledger, and none is left waiting after the end.
    assert set(store.ledger) == {(0, offset) for offset in range(len(txns))}
    assert {row.status for row in store.ledger.values()} <= {"claimed", "rejected"}
    # A payment stored from the start is claimed by the first label read of it.
    for t in stored_before & set(txns):
        assert store.ledger[(0, first_read[t])].status == "claimed", t


def test_a_waiting_label_is_rejected_after_the_wait_and_the_key_discarded() -> None:
    store = FakeStore({})
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=1, wait_seconds=10, clock=clock)
    out, discard = join.on_batch([positioned(label("t1"))])
    assert out == [] and discard is False
    assert store.ledger[(0, 0)].status == "waiting"
    before = datetime.now(UTC)
    due = join.notify_at()
    after = datetime.now(UTC)
    assert due is not None
    assert before + timedelta(seconds=1) <= due <= after + timedelta(seconds=1)  # in 1 s
    clock.now += 10
    out, discard = join.on_notify()
    assert out == [] and discard is True
    assert join.notify_at() is None
    assert store.ledger[(0, 0)].status == "rejected"


def test_at_the_end_of_input_a_label_waits_on_and_downtime_does_not_count() -> None:
    store = FakeStore({})
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=1, wait_seconds=10, clock=clock)
    join.on_batch([positioned(label("t1"))])
    clock.now += 4
    out, discard = join.on_eof()  # a stop, or the end of a drain run: t1 has waited 4 of 10 s
    assert out == [] and discard is False
    assert store.ledger[(0, 0)].status == "waiting"
    snapshot, held = pickle.loads(join.snapshot())  # waiting and held labels
    assert [(read.label.transaction_id, waited) for read, waited in snapshot] == [("t1", 4.0)]
    assert held == []
    # Resumed an hour later (the builder counts from its own start): 6 s of wait are left.
    resumed = label_join(store, retry_seconds=1, wait_seconds=10)(join.snapshot())
    out, discard = resumed.on_notify()
    assert out == [] and discard is False
    assert store.ledger[(0, 0)].status == "waiting"


def test_label_for_another_card_is_never_learned() -> None:
    join = LabelJoin(FakeStore({"t1": "c-1"}), [], retry_seconds=1, wait_seconds=10)
    out, discard = join.on_batch([positioned(label("t1", card="c-2"))])
    assert out == [] and discard is True


class CountingModel:
    """A stand-in model that remembers what it learned (pickles with the learner)."""

    def __init__(self) -> None:
        self.learned: list[str] = []

    def learn_one(self, x: dict, y: bool, w: float = 1.0) -> None:
        self.learned.append(x["txn"])


class Versions:
    """Recorded versions (MySQL's model_versions), fetched as the learner's Lineages would."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.records: dict[str, VersionRecord] = {}

    def record(self, record: VersionRecord) -> None:
        if record.metadata.version not in self.records:
            self.records[record.metadata.version] = record
            self.store.mark_learned(record)

    def newest_after(self, after: str | None) -> ModelArtifact | None:
        newer = [v for v in self.records if after is None or version_key(v) > version_key(after)]
        if not newer:
            return None
        record = self.records[max(newer, key=version_key)]
        return ModelArtifact(pickle.loads(record.payload), record.metadata, record.payload)


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(
        st.tuples(st.sampled_from([f"t{i}" for i in range(12)]), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    stored=st.sets(st.sampled_from([f"t{i}" for i in range(12)])),
    epochs=st.lists(
        st.tuples(st.integers(0, 4), st.booleans(), st.booleans(), st.booleans()),
        min_size=1,
        max_size=25,
    ),
)
def test_through_crashes_every_claimed_label_takes_effect_exactly_once(
    messages: list[tuple[str, bool]],
    stored: set[str],
    epochs: list[tuple[int, bool, bool, bool]],
) -> None:
    """The join, the fraud rates (here: a list of what reached them) and the learner, snapshotted
    together at each epoch's end; a crash restores the last snapshot and reads the labels since
    again, while MySQL (the ledger, the payments, the recorded versions) keeps what was written."""
    store = FakeStore({t: "c-1" for t in stored})
    versions = Versions(store)
    model = CountingModel()
    start = ModelArtifact(model, model_metadata(), pickle.dumps(model))
    versions.record(start.record)
    labels = [
        positioned(label(t, fraud=fraud), offset) for offset, (t, fraud) in enumerate(messages)
    ]

    def new_learner(resume: bytes | None) -> LearnStep:
        lineages = Lineages(versions.newest_after, refresh_seconds=3600)
        if resume is None:
            return LearnStep(OnlineLearner(start, 3), 0.0, 3600, None, lineages)
        learner, last, announce = pickle.loads(resume)
        return LearnStep(learner, last, 3600, announce, lineages)

    def features(example: LabelledPayment) -> LabelledPayment:  # the model counts txn ids
        counted = {**dict.fromkeys(FEATURE_NAMES, 0.0), "txn": example.transaction_id}
        return msgspec.structs.replace(example, features=counted)

    clock = Clock()
    snapshot = (0, None, [], new_learner(None).snapshot())  # offset, join, rates, learner
    offset, waiting, rates, learner_state = copy.deepcopy(snapshot)
    join = label_join(store, retry_seconds=1, wait_seconds=50, clock=clock)(waiting)
    learner = new_learner(learner_state)

    def deliver(out: list[LabelledPayment]) -> None:
        rates.extend((x.label_partition, x.label_offset) for x in out)
        for record in learner.on_batch([features(x) for x in out])[0]:
            versions.record(record)

    for take, arrive, timer, crash in epochs * 3:
        deliver(join.on_batch(labels[offset : offset + take])[0])
        offset = min(offset + take, len(labels))
        if arrive:
            missing = sorted({t for t, _ in messages} - set(store.payments))
            if missing:
                store.store(missing[0])
        clock.now += 1
        deliver(join.on_notify()[0])
        if timer:  # the learner's publish timer (wall clock: another moment in a rerun)
            for record in learner.on_notify()[0]:
                versions.record(record)
        if crash:
            offset, waiting, rates, learner_state = copy.deepcopy(snapshot)
            join = label_join(store, retry_seconds=1, wait_seconds=50, clock=clock)(waiting)
            learner = new_learner(learner_state)
        else:
            snapshot = copy.deepcopy((offset, join.snapshot(), rates, learner.snapshot()))
    # Drain: the rest of the labels, every payment stored, the end of input.
    deliver(join.on_batch(labels[offset:])[0])
    for t, _ in messages:
        store.store(t)
    clock.now += 1
    deliver(join.on_eof()[0])
    for record in learner.on_eof()[0]:
        versions.record(record)

    claimed = store.claimed()
    assert sorted(rates) == sorted(claimed), "the fraud rates saw a label twice or never"
    final = versions.newest_after(None)
    assert final is not None
    assert final.metadata.labels_learned == len(claimed)
    claimed_txns = [labels[o].event.transaction_id for _, o in claimed]
    assert sorted(final.model.learned) == sorted(claimed_txns), "learned twice or never"
    # Every recorded version is its recorded parent plus the labels it says it learned.
    for record in versions.records.values():
        parent = record.metadata.parent_version
        if parent is None:
            continue
        before = pickle.loads(versions.records[parent].payload).learned
        after = pickle.loads(record.payload).learned
        added = [labels[o].event.transaction_id for _, o in record.learned]
        assert after == before + added, f"{record.metadata.version} was not learned from {parent}"


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
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
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
def test_claims_in_mysql_learn_each_stored_payment_once(
    engine: Engine, admin_engine: Engine, batches
) -> None:
    with admin_engine.begin() as c:  # the flow's account may delete nothing
        c.execute(text("DELETE FROM scored_payments"))
        c.execute(fraud_labels.delete())
    MySQLSinkPartition(engine, scored_payments).write_batch(
        [_row("t1", "c-1"), _row("t2", "c-1"), _row("t3", "c-2")]
    )
    learned: list[str] = []
    offset = 0
    for batch in batches:
        reads = []
        for t, f, wrong in batch:
            reads.append(ReadLabel(label(t, card="c-2" if wrong else "c-1", fraud=f), 0, offset))
            offset += 1
        with engine.begin() as c:
            outcome = claim_labels(c, "labels", reads)
        learned += [x.transaction_id for x in outcome.learnable]
        assert all(x.features == {"amount_eur": 1.0} for x in outcome.learnable)
        assert {r.label.transaction_id for r in outcome.waiting} <= {"t4"}
    assert len(learned) == len(set(learned))
    with engine.connect() as c:
        marked = {
            r[0]
            for r in c.execute(
                text("SELECT transaction_id FROM scored_payments WHERE label_is_fraud IS NOT NULL")
            )
        }
        statuses = dict(
            c.execute(text("SELECT status, COUNT(*) FROM fraud_labels GROUP BY status")).all()
        )
    assert marked == set(learned)
    assert sum(statuses.values()) == offset, "every label message has its row"
    assert statuses.get("claimed", 0) == len(learned)


def test_a_label_scored_with_another_feature_catalogue_is_counted_not_learned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After an upgrade of features/catalog.py, labels of payments scored before it carry the
    old features: the learner cannot learn them, says so, and goes on."""
    from dataflows.learning import OUTDATED
    from model_state.offline.train import new_model

    model = new_model()
    start = ModelArtifact(model, model_metadata(), pickle.dumps(model))
    step = LearnStep(OnlineLearner(start, 1), 0.0, 3600, None, None)
    old = LabelledPayment(
        transaction_id="t-old", card_id="c", merchant_id="m", terminal_id="p",
        payment_time=0.0, reported_at=1.0, is_fraud=True,
        features={"amount_eur": 1.0}, scored_by="v00001",
    )  # fmt: skip
    new = msgspec.structs.replace(
        old, transaction_id="t-new", features=dict.fromkeys(FEATURE_NAMES, 1.0)
    )
    before = OUTDATED._value.get()
    with caplog.at_level("WARNING"):
        out, _ = step.on_batch([old, new])
    assert OUTDATED._value.get() == before + 1
    assert [r.metadata.labels_learned for r in out] == [1]  # t-new only
    assert "label of transaction t-old not learned" in caplog.text


def test_a_resumed_join_tries_its_waiting_labels_with_the_first_batch() -> None:
    """After a crash the fraud rates and the learner come back from the same snapshot as the
    join: a waiting label claimed since must be handed on again at once, not at its timer."""
    store = FakeStore({})
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=60, wait_seconds=600, clock=clock)
    join.on_batch([positioned(label("t1"), 0)])
    snapshot = join.snapshot()
    store.store("t1")
    claimed, _ = join.on_notify()  # before the crash: claimed and handed on ...
    assert [x.transaction_id for x in claimed] == ["t1"]
    resumed = label_join(store, retry_seconds=60, wait_seconds=600)(snapshot)  # ... and lost
    out, _ = resumed.on_batch([positioned(label("t2"), 1)])  # any batch, long before the timer
    assert [x.transaction_id for x in out] == ["t1"]  # replayed: its own row says claimed
    assert resumed.notify_at() is not None  # t2 waits for its payment


@settings(max_examples=200, deadline=None)
@given(
    named=st.lists(
        st.tuples(
            st.sampled_from(["t1", "t2"]),
            st.sampled_from(["c-1", "c-2"]),
            st.sampled_from(["alice", "bob", None]),
            st.booleans(),
            st.sampled_from([7, 8]),
        ),
        min_size=1,
        max_size=8,
    ),
    recorded=st.sets(
        st.tuples(
            st.sampled_from(["t1", "t2"]),
            st.sampled_from(["c-1", "c-2"]),
            st.sampled_from(["alice", "bob"]),
            st.booleans(),
            st.sampled_from([7, 8]),
        ),
        max_size=4,
    ),
)
def test_a_labels_analyst_is_believed_only_when_a_recorded_verdict_says_exactly_that(
    named: list[tuple[str, str, str | None, bool, int]],
    recorded: set[tuple[str, str, str, bool, int]],
) -> None:
    reads = [
        ReadLabel(msgspec.structs.replace(label(t, card=c, fraud=f, days=d), analyst=a), 0, offset)
        for offset, (t, c, a, f, d) in enumerate(named)
    ]
    confirmed = {
        (t, c, a, f, (T0 + timedelta(days=d)).replace(tzinfo=None)) for t, c, a, f, d in recorded
    }
    store = FakeStore({"t1": "c-1", "t2": "c-1"})
    _, rows, _ = resolve(
        "labels",
        reads,
        {},
        store.payments,
        lambda _: False,
        T0.replace(tzinfo=None),
        confirmed=confirmed,
    )
    assert len(rows) == len(reads)  # every message has its row, whoever it names
    for (t, c, a, f, d), row in zip(named, rows, strict=True):
        verified = a is not None and (t, c, a, f, d) in recorded
        assert row["analyst"] == (a if verified else None)
        assert row["unverified_analyst"] == (None if verified or a is None else a)
