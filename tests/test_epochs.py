"""Epochs on a shared wall-clock grid (dataflows/epochs.py) and the readers that keep to it."""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from datetime import UTC, datetime

import pytest
from bytewax.inputs import StatefulSourcePartition
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from dataflows.epochs import EpochGrid, epoch_interval
from dataflows.keyed_history import keyed_history, mark_key
from dataflows.sources import _Reader
from features.card import CardHistory


def test_epoch_interval_is_read_as_bytewax_run_reads_it() -> None:
    run = ["bytewax.run", "dataflows.scoring:flow", "-w", "1"]
    assert epoch_interval(run, {}) == 10.0
    assert epoch_interval([*run, "-s", "1"], {}) == 1.0
    assert epoch_interval([*run, "--snapshot-interval", "5", "-r", "dir"], {}) == 5.0
    assert epoch_interval(run, {"BYTEWAX_SNAPSHOT_INTERVAL": "30"}) == 30.0
    assert epoch_interval([*run, "-s", "2"], {"BYTEWAX_SNAPSHOT_INTERVAL": "30"}) == 2.0


def test_an_epoch_interval_that_is_not_whole_seconds_is_refused_with_what_came() -> None:
    with pytest.raises(ValueError, match=r"'1\.5'; expected whole seconds"):
        epoch_interval(["bytewax.run", "flow", "-s", "1.5"], {})


def test_a_grid_needs_a_positive_interval_and_margin() -> None:
    with pytest.raises(ValueError, match="interval > 0 and margin > 0"):
        EpochGrid(1.0, 0.0)


def test_an_epoch_on_the_grid_closes_on_its_next_boundary() -> None:
    grid = EpochGrid(1.0, 0.02)  # boundaries every 1.02 s of Unix time
    began = 1000 * 1.02 + 0.003  # on the grid, 3 ms late
    assert grid.hold_until(began, began + 0.5) is None  # not due: read on
    due = began + 1.0
    held = grid.hold_until(began, due - 0.01)
    assert held == pytest.approx(1001 * 1.02)
    assert grid.hold_until(began, 1001 * 1.02 + 0.001) is None  # the boundary came


def test_an_epoch_that_closed_late_is_not_held_a_whole_period() -> None:
    grid = EpochGrid(1.0, 0.02)
    began = 1000 * 1.02 + 0.05  # 50 ms late: its next due is 30 ms past the boundary
    assert grid.hold_until(began, began + 1.0) is None


def test_an_epoch_off_the_grid_is_held_at_most_a_tenth_of_the_period() -> None:
    grid = EpochGrid(10.0, 0.02)
    began = 1000 * 10.02 + 4.0  # 4 s off the grid
    due = began + 10.0
    held = grid.hold_until(began, due - 0.005)
    assert held == pytest.approx(due + 1.002)


def test_no_hold_is_asked_once_the_epoch_is_due() -> None:
    """Bytewax closes the epoch at the activation that finds it due, whatever ``next_awake``
    says; a hold asked then would only pause the next epoch's reads."""
    grid = EpochGrid(10.0, 0.02)
    began = 1000 * 10.02 + 4.0  # off the grid: held before it is due
    due = began + 10.0
    assert grid.hold_until(began, due - 0.001) is not None
    assert grid.hold_until(began, due) is None
    assert grid.hold_until(began, due + 0.3) is None


def test_a_busy_reader_asks_for_its_hold_as_early_as_its_longest_gap() -> None:
    grid = EpochGrid(10.0, 0.02)
    began = 1000 * 10.02 + 0.001  # on the grid: due 19 ms before the boundary
    due = began + 10.0
    assert grid.hold_until(began, due - 0.03) is None  # reads every few ms: not yet
    # A reader that went up to 40 ms between reads asks 40 ms ahead (it could miss a 20 ms
    # window), and never more than most_held ahead.
    assert grid.hold_until(began, due - 0.03, gap=0.04) == pytest.approx(1001 * 10.02)
    assert grid.hold_until(began, due - 0.05, gap=0.04) is None
    assert grid.window(5.0) == grid.most_held


