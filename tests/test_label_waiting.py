"""The label join's waiting labels are bounded (``PAYSCORE_LABEL_WAITING_MAX``): a flood of labels
for ids no payment has (forged, or a broken producer's) cannot grow a group's state, snapshot and
claims without end. Past the bound the oldest waiting label is rejected at once as
``waiting_full``, in the claim's own transaction; every label still ends exactly once, through
snapshots and crashes; and the rejections are logged a few lines a minute, not one a label."""

from __future__ import annotations

import logging
import pickle
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from dataflows.label_join import LabelJoin, RejectionLog, label_join
from dataflows.metrics import LABELS
from dataflows.wake_ups import WAKE_UP
from storage.labels import Claimed, ReadLabel, Rejected, claim_labels
from storage.sink import MySQLSinkPartition
from storage.tables import fraud_labels, scored_payments
from tests.test_labels import Clock, FakeStore, _row, label, positioned

KNOWN = [f"t{i}" for i in range(4)]
FORGED = [f"forged-{i}" for i in range(6)]  # never stored


class Bounded(FakeStore):
    """The fake store with a bound, and a check that a label's final row is written once and
    never changed: claimed or rejected is the end."""

    def __init__(self, payments: dict[str, str], waiting_max: int) -> None:
        super().__init__(payments)
        self.waiting_max = waiting_max

    def __call__(self, reads: list[ReadLabel], expired=lambda _: False) -> Claimed:
        before = {p: row.status for p, row in self.ledger.items()}
        outcome = super().__call__(reads, expired)
        for position, status in before.items():
            if status in ("claimed", "rejected"):
                assert self.ledger[position].status == status, f"{position} ended twice"
        assert len(outcome.waiting) <= self.waiting_max
        return outcome


def waiting_of(join: LabelJoin) -> list[ReadLabel]:
    waited, _ = pickle.loads(join.snapshot())
    return [read for read, _ in waited]


STEPS = st.one_of(
    st.tuples(st.just("batch"), st.integers(1, 12).map(float)),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 3.0, 20.0])),
    st.tuples(st.just("store"), st.just(0.0)),
    st.tuples(st.just("snapshot"), st.just(0.0)),
    st.tuples(st.just("crash"), st.just(0.0)),
)


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(st.sampled_from(KNOWN + FORGED), min_size=1, max_size=50),
    stored=st.sets(st.sampled_from(KNOWN)),
    steps=st.lists(STEPS, max_size=60),
    waiting_max=st.sampled_from([1, 2, 5]),
    gather_seconds=st.sampled_from([0.0, 2.0]),
    gather_labels=st.sampled_from([3, 500]),
    end_of_input=st.booleans(),
)
def test_whatever_comes_the_waiting_labels_stay_bounded_and_each_label_ends_once(
    messages: list[str],
    stored: set[str],
    steps: list[tuple[str, float]],
    waiting_max: int,
    gather_seconds: float,
    gather_labels: int,
    end_of_input: bool,
) -> None:
    """Batches of labels, clock ticks with the timers they bring, payments stored meanwhile,
    snapshots, crashes that resume from the last snapshot (MySQL keeps what was written, the
    labels topic is read again from the snapshot's offset), and maybe the end of input: after
    every call no more than ``waiting_max`` labels wait, and at the end each label read is
    claimed (handed on once), rejected, or waiting (in the join's state), exactly one of them."""
    store = Bounded({t: "c-1" for t in stored}, waiting_max)
    clock = Clock()
    build = label_join(
        store,
        retry_seconds=1.0,
        wait_seconds=30.0,
        gather_seconds=gather_seconds,
        gather_labels=gather_labels,
        clock=clock,
    )
    labels = [positioned(label(t), offset) for offset, t in enumerate(messages)]
    join = build(None)
    offset = 0
    rates: list[tuple[int, int]] = []
    snapshot: tuple[int, bytes | None, list[tuple[int, int]]] = (0, None, [])

    def deliver(out: tuple[list, bool]) -> None:
        rates.extend((x.label_partition, x.label_offset) for x in out[0])
        assert len(waiting_of(join)) <= waiting_max

    for kind, amount in steps:
        if kind == "batch":
            values = labels[offset : offset + int(amount)]
            if values:
                deliver(join.on_batch(values))
                offset += len(values)
        elif kind == "wait":
            left = amount
            for _ in range(1000):
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
            missing = sorted(set(KNOWN) - set(store.payments))
            if missing:
                store.store(missing[0])
        elif kind == "snapshot":
            snapshot = (offset, join.snapshot(), list(rates))
        else:
            offset, state, kept = snapshot
            rates = list(kept)
            join = build(state)
            deliver(join.on_batch([WAKE_UP]))
    if offset < len(labels):
        deliver(join.on_batch(labels[offset:]))
    if end_of_input:
        deliver(join.on_eof())
    else:
        clock.now += gather_seconds
        deliver(join.on_notify())  # the gather timer: every held label is tried

    read = {(0, o) for o in range(len(labels))}
    assert set(store.ledger) == read, "a label was never tried"
    waiting = {r.position for r in waiting_of(join)}
    statuses = {p: row.status for p, row in store.ledger.items()}
    assert waiting == {p for p, s in statuses.items() if s == "waiting"}
    assert len(waiting) <= waiting_max
    assert sorted(rates) == sorted(p for p, s in statuses.items() if s == "claimed"), (
        "a claimed label was handed on twice or never"
    )
    for p, row in store.ledger.items():
        if row.status == "rejected" and messages[p[1]] in FORGED:
            assert row.reason.split(":")[0] in ("waiting_full", "not_found"), row.reason


