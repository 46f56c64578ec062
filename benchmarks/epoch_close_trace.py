"""Where the pause at each epoch close goes, from the flow's call files
(``PAYSCORE_CALL_TRACE_DIR``, ``dataflows/call_trace.py``).

    python benchmarks/epoch_close_trace.py DIR [--since UNIX] [--until UNIX] [--timeline]

After a payments partition closes an epoch, Bytewax reads nothing more from it until every
partition of every process has closed that epoch and all of its work is done (with recovery:
written), ``benchmarks/BYTEWAX-INTERNALS.md`` section 6. That pause sets the flow's p99. For
each process (one file) and each epoch close between ``--since`` and ``--until``, this finds
the close (the payments readers' ``snapshot`` calls) and the first payments read after it, and
splits the time between them:

- **tail**: until the last call of the epoch's own items (a step's batch, a sink's write) before
  the first stateful step's snapshot: the items read just before the close, on their way through
  the flow and into MySQL;
- **snapshots**, per step: the calls of ``snapshot()`` (keys and µs a key);
- **sink writes** and **other Python** within the pause;
- **outside Python**: no call of the flow running: Bytewax's own work (progress between the
  operators and processes, moving snapshots, with recovery writing them to SQLite) or waiting
  for the other process.

It prints the means over the closes (and the largest pause), and with ``--timeline`` the calls
of the close whose pause is the median, one line per run of like calls.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

READER = "read_payments (partition"
"""The payments readers' step id, as the flow names it (``dataflows/scoring.py``)."""
SOURCE = " (partition "
"""In the step id of every source partition (``dataflows/failures.py``)."""
GROUP_SECONDS = 0.5
"""Readers' closes this close together are one epoch close."""
AFTER_RESUME = 0.3
"""The timeline goes on this long after the reads resume (the backlog the pause left)."""
LONGEST_CALL = 5.0
"""A call that started this long before a close is not looked for (no step call lasts that
long in a running flow)."""


@dataclass(frozen=True)
class Call:
    started: float
    ended: float
    thread: int
    step: str
    what: str
    items: int


@dataclass
class Close:
    """One epoch close of one process and how its pause was spent (seconds)."""

    at: float
    pause: float
    tail: float
    snapshots: dict[str, float] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    sink: float = 0.0
    other: float = 0.0
    outside: float = 0.0
    calls: list[Call] = field(default_factory=list)


def read_calls(path: Path) -> list[Call]:
    calls = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                continue  # a line cut by a kill
            a, b, t, step, what, n = parts
            calls.append(
                Call(float(a), float(b), int(t), step.removeprefix("payscore."), what, int(n))
            )
    calls.sort(key=lambda c: c.started)
    return calls


def closes_of(calls: list[Call], since: float, until: float) -> list[Close]:
    """Every epoch close of one process's payments readers in ``[since, until]``, with its
    pause split as the module says. Left out: the end of input's close (the readers closed) and
    a close after which nothing was read before the next (no payment came: idle, not paused)."""
    groups: list[list[float]] = []
    for c in calls:
        if c.step.startswith(READER) and c.what == "snapshot":
            if groups and c.started - groups[-1][-1] < GROUP_SECONDS:
                groups[-1].append(c.started)
            else:
                groups.append([c.started])
    starts = [c.started for c in calls]
    ended = [c.started for c in calls if c.step.startswith(READER) and c.what == "close"]
    out = []
    nexts = [g[0] for g in groups[1:]] + [float("inf")]
    for group, following in zip(groups, nexts, strict=True):
        at, last = group[0], group[-1]
        if not since <= at <= until or any(at <= e <= at + 2 for e in ended):
            continue
        resume = next(
            (
                c.started
                for c in calls[bisect.bisect_right(starts, last) :]
                if c.step.startswith(READER) and c.what == "next_batch" and c.items > 0
            ),
            None,
        )
        if resume is None or resume >= following:
            continue  # nothing read before the next close: idle, not paused
        near = calls[
            bisect.bisect_left(starts, at - LONGEST_CALL) : bisect.bisect_left(
                starts, resume + AFTER_RESUME
            )
        ]
        out.append(split(at, resume, [c for c in near if c.ended > at]))
    return out