def test_a_busy_reader_that_closed_late_is_held_until_it_is_due() -> None:
    """Past a boundary by less than ``late_allowed``: a reader that reads every few ms closes
    at its next read; a busy one asks to be woken when due, not up to a pass later."""
    grid = EpochGrid(10.0, 0.02)
    began = 1000 * 10.02 + 0.1  # closed 100 ms late: due 80 ms past the next boundary
    due = began + 10.0
    assert grid.hold_until(began, due - 0.01) is None
    assert grid.hold_until(began, due - 0.03, gap=0.04) == pytest.approx(due)


def closes(grid: EpochGrid, built: float, late: list[float], until: float) -> list[float]:
    """When a partition built at ``built`` closes its epochs up to ``until``, by Bytewax's rule
    (close at the first activation at least ``interval`` after the epoch began; activations
    every millisecond while reading, or when ``next_awake`` says), each activation after a
    hold ``late[i]`` seconds late (a busy worker)."""
    began = now = built
    out: list[float] = []
    i = 0
    while now < until:
        if now - began >= grid.interval:
            out.append(now)
            began = now
        held = grid.hold_until(began, now, first=not out)
        if held is None:  # reading: every millisecond (skipping those that change nothing)
            now = max(now + 0.001, began + grid.interval - grid.margin)
        else:
            now = held + late[i % len(late)]
            i += 1
    return out


@settings(max_examples=60, deadline=None)
@given(
    first=st.floats(0, 100),
    second=st.floats(0, 100),
    interval=st.sampled_from([1.0, 2.0, 5.0, 10.0]),
    late=st.lists(st.floats(0, 0.015), min_size=1, max_size=8),
)
def test_two_processes_built_at_any_times_close_their_epochs_together(
    first: float, second: float, interval: float, late: list[float]
) -> None:
    """Whenever two processes built their partitions, within about fifteen epochs both close
    every epoch on the same grid boundary, within the workers' lateness (and a millisecond)."""
    grid = EpochGrid(interval, 0.02)
    settled = math.ceil((max(first, second) + 15 * grid.period) / grid.period)
    until = (settled + 6) * grid.period
    a = {round(c / grid.period): c for c in closes(grid, first, late, until)}
    b = {round(c / grid.period): c for c in closes(grid, second, list(reversed(late)), until)}
    for boundary in range(settled, settled + 5):
        assert boundary in a and boundary in b, (boundary, sorted(a), sorted(b))
        for close in (a[boundary], b[boundary]):
            assert 0 <= close - boundary * grid.period <= 0.015 + 0.0011


@settings(max_examples=60, deadline=None)
@given(
    built=st.floats(0, 1000),
    interval=st.sampled_from([1.0, 10.0]),
    late=st.lists(st.floats(0, 0.015), min_size=1, max_size=8),
)
def test_an_epoch_is_never_shorter_than_the_interval_nor_held_past_a_tenth(
    built: float, interval: float, late: list[float]
) -> None:
    """After the first, every epoch lasts between the interval and a tenth of the period more;
    the first closes on the grid's first boundary after its interval (held up to a period:
    every process is on the grid from its second epoch, rather than going round it for up to
    ten epochs while the others wait)."""
    grid = EpochGrid(interval, 0.02)
    times = [built, *closes(grid, built, late, built + 20 * grid.period)]
    first = times[1]
    assert interval <= first - built <= interval + grid.period + 0.015 + 0.0011
    assert abs(grid.off_grid(first)) <= 0.015 + 0.0011
    for before, after in itertools.pairwise(times[1:]):
        assert interval <= after - before <= interval + grid.most_held + 0.015 + 0.0011


def busy_closes(
    grid: EpochGrid, built: float, gaps: list[float], late: list[float], until: float
) -> list[float]:
    """When a partition built at ``built`` closes its epochs up to ``until`` on a busy worker,
    as Bytewax activates it and :class:`dataflows.sources._Reader` asks for holds: each read
    follows the one before by the next of ``gaps`` (the worker's pass), the reader asks with the
    longest of its last 32 gaps; the activation after a hold comes up to a pass after it (the
    worker finishes the pass it is in: ``late[j]`` of the next gap); an epoch closes at the
    first activation at least ``interval`` after it began."""
    began = now = built
    out: list[float] = []
    seen: deque[float] = deque(maxlen=32)
    last: float | None = None
    i = j = 0
    while now < until:
        if last is not None:
            seen.append(now - last)
        last = now
        held = grid.hold_until(began, now, max(seen, default=0.0), first=not out)
        if now - began >= grid.interval:
            out.append(now)
            began, last = now, None
        gap = gaps[i % len(gaps)]
        i += 1
        if held is None:
            now += gap
        else:
            now, last = held + late[j % len(late)] * gap, None
            j += 1
    return out


