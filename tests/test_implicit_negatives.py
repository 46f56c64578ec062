"""Labels as banks send them, in the flow: implicit negatives claimed and learned once through
crashes, frauds reported after them learned as corrections, legitimate labels downsampled by
transaction id. Pure logic, against in-memory stand-ins of the tables driven by the same
decisions as MySQL (:func:`storage.labels.resolve`); ``tests/test_implicit_integration.py`` runs
the real flow."""

from __future__ import annotations

import copy
import pickle
from collections import Counter
from datetime import datetime, timedelta
from types import SimpleNamespace

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.implicit_negatives import ImplicitNegatives, implicit_negatives, newest_event_time
from dataflows.label_join import label_join
from dataflows.learning import LearnStep, Lineages
from dataflows.messages import Positioned
from dataflows.wake_ups import WAKE_UP
from features.catalog import FEATURE_NAMES
from model_state.artifact import ModelArtifact, VersionRecord
from model_state.label_kinds import LabelKind, learn_weight, sampled
from model_state.learner import OnlineLearner
from storage.implicit import ImplicitClaim, implicit_label
from storage.labels import CLAIMED, REJECTED, LabelledPayment, ReadLabel, resolve
from tests.builders import model_metadata
from tests.test_labels import T0, Clock, CountingModel, FakeStore, Versions, label, positioned

NAIVE_T0 = T0.replace(tzinfo=None)
DELAY = timedelta(days=2)


class FakeImplicit:
    """``implicit_labels`` and the claims of :mod:`storage.implicit` over a :class:`FakeStore`:
    the same rules (unlabelled and due: claimed once, numbered; sampled out: not learnable)."""

    def __init__(self, store: FakeStore, *, sample_rate: float = 1.0, limit: int = 3) -> None:
        self.store = store
        self.sample_rate = sample_rate
        self.limit = limit
        self.ledger: dict[str, SimpleNamespace] = {}

    def claim(self, number: int, cutoff: datetime) -> ImplicitClaim:
        due = sorted(
            (p for p in self.store.payments.values() if p.label_is_fraud is None),
            key=lambda p: (p.event_time, p.transaction_id),
        )
        due = [p for p in due if p.event_time <= cutoff.replace(tzinfo=None)][: self.limit]
        learnable = []
        for p in due:
            p.label_is_fraud, p.label_kind = False, "implicit"
            weight = learn_weight(
                is_fraud=False, transaction_id=p.transaction_id, rate=self.sample_rate
            )
            assert p.transaction_id not in self.ledger, "an implicit negative claimed twice"
            self.ledger[p.transaction_id] = SimpleNamespace(
                claim=number, sampled_out=weight is None, learned_version=None
            )
            if weight is not None:
                learnable.append(implicit_label(p, delay=DELAY, weight=weight))
        return ImplicitClaim(learnable, len(due), len(due) - len(learnable), len(due) >= self.limit)

    def after(
        self, number: int, *, unlearned_only: bool
    ) -> tuple[list[LabelledPayment], int | None]:
        numbers = sorted({row.claim for row in self.ledger.values() if row.claim > number})[:2]
        if not numbers:
            return [], None
        out = [
            implicit_label(
                self.store.payments[t],
                delay=DELAY,
                weight=1.0 / self.sample_rate,
                learned_version=row.learned_version,
            )
            for t, row in sorted(self.ledger.items(), key=lambda x: (x[1].claim, x[0]))
            if number < row.claim <= numbers[-1]
            and not row.sampled_out
            and not (unlearned_only and row.learned_version is not None)
        ]
        return out, numbers[-1]

    def mark_learned(self, record: VersionRecord) -> None:
        for t in record.learned_implicit:
            if self.ledger[t].learned_version is None:
                self.ledger[t].learned_version = record.metadata.version