def test_past_the_bound_the_oldest_waiting_label_is_rejected_and_a_known_one_claimed() -> None:
    store = Bounded({"t0": "c-1"}, waiting_max=3)
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=1, wait_seconds=600, clock=clock)
    before = LABELS.labels("rejected_waiting_full")._value.get()
    join.on_batch([positioned(label(f"forged-{i}"), i) for i in range(3)])
    assert [r.offset for r in waiting_of(join)] == [0, 1, 2]
    out, _ = join.on_batch([positioned(label("forged-3"), 3), positioned(label("t0"), 4)])
    assert [x.transaction_id for x in out] == ["t0"]
    assert [r.offset for r in waiting_of(join)] == [1, 2, 3]
    assert store.ledger[(0, 0)].status == "rejected"
    assert store.ledger[(0, 0)].reason.startswith("waiting_full: more than 3 labels")
    out, _ = join.on_batch([positioned(label(f"forged-{i}"), i) for i in range(5, 10)])
    assert [r.offset for r in waiting_of(join)] == [7, 8, 9]  # new ones beyond it too
    assert {o for (_, o), r in store.ledger.items() if r.status == "rejected"} == {0, 1, 2, 3, 5, 6}
    assert LABELS.labels("rejected_waiting_full")._value.get() - before == 6
    assert len(pickle.loads(join.snapshot())[0]) == 3


def test_a_snapshot_holding_more_than_the_bound_is_cut_to_it_at_its_first_claim() -> None:
    """A snapshot of a join without the bound (or with a larger one): the first batch of the
    resumed run gives up the oldest beyond it."""
    store = Bounded({}, waiting_max=10**6)
    clock = Clock()
    join = LabelJoin(store, [], retry_seconds=1, wait_seconds=600, clock=clock)
    join.on_batch([positioned(label(f"forged-{i}"), i) for i in range(8)])
    state = join.snapshot()
    store.waiting_max = 2
    resumed = label_join(store, retry_seconds=1, wait_seconds=600, clock=clock)(state)
    resumed.on_batch([WAKE_UP])
    assert [r.offset for r in waiting_of(resumed)] == [6, 7]
    assert [store.ledger[(0, o)].status for o in range(8)] == ["rejected"] * 6 + ["waiting"] * 2


def rejection(offset: int, reason: str = "waiting_full: more than 3") -> Rejected:
    return Rejected(ReadLabel(label(f"forged-{offset}"), 0, offset), reason)


def test_a_flood_of_rejections_is_logged_once_a_minute_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    rejections = RejectionLog(every_seconds=60, clock=clock)
    caplog.set_level(logging.WARNING, logger="dataflows.label_join")
    for offset in range(1000):
        rejections.rejected(rejection(offset))
        rejections.flush()
        clock.now += 0.01  # 100 a second, for 10 s
    rejections.rejected(rejection(5000, "not_found: no payment"))  # another reason: its own line
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "'forged-0'" in lines[0] and "offset 0)" in lines[0] and "not logged" not in lines[0]
    assert "not_found" in lines[1]
    clock.now += 60
    rejections.flush()  # a claim a minute after the first line: the count of the others
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[2].startswith("999 labels rejected as waiting_full since")
    rejections.rejected(rejection(6000))
    rejections.flush()
    assert len(caplog.records) == 3  # within a minute of the count's line: counted
    clock.now += 61
    rejections.rejected(rejection(7000))
    last = caplog.records[-1].getMessage()
    assert "'forged-7000'" in last and "; and 1 more rejected as waiting_full since" in last
    assert caplog.records[-1].unlogged == 1  # type: ignore[attr-defined]


def test_a_forged_transaction_id_is_logged_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dataflows.label_join")
    long = Rejected(ReadLabel(label("x" * 5000), 0, 1), "not_found: no payment")
    RejectionLog(clock=Clock()).rejected(long)
    assert len(caplog.records[-1].getMessage()) < 400
    assert len(caplog.records[-1].transaction_id) < 200  # type: ignore[attr-defined]


@pytest.mark.integration
def test_in_mysql_the_oldest_waiting_rows_become_rejected_in_the_claim(engine: Engine) -> None:
    MySQLSinkPartition(engine, scored_payments).write_batch([_row("t0", "c-1")])
    reads = [ReadLabel(label(f"forged-{i}"), 0, i) for i in range(3)]
    with engine.begin() as c:
        first = claim_labels(c, "labels", reads, waiting_max=5)
    assert first.waiting == reads and first.rejected == []
    more = [ReadLabel(label("forged-3"), 0, 3), ReadLabel(label("t0"), 0, 4)]
    with engine.begin() as c:
        second = claim_labels(c, "labels", [*reads, *more], waiting_max=2)
    assert [x.transaction_id for x in second.learnable] == ["t0"]
    assert [r.offset for r in second.waiting] == [2, 3]
    assert [(r.read.offset, r.reason.split(":")[0]) for r in second.rejected] == [
        (0, "waiting_full"),
        (1, "waiting_full"),
    ]
    fl = fraud_labels.c
    with engine.connect() as c:
        rows = {
            r.kafka_offset: SimpleNamespace(**r._mapping)
            for r in c.execute(select(fl.kafka_offset, fl.status, fl.reason, fl.resolved_at))
        }
    assert [rows[o].status for o in range(5)] == [
        "rejected",
        "rejected",
        "waiting",
        "waiting",
        "claimed",
    ]
    assert rows[0].reason.startswith("waiting_full: more than 2 labels of its card group")
    assert rows[0].resolved_at is not None and rows[2].resolved_at is None
    with engine.begin() as c:  # read again (a replay): nothing changes, nothing is handed on
        again = claim_labels(c, "labels", [*reads, *more], waiting_max=2)
    assert again.rejected == [] and [r.offset for r in again.waiting] == [2, 3]