@settings(max_examples=40, deadline=None)
@given(
    first=st.floats(0, 100),
    second=st.floats(0, 100),
    interval=st.sampled_from([2.0, 5.0]),
    gaps=st.lists(st.floats(0.002, 0.06), min_size=1, max_size=8),
    late=st.lists(st.floats(0, 0.3), min_size=1, max_size=8),
)
def test_two_busy_processes_close_their_epochs_together(
    first: float, second: float, interval: float, gaps: list[float], late: list[float]
) -> None:
    """Workers whose passes take 2 to 60 ms (three margins), woken after a hold up to 30 % of a
    pass late (so less than the margin), close every epoch on the same boundary
    within about 35 epochs (at most 10 moving a tenth of the period onto the grid, or 200 ms
    late drifting back), within a margin before it or a pass after it. A reader that asked for
    its hold only within the margin missed it whenever a read fell before the window and the
    next after it, closed a pass late, and drifted off the grid (the old rule fails this).
    What no rule of a fixed grid can do: keep a worker whose wakes after a hold come later
    than the margin on average (its epochs last longer than the grid's period; with passes of
    23 ms and wakes a full pass late it drifts 3 ms an epoch, then goes round the grid). Raise
    ``PAYSCORE_EPOCH_ALIGN_MS`` above such a worker's pass."""
    grid = EpochGrid(interval, 0.02)
    settled = math.ceil((max(first, second) + 35 * grid.period) / grid.period)
    until = (settled + 6) * grid.period
    a = {round(c / grid.period): c for c in busy_closes(grid, first, gaps, late, until)}
    b = {
        round(c / grid.period): c
        for c in busy_closes(grid, second, list(reversed(gaps)), list(reversed(late)), until)
    }
    for boundary in range(settled, settled + 5):
        assert boundary in a and boundary in b, (boundary, sorted(a), sorted(b))
        for close in (a[boundary], b[boundary]):
            assert -grid.margin <= close - boundary * grid.period <= max(gaps) + 1e-9


class _Part(StatefulSourcePartition):
    def __init__(self) -> None:
        self.snapshots = 0

    def next_batch(self) -> list:
        return ["x"]

    def snapshot(self) -> object:
        self.snapshots += 1
        return self.snapshots


def _epochs_closed(topic: str, partition: int) -> float:
    value = REGISTRY.get_sample_value(
        "payscore_epochs_closed_total", {"topic": topic, "partition": str(partition)}
    )
    return value or 0.0


def test_a_reader_with_a_grid_holds_its_epoch_back_to_the_boundary_and_counts_its_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grid = EpochGrid(1.0, 0.02)
    # The reader's clock, fixed: a machine that stalls the test for a second between the
    # epoch's close and the look below would otherwise find the next epoch due already.
    boundary = math.ceil(datetime.now(UTC).timestamp() / grid.period) * grid.period
    clock = [boundary - 0.5]
    monkeypatch.setattr("dataflows.sources.time.time", lambda: clock[0])
    reader = _Reader(_Part(), "epochs-test", 3, threading.Event(), None, 1.0, 900.0, grid)
    assert reader.next_batch() == ["x"]
    closed = _epochs_closed("epochs-test", 3)
    assert reader.snapshot() == 1  # an epoch closes now: the next is due in 1 s
    assert _epochs_closed("epochs-test", 3) == closed + 1
    assert reader.next_awake() is None
    # 60 ms before a boundary of the grid, the epoch begun 995 ms ago (due within the margin,
    # 55 ms before the boundary, so held to it).
    now = clock[0] = boundary - 0.06
    reader._began = now - 0.995
    held = reader.next_awake()
    assert held is not None
    assert held.timestamp() == pytest.approx(boundary, abs=1e-6)
    assert held.timestamp() == pytest.approx(grid.hold_until(reader._began, now), abs=2e-6)


def test_a_reader_without_a_grid_never_holds() -> None:
    reader = _Reader(_Part(), "epochs-test", 0, threading.Event(), None, 1.0, 900.0)
    reader._began -= 5.0
    assert reader.next_awake() is None