def test_a_fraud_reported_after_an_implicit_negative_is_a_counted_correction() -> None:
    store = FakeStore({"t1": "c-1", "t2": "c-1", "t3": "c-1"})
    for t in ("t1", "t2"):
        store.payments[t].label_is_fraud, store.payments[t].label_kind = False, "implicit"
    outcome = store(
        [
            ReadLabel(label("t1", fraud=True), 0, 0),  # a correction
            ReadLabel(label("t2", fraud=False), 0, 1),  # says what the implicit one said
            ReadLabel(label("t1", fraud=True), 0, 2),  # the correction's duplicate
            ReadLabel(label("t3", fraud=True), 0, 3),  # an ordinary fraud
        ]
    )
    assert [(x.transaction_id, x.kind, x.weight) for x in outcome.learnable] == [
        ("t1", LabelKind.CORRECTION, 1.0),
        ("t3", LabelKind.EXPLICIT, 1.0),
    ]
    assert outcome.corrections == 1
    assert store.ledger[(0, 0)].status == CLAIMED
    assert store.ledger[(0, 0)].reason.startswith("correction:")
    assert store.ledger[(0, 1)].status == REJECTED
    assert store.ledger[(0, 1)].reason == (
        "duplicate: the payment is labelled is_fraud=False already (an implicit negative)"
    )
    assert store.ledger[(0, 2)].reason.startswith(
        "duplicate: the payment is labelled is_fraud=True"
    )
    assert (store.payments["t1"].label_is_fraud, store.payments["t1"].label_kind) == (
        True,
        "correction",
    )
    assert store.payments["t3"].label_kind == "explicit"
    # A replay after a crash hands the correction on again, as a correction.
    again = store([ReadLabel(label("t1", fraud=True), 0, 0)])
    assert [(x.kind, x.learned_version) for x in again.learnable] == [(LabelKind.CORRECTION, None)]
    assert again.replayed == 1 and again.corrections == 0


def test_an_explicit_legitimate_label_contradicting_a_fraud_stays_a_contradiction() -> None:
    store = FakeStore({"t1": "c-1"})
    store([ReadLabel(label("t1", fraud=True), 0, 0)])
    store([ReadLabel(label("t1", fraud=False), 0, 1)])
    assert (
        store.ledger[(0, 1)].reason == "contradicts: the payment is labelled is_fraud=True already"
    )


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 60),
    rate=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
    frauds=st.sets(st.integers(0, 59)),
)
def test_downsampling_claims_every_label_and_learns_kept_legitimate_ones_at_one_over_rate(
    n: int, rate: float, frauds: set[int]
) -> None:
    txns = [f"tx-{i}" for i in range(n)]
    store = FakeStore(dict.fromkeys(txns, "c-1"))
    store.sample_rate = rate
    reads = [ReadLabel(label(t, fraud=i in frauds), 0, i) for i, t in enumerate(txns)]
    outcome = store(reads)
    # Every label message is claimed and has its row, learned or not.
    assert {row.status for row in store.ledger.values()} == {CLAIMED}
    assert len(store.ledger) == n
    learned = {x.transaction_id: x for x in outcome.learnable}
    for i, t in enumerate(txns):
        fraud = i in frauds
        kept = fraud or sampled(t, rate)
        assert (t in learned) == kept, t
        assert store.payments[t].label_is_fraud == fraud  # a retrain learns every one
        if kept:
            assert learned[t].weight == (1.0 if fraud else 1.0 / rate)
            assert store.ledger[(0, i)].reason is None
        else:
            assert store.ledger[(0, i)].reason.startswith("sampled_out:")
    assert outcome.sampled_out == n - len(learned)
    # A replay hands on exactly the kept ones again, whatever the rate is then.
    store.sample_rate = 1.0
    again = store(reads)
    assert {x.transaction_id for x in again.learnable} == set(learned)
    assert again.replayed == len(learned) and again.sampled_out == 0


def test_the_clock_is_the_newest_event_time_of_a_batch() -> None:
    def at(hours: float) -> Positioned:
        return Positioned(SimpleNamespace(event_time=T0 + timedelta(hours=hours)), 0, 0)

    assert newest_event_time([at(2), at(5), at(1)]) == [(T0 + timedelta(hours=5)).timestamp()]
    assert newest_event_time([]) == []


def _stamped(store: FakeStore, days: dict[str, float]) -> None:
    for t, d in days.items():
        store.store(t)
        store.payments[t].event_time = NAIVE_T0 + timedelta(days=d)


def test_the_claimer_claims_what_is_due_on_the_event_clock_only() -> None:
    store = FakeStore({})
    _stamped(store, {"old": 0.0, "edge": 1.0, "new": 1.5})
    claims = FakeImplicit(store, limit=10)
    step = implicit_negatives(claims, delay=DELAY, retry_seconds=5)(None)
    assert step.notify_at() is None  # no timer before the run's first batch (dataflows/wake_ups)
    out, _ = step.on_batch([(T0 + timedelta(days=3)).timestamp()])  # due: made by day 1
    assert sorted(x.transaction_id for x in out) == ["edge", "old"]
    assert all(x.kind is LabelKind.IMPLICIT and not x.is_fraud for x in out)
    assert {x.reported_at - x.payment_time for x in out} == {DELAY.total_seconds()}
    assert store.payments["new"].label_is_fraud is None
    # A tick from a worker behind does not move the clock back.
    step._last_try = float("-inf")
    out, _ = step.on_batch([(T0 + timedelta(days=1)).timestamp()])
    assert out == []
    assert pickle.loads(step.snapshot()) == (1, (T0 + timedelta(days=3)).timestamp())


