"""The label join's gather phase (``dataflows/label_join.py``): new labels are held until a card
group holds ``gather_labels`` or its oldest has been held ``gather_seconds``, then claimed in one
batch; held labels are in the snapshot, every label is claimed exactly once through crashes and
at the end of input, and none is held past its time."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.label_join import LabelJoin, label_join
from dataflows.messages import Positioned
from dataflows.wake_ups import WAKE_UP
from features.contract import FraudLabel
from storage.labels import Claimed, ReadLabel
from tests.test_labels import Clock, FakeStore, label, positioned

TXNS = [f"t{i}" for i in range(10)]


class Sizes:
    """A claim that records how many labels each call tried."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.sizes: list[int] = []

    def __call__(self, reads: list[ReadLabel], expired=lambda _: False) -> Claimed:
        self.sizes.append(len(reads))
        return self.store(reads, expired)


def held_of(join: LabelJoin) -> list[tuple[ReadLabel, float]]:
    """The held labels with the seconds each has been held, as the snapshot has them."""
    _, held = pickle.loads(join.snapshot())
    return held


Step = tuple[str, float]
STEPS = st.one_of(
    st.tuples(st.just("batch"), st.integers(1, 8).map(float)),
    st.tuples(st.just("wait"), st.sampled_from([0.25, 0.5, 1.0, 3.0])),
    st.tuples(st.just("store"), st.just(0.0)),
    st.tuples(st.just("snapshot"), st.just(0.0)),
    st.tuples(st.just("crash"), st.just(0.0)),
)


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(st.tuples(st.sampled_from(TXNS), st.booleans()), min_size=1, max_size=40),
    stored=st.sets(st.sampled_from(TXNS)),
    steps=st.lists(STEPS, max_size=60),
    gather_seconds=st.sampled_from([0.0, 0.5, 2.0]),
    gather_labels=st.sampled_from([1, 3, 500]),
    retry_seconds=st.sampled_from([1.0, 5.0]),
)
def test_any_run_of_batches_timers_snapshots_and_crashes_claims_every_label_once_in_time(
    messages: list[tuple[str, bool]],
    stored: set[str],
    steps: list[Step],
    gather_seconds: float,
    gather_labels: int,
    retry_seconds: float,
) -> None:
    """Driven as Bytewax drives it: ``on_batch`` with what was read, ``on_notify`` exactly when
    ``notify_at`` says (here ``due_in``, on the test's clock), a snapshot now and then, and a
    crash that resumes the join and the state downstream (the fraud rates: here the positions
    that reached them) from the last snapshot and reads the labels topic again from its offset,
    while MySQL (the fake store) keeps what was written. Then the end of input."""
    store = FakeStore({t: "c-1" for t in stored})
    clock = Clock()
    build = label_join(
        store,
        retry_seconds=retry_seconds,
        wait_seconds=1000,
        gather_seconds=gather_seconds,
        gather_labels=gather_labels,
        clock=clock,
    )
    labels = [positioned(label(t, fraud=f), offset) for offset, (t, f) in enumerate(messages)]
    join = build(None)
    offset = 0
    rates: list[tuple[int, int]] = []
    snapshot: tuple[int, bytes | None, list[tuple[int, int]]] = (0, None, [])

    def deliver(out: tuple[list, bool]) -> None:
        rates.extend((x.label_partition, x.label_offset) for x in out[0])
        # Never held past its time: every label held has been held less than gather_seconds,
        # and fewer than gather_labels are held (a resumed join's labels are due at once).
        held = held_of(join)
        assert len(held) < gather_labels or join.due_in() == 0.0
        assert all(seconds < gather_seconds for _, seconds in held) or join.due_in() == 0.0

    for kind, amount in steps:
        if kind == "batch":
            values = labels[offset : offset + int(amount)]
            if values:
                deliver(join.on_batch(values))
                offset += len(values)
        elif kind == "wait":
            left = amount
            for _ in range(1000):  # Bytewax's timer: on_notify when notify_at comes
                due = join.due_in()
                if due is None or due > left:
                    break
                clock.now += due
                left -= due
                deliver(join.on_notify())
            else:
                raise AssertionError("the join's timer is due again and again")
            clock.now += left
        elif kind == "store":
            missing = sorted({t for t, _ in messages} - set(store.payments))
            if missing:
                store.store(missing[0])
        elif kind == "snapshot":
            snapshot = (offset, join.snapshot(), list(rates))
        else:  # a crash: back to the last snapshot; MySQL keeps what was written
            offset, state, kept = snapshot
            rates = list(kept)
            join = build(state)
            assert join.notify_at() is None  # no timer: the run's wake-up batch comes first
            deliver(join.on_batch([WAKE_UP]))  # join_labels: one a group at every start
    for t, _ in messages:
        store.store(t)
    if offset < len(labels):
        deliver(join.on_batch(labels[offset:]))
    out, discard = join.on_eof()  # the end of input: everything held is claimed
    rates += [(x.label_partition, x.label_offset) for x in out]

    assert discard is True and held_of(join) == []
    assert set(store.ledger) == {(0, o) for o in range(len(labels))}, "a label was never tried"
    assert {row.status for row in store.ledger.values()} <= {"claimed", "rejected"}
    assert sorted(rates) == sorted(store.claimed()), "the rates saw a claimed label twice or never"


