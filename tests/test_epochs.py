"""Epochs on a shared wall-clock grid (dataflows/epochs.py) and the readers that keep to it."""

from __future__ import annotations

import itertools
import math
import threading
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
    held = grid.hold_until(began, due)
    assert held == pytest.approx(due + 1.002)


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
        held = grid.hold_until(began, now)
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
    grid = EpochGrid(interval, 0.02)
    times = [built, *closes(grid, built, late, built + 20 * grid.period)]
    for before, after in itertools.pairwise(times):
        assert interval <= after - before <= interval + grid.most_held + 0.015 + 0.0011


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