@settings(max_examples=150, deadline=None)
@given(
    payments=st.dictionaries(
        st.sampled_from([f"t{i}" for i in range(14)]), st.integers(0, 10), min_size=1
    ),
    messages=st.lists(
        st.tuples(st.sampled_from([f"t{i}" for i in range(14)]), st.booleans()), max_size=20
    ),
    epochs=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans(), st.booleans()),
        min_size=1,
        max_size=20,
    ),
    rate=st.sampled_from([0.5, 1.0]),
)
def test_through_crashes_implicit_negatives_and_corrections_are_learned_exactly_once(
    payments: dict[str, int],
    messages: list[tuple[str, bool]],
    epochs: list[tuple[int, int, bool, bool]],
    rate: float,
) -> None:
    """Labels, the event clock's ticks, the claimer and the learner, snapshotted together at each
    epoch's end; a crash restores the last snapshot (labels and ticks are read again) while MySQL
    (payments, both ledgers, recorded versions) keeps what was written. At the end every payment
    is labelled once, and the newest version learned each kept label once, by its kind."""
    store = FakeStore({})
    store.sample_rate = rate
    _stamped(store, {t: float(d) for t, d in payments.items()})
    implicit = FakeImplicit(store, sample_rate=rate)
    versions = Versions(store)
    record_version = versions.record

    def record(r: VersionRecord) -> None:
        if r.metadata.version not in versions.records:
            implicit.mark_learned(r)
        record_version(r)

    model = CountingModel()
    start = ModelArtifact(model, model_metadata(), pickle.dumps(model))
    record(start.record)
    labels = [
        positioned(label(t, fraud=f, days=12), offset) for offset, (t, f) in enumerate(messages)
    ]
    ticks = [(T0 + timedelta(days=d)).timestamp() for d in range(0, 14)]
    build_claimer = implicit_negatives(implicit, delay=DELAY, retry_seconds=1)

    def new_learner(resume: bytes | None) -> LearnStep:
        lineages = Lineages(versions.newest_after, refresh_seconds=3600)
        if resume is None:
            return LearnStep(OnlineLearner(start, 3), 0.0, 3600, None, lineages)
        learner, last, announce = pickle.loads(resume)
        return LearnStep(learner, last, 3600, announce, lineages)

    def features(x: LabelledPayment) -> LabelledPayment:
        counted = {**dict.fromkeys(FEATURE_NAMES, 0.0), "txn": f"{x.transaction_id}/{x.kind}"}
        return msgspec.structs.replace(x, features=counted)

    clock = Clock()
    snapshot = (0, 0, None, None, new_learner(None).snapshot())
    label_at, tick_at, waiting, claimer_state, learner_state = copy.deepcopy(snapshot)
    join = label_join(store, retry_seconds=1, wait_seconds=50, clock=clock)(waiting)
    claimer: ImplicitNegatives = build_claimer(claimer_state)
    learner = new_learner(learner_state)

    def deliver(out: list[LabelledPayment]) -> None:
        for r in learner.on_batch([features(x) for x in out])[0]:
            record(r)

    for take_labels, take_ticks, timer, crash in epochs * 3:
        deliver(join.on_batch(labels[label_at : label_at + take_labels])[0])
        label_at = min(label_at + take_labels, len(labels))
        if take_ticks and tick_at < len(ticks):
            claimer._last_try = float("-inf")  # a second has passed
            deliver(claimer.on_batch(ticks[tick_at : tick_at + take_ticks])[0])
            tick_at = min(tick_at + take_ticks, len(ticks))
        clock.now += 1
        deliver(join.on_notify()[0])
        deliver(claimer.on_notify()[0])
        if timer:
            for r in learner.on_notify()[0]:
                record(r)
        if crash:
            label_at, tick_at, waiting, claimer_state, learner_state = copy.deepcopy(snapshot)
            join = label_join(store, retry_seconds=1, wait_seconds=50, clock=clock)(waiting)
            claimer = build_claimer(claimer_state)
            learner = new_learner(learner_state)
            # Every start brings each a wake-up first (dataflows/wake_ups.py): no timer before.
            assert join.notify_at() is None and claimer.notify_at() is None
            deliver(join.on_batch([WAKE_UP])[0])
            deliver(claimer.on_batch([WAKE_UP])[0])
        else:
            snapshot = copy.deepcopy(
                (
                    label_at,
                    tick_at,
                    join.snapshot(),
                    claimer.snapshot(),
                    learner.snapshot(),
                )
            )
    # Drain: every label, every tick, the end of input.
    deliver(join.on_batch(labels[label_at:])[0])
    claimer._last_try = float("-inf")
    deliver(claimer.on_batch(ticks[tick_at:])[0])
    deliver(join.on_eof()[0])
    deliver(claimer.on_eof()[0])
    for r in learner.on_eof()[0]:
        record(r)

    # Every payment is labelled (the clock passed them all), by one kind.
    for t, p in store.payments.items():
        assert p.label_kind in ("implicit", "explicit", "correction"), t
        assert (p.label_kind == "implicit") <= (t in implicit.ledger)
        assert (p.label_kind == "correction") <= (t in implicit.ledger)
    # What the learner should hold: each kept label once, by kind.
    expected = Counter()
    for t in implicit.ledger:
        if not implicit.ledger[t].sampled_out:
            expected[f"{t}/{LabelKind.IMPLICIT}"] += 1
    for (_, offset), row in store.ledger.items():
        if row.status == CLAIMED and not (row.reason or "").startswith("sampled_out"):
            t = labels[offset].event.transaction_id
            kind = (
                LabelKind.CORRECTION if (row.reason or "").startswith("correction") else "explicit"
            )
            expected[f"{t}/{kind}"] += 1
    final = versions.newest_after(None)
    assert final is not None
    assert Counter(final.model.learned) == expected, "learned twice or never"
    assert final.metadata.labels_learned == sum(expected.values())
    counts = final.metadata.learner
    assert counts.get("implicit", 0) == sum(1 for k in expected if k.endswith("/implicit"))
    assert counts.get("correction", 0) == sum(1 for k in expected if k.endswith("/correction"))
    # Every kept implicit negative names the version that learned it.
    assert all(
        row.learned_version is not None for row in implicit.ledger.values() if not row.sampled_out
    )