def test_labels_are_held_until_the_gather_time_then_claimed_in_one_batch() -> None:
    store = FakeStore({f"t{i}": "c-1" for i in range(300)})
    sizes = Sizes(store)
    clock = Clock()
    join = LabelJoin(sizes, [], retry_seconds=5, wait_seconds=600, gather_seconds=2, clock=clock)
    out: list = []
    for batch in range(5):  # 60 labels every half second
        values = [positioned(label(f"t{batch * 60 + i}"), batch * 60 + i) for i in range(60)]
        claimed, discard = join.on_batch(values)
        out += claimed
        if batch < 4:
            assert claimed == [] and discard is False and sizes.sizes == []
        clock.now += 0.5
    # The first batch came 2 s before the fifth: that one found the claim due and took all 300.
    assert sizes.sizes == [300] and len(out) == 300
    assert join.due_in() is None and join.notify_at() is None


def test_a_full_group_is_claimed_at_once_and_the_timer_claims_the_rest() -> None:
    store = FakeStore({f"t{i}": "c-1" for i in range(150)})
    sizes = Sizes(store)
    clock = Clock()
    join = LabelJoin(
        sizes, [], retry_seconds=5, wait_seconds=600, gather_seconds=2, gather_labels=100,
        clock=clock,
    )  # fmt: skip
    join.on_batch([positioned(label(f"t{i}"), i) for i in range(60)])
    assert sizes.sizes == [] and join.due_in() == 2.0
    clock.now += 0.5
    join.on_batch([positioned(label(f"t{i}"), i) for i in range(60, 120)])
    assert sizes.sizes == [120]  # 100 held or more: claimed with that batch
    clock.now += 0.5
    join.on_batch([positioned(label(f"t{i}"), i) for i in range(120, 150)])
    assert join.due_in() == 2.0  # the oldest held label came just now
    clock.now += 2
    assert join.due_in() == 0.0
    out, discard = join.on_notify()
    assert sizes.sizes == [120, 30] and len(out) == 30 and discard is True


def test_the_end_of_input_claims_every_held_label() -> None:
    store = FakeStore({"t1": "c-1"})
    sizes = Sizes(store)
    join = LabelJoin(sizes, [], retry_seconds=5, wait_seconds=600, gather_seconds=60)
    assert join.on_batch([positioned(label("t1"), 0), positioned(label("t2"), 1)])[0] == []
    out, discard = join.on_eof()
    assert [x.transaction_id for x in out] == ["t1"] and sizes.sizes == [2]
    assert discard is False and store.ledger[(0, 1)].status == "waiting"  # t2: no payment yet


def test_a_labels_wait_for_its_payment_starts_at_its_first_try_not_when_it_was_held() -> None:
    """The outcome is the one the label had when nothing was held: 1 s of wait after its first
    try, however long it was held before."""
    store = FakeStore({})
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=0.5, wait_seconds=1, gather_seconds=2, clock=clock)
    join.on_batch([positioned(label("t1"), 0)])
    clock.now += 2
    join.on_notify()
    assert store.ledger[(0, 0)].status == "waiting"  # held 2 s, not given up at its first try
    clock.now += 1
    assert join.on_notify() == ([], True)
    assert store.ledger[(0, 0)].status == "rejected"


