"""Epoch boundaries on a wall-clock grid shared by every process: none waits for another.

**Why.** Bytewax 0.21.1 closes a source partition's epoch when its own timer has run the epoch
interval (``-s``, 10 s by default), counted from when that partition was built or last closed an
epoch, and a partition whose epoch has advanced reads nothing more until the previous epoch is
complete everywhere: every partition of every process closed it, and everything read in it was
stored (``src/inputs.rs`` 438 and 501-523, ``partitioned_input``: ``if
!probe.less_than(&epoch)``; ``benchmarks/BYTEWAX-INTERNALS.md`` section 6). The processes build
their partitions at slightly different moments, and nothing brings their timers together again:
measured with 2 processes and ``-s 1``, one process closed every epoch 115 ms before the other,
then read nothing for 160-190 ms (the other's lag plus the epoch's tail being stored), while the
other waited 56-76 ms; the payments of its partitions waited with it, which set the flow's p99
(README, "Throughput", latency). The lag is fixed at start-up and does not depend on the
interval, so the stall came back every epoch, 1 s or 10 s.

**What.** Every reader (:mod:`dataflows.sources`) holds its epoch's last reads back to a
boundary of one grid: the multiples of ``period = interval + margin`` seconds of Unix time,
the same in every process of the flow (they share the interval; hosts share the time through
NTP). Bytewax closes the epoch at its first activation from ``interval`` after the epoch
began; a reader that is due to close (within ``margin``) and would close before its grid
boundary asks Bytewax not to call it again before that boundary (``next_awake``), so the epoch
closes on the boundary, in every process at once. The margin is what makes the grid reachable
every epoch: an epoch lasts at least ``interval``, so the grid's period must be longer; each
epoch pauses its partition's reads for about ``margin`` (20 ms by default,
``PAYSCORE_EPOCH_ALIGN_MS``; 0 turns the alignment off). **A reader's first epoch** (it
was built or resumed off the grid) is held to the grid's next boundary whatever the distance
(up to a period, once), so that every process is on the grid from its second epoch. Before
session 11, a reader built off the grid held back at most a tenth of the period an epoch: up to
ten epochs of going round the grid, while readers that started nearer a boundary were already
on it and read nothing after each close until the last arrived (a latency run at half the
maximum rate read nothing for 7.6 s after every close in one process, all its measured
epochs; a trace of every close showed all readers holding a tenth of the period an epoch).
Later, a reader that closed late (a busy worker, a long pause) by at most ``late_allowed`` (1.4 s
at 10 s epochs) is not held and drifts back by itself, ``margin`` an epoch; one later than that
is held forward a tenth of the period an epoch (``late_allowed`` is the lateness at which both
ways make the others wait as long in all).

**A busy worker.** Bytewax asks a reader for its next batch once per pass of its worker, and a
pass that runs the other steps can take longer than the margin: a reader that asked for its
hold only within ``margin`` of being due could read just before that window and next just after
it, close up to a pass late, drift later every epoch and wander off the grid; the partitions of
every other process then read nothing after each of their closes for as long as it is off (one
latency run in six at half the maximum rate read nothing for 7.2-7.8 s after every close, p99
10.2 s; that this was its cause is likely, not shown). So a reader asks as early as the longest
of its last 32 gaps between reads (at most ``most_held``; :meth:`EpochGrid.window`: a read then
falls within the window unless a pass is longer than all of the last 32; one long pass, a
garbage collection, widens the window, and the pause before a close, only until 32 more reads
have passed), a busy one that closed late is woken when its
epoch is due rather than a pass later, and no hold is asked once the epoch is due (Bytewax
closes it at that activation whatever ``next_awake`` says; the hold only paused the next
epoch's reads). The model of ``tests/test_epochs.py`` (``busy_closes``) holds the grid with
passes up to three margins when a wake after a hold comes within a third of a pass; the old rule
does not. **What no rule on a fixed grid can do**: keep a worker whose wakes after a hold come
later than the margin on average (its epochs then last longer than the grid's period, and it
drifts, then goes round the grid): raise ``PAYSCORE_EPOCH_ALIGN_MS`` above such a worker's pass.
The histogram ``payscore_epoch_close_off_grid_seconds`` (by topic) shows how far a flow's closes
are from the grid.
Nothing about what is read, stored or snapshotted changes: only when epochs close.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from dataflows.bytewax_options import bytewax_options

DEFAULT_INTERVAL_SECONDS = 10.0  # bytewax.run's without recovery


def epoch_interval(argv: Sequence[str], environ: Mapping[str, str]) -> float:
    """The epoch interval in seconds as ``python -m bytewax.run`` takes it: ``-s`` /
    ``--snapshot-interval`` (whole seconds), else ``BYTEWAX_SNAPSHOT_INTERVAL``, else 10."""
    value = bytewax_options(argv).snapshot_interval or environ.get("BYTEWAX_SNAPSHOT_INTERVAL")
    if value is None or value == "":
        return DEFAULT_INTERVAL_SECONDS
    try:
        seconds = float(int(value))
    except ValueError:
        raise ValueError(
            f"the epoch interval (-s / --snapshot-interval / BYTEWAX_SNAPSHOT_INTERVAL) is "
            f"{value[:40]!r}; expected whole seconds, as bytewax.run reads it"
        ) from None
    return seconds


class EpochGrid:
    """Where a partition's epoch should close: on the next multiple of ``interval + margin``
    seconds of Unix time. Pure: the caller gives the times."""

    def __init__(self, interval: float, margin: float) -> None:
        if interval <= 0 or margin <= 0:
            raise ValueError(
                f"an epoch grid needs interval > 0 and margin > 0 seconds; got {interval!r} "
                f"and {margin!r}"
            )
        self.interval = interval
        self.margin = margin
        self.period = interval + margin
        self.most_held = max(2 * margin, self.period / 10)  # off the grid: per epoch at most
        # Late past a boundary by at most this, a reader drifts back (``margin`` an epoch)
        # rather than going round to the next boundary (``most_held`` an epoch): the lateness
        # at which both ways make the other readers wait as long in all.
        self.late_allowed = self.period / math.sqrt(1 + self.most_held / margin)

    def off_grid(self, t: float) -> float:
        """Seconds from the nearest grid boundary to ``t``: negative before it, positive after."""
        return t - round(t / self.period) * self.period

    def window(self, gap: float) -> float:
        """How long before its epoch is due a reader asks to be held: the margin, or its longest
        recent ``gap`` between reads when that is longer (a read then falls within the window),
        at most ``most_held``."""
        return min(self.most_held, max(self.margin, gap))

    def hold_until(
        self, began: float, now: float, gap: float = 0.0, first: bool = False
    ) -> float | None:
        """The time (Unix seconds) before which the partition whose epoch began at ``began``
        should not be activated again, or None to read on. ``now`` is when it asks; ``gap`` is
        the longest it recently went between two reads (seconds; a busy worker activates its
        readers less often), so that it asks early enough not to miss its hold. ``first``: the
        partition's first epoch (built or resumed), held to the grid's next boundary whatever
        the distance, so that every process is on the grid from its second epoch."""
        due = began + self.interval  # Bytewax closes at its first activation from then
        if now < due - self.window(gap):
            return None  # not due yet: read on
        if now >= due:
            return None  # Bytewax closes the epoch at this activation: a hold would only pause
        boundary = math.ceil(due / self.period) * self.period
        ahead = boundary - due
        if first or ahead <= self.most_held:
            until = boundary
        elif self.period - ahead > self.late_allowed:
            until = due + self.most_held  # far off the grid: onto it, a tenth of the period
        elif gap > self.margin:  # late, past a boundary, on a busy worker:
            until = due  # close when due, not a pass later; back on the grid by itself
        else:  # late, past a boundary: closes at its next read, back on the grid by itself
            return None
        return until if now < until else None