def test_resolve_needs_no_database() -> None:
    """The correction rule is in the pure function the claim runs (no I/O)."""
    payment = SimpleNamespace(
        transaction_id="t1",
        card_id="c-1",
        merchant_id="m",
        terminal_id="t",
        event_time=NAIVE_T0,
        features={},
        model_version="v00001",
        label_is_fraud=False,
        label_kind="implicit",
    )
    outcome, rows, claims = resolve(
        "labels", [ReadLabel(label("t1"), 0, 0)], {}, {"t1": payment}, lambda _: False, NAIVE_T0
    )
    assert outcome.corrections == 1 and list(claims) == ["t1"]
    assert rows[0]["status"] == CLAIMED and rows[0]["reason"].startswith("correction")


def test_a_resumed_claimer_hands_on_the_claims_after_its_snapshot_at_its_first_batch() -> None:
    """Resumed with claims made after its snapshot, the claimer sets no timer (Bytewax would stamp
    what a timer hands on right after the load before the resume epoch, and the learner would
    lose it: dataflows/wake_ups.py); the run's wake-up batch hands them on, and then its timer
    goes on with the rest."""
    store = FakeStore({})
    _stamped(store, {"a": 0.0, "b": 0.5})
    claims = FakeImplicit(store, limit=1)  # one payment a claim: two claims
    first = implicit_negatives(claims, delay=DELAY, retry_seconds=5)(None)
    first.on_batch([(T0 + timedelta(days=3)).timestamp()])
    while first.notify_at() is not None and first._full:
        first.on_notify()
    snapshot = pickle.dumps((0, (T0 + timedelta(days=3)).timestamp()))  # taken before both
    resumed = implicit_negatives(claims, delay=DELAY, retry_seconds=5)(snapshot)
    assert resumed.notify_at() is None
    out, _ = resumed.on_batch([WAKE_UP])
    assert sorted(x.transaction_id for x in out) == ["a", "b"]  # claims 1 and 2 handed on again
    assert resumed.notify_at() is not None  # now its timer runs