def test_held_labels_resume_from_the_snapshot_and_one_claimed_since_is_handed_on_at_once() -> None:
    """The snapshot holds the held labels with the seconds they were held; a crash after their
    claim brings them back, and the run's first batch (its wake-up) claims them again: MySQL
    shows them claimed by the same messages, so they are handed on again (the state downstream
    has not seen them). No timer before it: Bytewax would stamp what a timer hands on right
    after the load before the resume epoch, and the steps downstream would lose it
    (``dataflows/label_join.py``, ``tests/test_label_join_resume_integration.py``)."""
    store = FakeStore({"t1": "c-1", "t2": "c-1"})
    clock = Clock()
    build = label_join(store, retry_seconds=5, wait_seconds=600, gather_seconds=2, clock=clock)
    join = build(None)
    join.on_batch([positioned(label("t1"), 0), positioned(label("t2"), 1)])
    clock.now += 0.5
    snapshot = join.snapshot()
    assert [(r.label.transaction_id, s) for r, s in held_of(join)] == [("t1", 0.5), ("t2", 0.5)]
    clock.now += 1.5
    claimed, _ = join.on_notify()  # claimed and handed on, then the crash loses that
    assert sorted(x.transaction_id for x in claimed) == ["t1", "t2"]
    clock.now += 3600  # stopped for an hour: that time does not count
    resumed = build(snapshot)
    assert resumed.due_in() is None and resumed.notify_at() is None
    out, discard = resumed.on_batch([WAKE_UP])
    assert sorted(x.transaction_id for x in out) == ["t1", "t2"] and discard is True
    assert all(x.label_offset in (0, 1) for x in out)


def test_a_snapshot_written_before_the_gather_phase_resumes_its_waiting_labels() -> None:
    """The snapshot of the join at ``ed3056c`` (before labels were held): a list of (label,
    seconds waited). An upgraded flow resumes those labels as waiting ones, tries them at its
    first call, and gives each up only when its own wait has run out."""
    store = FakeStore({"t1": "c-1"})
    clock = Clock()
    old: bytes = pickle.dumps(
        [(ReadLabel(label("t1"), 0, 0), 4.0), (ReadLabel(label("t9"), 0, 1), 598.0)],
        protocol=pickle.HIGHEST_PROTOCOL,
    )  # what LabelJoin.snapshot() of ed3056c returns
    join = label_join(store, retry_seconds=5, wait_seconds=600, gather_seconds=2, clock=clock)(old)
    assert join.notify_at() is None  # the run's first batch tries them
    out, discard = join.on_batch([positioned(label("t1"), 2)])  # any batch: tried at once
    assert [(x.transaction_id, x.label_offset) for x in out] == [("t1", 0)]
    assert discard is False
    waited, held = pickle.loads(join.snapshot())
    assert [(r.label.transaction_id, s) for r, s in waited] == [("t9", 598.0)]
    assert held == []  # the new label of t1 was tried with them: a duplicate now
    assert store.ledger[(0, 2)].status == "rejected"
    clock.now += 2
    assert join.on_notify() == ([], True)  # t9's 600 s have run out
    assert store.ledger[(0, 1)].status == "rejected"


def test_a_resumed_join_with_no_labels_is_due_for_nothing() -> None:
    join = label_join(FakeStore({}), retry_seconds=5, wait_seconds=600, gather_seconds=2)(
        pickle.dumps(([], []))
    )
    assert join.due_in() is None and join.notify_at() is None
    assert join.on_eof() == ([], True)


def _values(n: int) -> list[Positioned[FraudLabel]]:
    return [positioned(label(f"t{i}"), i) for i in range(n)]


def test_with_no_gather_time_every_batch_is_claimed_as_it_comes() -> None:
    """``PAYSCORE_LABEL_GATHER_SECONDS=0``: the join as it was, one claim a batch."""
    store = FakeStore({f"t{i}": "c-1" for i in range(10)})
    sizes = Sizes(store)
    join = LabelJoin(sizes, [], retry_seconds=5, wait_seconds=600, gather_seconds=0)
    values = _values(10)
    assert len(join.on_batch(values[:4])[0]) == 4
    assert len(join.on_batch(values[4:])[0]) == 6
    assert sizes.sizes == [4, 6]


def test_a_wake_up_is_no_label_and_a_group_with_nothing_to_claim_lets_its_state_go() -> None:
    """``join_labels`` sends every group a wake-up at the start of every run: a group that was
    not resumed with labels claims nothing for it, and a new one is discarded at once."""
    store = FakeStore({"t1": "c-1"})
    sizes = Sizes(store)
    join = LabelJoin(sizes, [], retry_seconds=5, wait_seconds=600, gather_seconds=2, clock=Clock())
    assert join.on_batch([WAKE_UP]) == ([], True) and sizes.sizes == []
    out, discard = join.on_batch([WAKE_UP, positioned(label("t1"), 0)])  # the wake-up with a label
    assert out == [] and discard is False and join.due_in() == 2.0  # the label is held