def test_a_keyed_step_counts_the_time_its_snapshots_take_by_step() -> None:
    build = keyed_history(
        CardHistory, 60.0, remember=4, name="epochs_test_step", mark_key=mark_key(b"k" * 32)
    )

    def taken() -> float:
        value = REGISTRY.get_sample_value(
            "payscore_snapshot_seconds_total", {"step": "epochs_test_step"}
        )
        return value or 0.0

    before = taken()
    step = build(None)
    state = step.snapshot()
    assert taken() > before
    assert build(state).snapshot() == state


def test_a_reader_counts_how_long_it_read_nothing_after_each_epoch_close() -> None:
    def waits() -> float:
        value = REGISTRY.get_sample_value(
            "payscore_epoch_close_wait_seconds_count", {"topic": "epochs-wait-test"}
        )
        return value or 0.0

    reader = _Reader(_Part(), "epochs-wait-test", 1, threading.Event(), None, 1.0, 900.0)
    reader.next_batch()
    assert waits() == 0.0  # no close yet: nothing waited
    reader.snapshot()
    reader.next_batch()
    reader.next_batch()
    assert waits() == 1.0  # one close, one wait (the first read after it)


def test_a_reader_asks_for_its_hold_with_the_longest_of_its_last_32_gaps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grid = EpochGrid(10.0, 0.02)
    boundary = math.ceil(datetime.now(UTC).timestamp() / grid.period) * grid.period
    clock = [boundary - 10.02]  # the epoch begins on the grid: due 20 ms before the boundary
    monkeypatch.setattr("dataflows.sources.time.time", lambda: clock[0])
    reader = _Reader(_Part(), "epochs-gap-test", 0, threading.Event(), None, 1.0, 900.0, grid)
    reader.snapshot()
    clock[0] = boundary - 2.0
    for step in [0.5] + [0.04] * 32:  # one pass of 500 ms (a collection), then 32 of 40 ms
        reader.next_batch()
        clock[0] += step
    reader.next_batch()
    assert max(reader._gaps) == pytest.approx(0.04, abs=1e-6)  # the long one is 33 reads ago
    clock[0] = boundary - 0.055  # 35 ms before due: within the longest gap, not the margin
    held = reader.next_awake()
    assert held is not None and held.timestamp() == pytest.approx(boundary, abs=1e-6)
    # Neither the time held nor the wait after a close is a gap.
    before = list(reader._gaps)
    clock[0] = boundary + 0.001
    reader.next_batch()
    reader.snapshot()
    clock[0] = boundary + 3.0
    reader.next_batch()
    assert list(reader._gaps) == before


def test_a_first_epoch_is_held_to_the_next_boundary_whatever_the_distance() -> None:
    grid = EpochGrid(10.0, 0.02)
    began = 1000 * 10.02 + 1.3  # built 1.3 s past a boundary: due 1.28 s past the next one
    due = began + 10.0
    assert grid.hold_until(began, due - 0.01, first=True) == pytest.approx(1002 * 10.02)
    # Later epochs as late as that drift back instead (a margin an epoch): going round to the
    # next boundary would make every other process wait up to a period for ten epochs.
    assert grid.hold_until(began, due - 0.01) is None


def test_a_reader_holds_its_first_epoch_to_the_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    grid = EpochGrid(10.0, 0.02)
    boundary = math.ceil(datetime.now(UTC).timestamp() / grid.period) * grid.period
    clock = [boundary + 1.3]
    monkeypatch.setattr("dataflows.sources.time.time", lambda: clock[0])
    reader = _Reader(_Part(), "epochs-first-test", 0, threading.Event(), None, 1.0, 900.0, grid)
    clock[0] = boundary + 11.29  # 10 ms before its first due
    held = reader.next_awake()
    assert held is not None
    assert held.timestamp() == pytest.approx(boundary + 2 * grid.period, abs=1e-6)
    clock[0] = boundary + 2 * grid.period
    reader.snapshot()  # its first close, on the grid
    clock[0] = boundary + 2 * grid.period + 10.0 - 0.01
    assert reader.next_awake().timestamp() == pytest.approx(  # type: ignore[union-attr]
        boundary + 3 * grid.period, abs=1e-6
    )