def split(at: float, resume: float, calls: list[Call]) -> Close:
    """The pause from ``at`` to ``resume`` split over ``calls`` (those running within it; the
    calls after ``resume`` are kept for the timeline only)."""
    close = Close(at=at, pause=resume - at, tail=0.0, calls=calls)
    snaps = [c for c in calls if c.what == "snapshot" and SOURCE not in c.step]
    first_snapshot = min((c.started for c in snaps), default=resume)
    own = [c for c in calls if c.what != "snapshot" and c.started < min(first_snapshot, resume)]
    close.tail = max((min(c.ended, resume) for c in own), default=at) - at
    busy: list[tuple[float, float]] = []
    for c in calls:
        a, b = max(c.started, at), min(c.ended, resume)
        if b <= a:
            continue
        busy.append((a, b))
        if c.what == "snapshot" and SOURCE not in c.step:
            close.snapshots[c.step] = close.snapshots.get(c.step, 0.0) + b - a
            close.keys[c.step] = close.keys.get(c.step, 0) + 1
        elif c.what == "write_batch":
            close.sink += b - a
        else:
            close.other += b - a
    close.outside = close.pause - _union(busy)
    return close


def _union(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def summary(name: str, closes: list[Close]) -> list[str]:
    """Lines of means over ``closes`` (milliseconds)."""
    if not closes:
        return [f"{name}: no epoch close with a read after it in the window"]

    def mean(values: list[float]) -> float:
        return 1000 * statistics.fmean(values)

    steps = sorted({s for c in closes for s in c.snapshots})
    pause, tail = mean([c.pause for c in closes]), mean([c.tail for c in closes])
    snapshots = mean([sum(c.snapshots.values()) for c in closes])
    sink, other = mean([c.sink for c in closes]), mean([c.other for c in closes])
    outside, largest = mean([c.outside for c in closes]), 1000 * max(c.pause for c in closes)
    lines = [
        f"{name}: {len(closes)} epoch closes; reads paused {pause:.0f} ms after a close on "
        f"average (largest {largest:.0f}): the tail {tail:.0f} ms, snapshots {snapshots:.0f}, "
        f"sink writes {sink:.0f}, other Python {other:.0f}, outside Python {outside:.0f} (means)"
    ]
    for step in steps:
        seconds = [c.snapshots.get(step, 0.0) for c in closes]
        keys = [c.keys.get(step, 0) for c in closes]
        per_key = 1e6 * sum(seconds) / sum(keys) if sum(keys) else 0.0
        lines.append(
            f"  {step}: {mean(seconds):.1f} ms of snapshots a close, {statistics.fmean(keys):,.0f} "
            f"keys, {per_key:.1f} µs a key"
        )
    return lines


def timeline(close: Close) -> list[str]:
    """The calls of one close, like calls in a row merged: start and end (ms after the close),
    step, method, calls, busy ms, items."""
    runs: list[list] = []
    for c in close.calls:
        key = (c.step, c.what)
        if c.what in ("next_awake", "notify_at", "build") or (
            c.what == "next_batch" and c.items <= 0
        ):
            continue
        if runs and runs[-1][0] == key and c.started - runs[-1][2] < 0.003:
            run = runs[-1]
            run[2] = max(run[2], c.ended)
            run[3] += 1
            run[4] += c.ended - c.started
            run[5] += max(c.items, 0)
        else:
            runs.append([key, c.started, c.ended, 1, c.ended - c.started, max(c.items, 0)])
    return [
        f"  {1000 * (a - close.at):8.1f} {1000 * (b - close.at):8.1f}  {step[:44]:44} {what:11} "
        f"calls {n:5} busy {1000 * busy:6.1f} ms items {items}"
        for (step, what), a, b, n, busy, items in runs
    ]


def report(folder: Path, since: float, until: float, show_timeline: bool) -> list[str]:
    lines: list[str] = []
    by_process: dict[str, list[Close]] = defaultdict(list)
    for path in sorted(folder.glob("calls-*.tsv")):
        calls = read_calls(path)
        if calls:
            by_process[path.name] = closes_of(calls, since, until)
    for name, closes in by_process.items():
        lines += summary(name, closes)
        if show_timeline and closes:
            middle = sorted(closes, key=lambda c: c.pause)[len(closes) // 2]
            lines.append(f"  the close with the median pause ({1000 * middle.pause:.0f} ms):")
            lines += timeline(middle)
    return lines or [f"no call files (calls-*.tsv) in {folder}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--since", type=float, default=0.0, help="Unix seconds")
    parser.add_argument("--until", type=float, default=float("inf"), help="Unix seconds")
    parser.add_argument("--timeline", action="store_true")
    args = parser.parse_args()
    print("\n".join(report(args.folder, args.since, args.until, args.timeline)))


if __name__ == "__main__":
    main()
