"""Where a latency run's slowest payments were, and which calls were long around them.

    python benchmarks/latency_tail.py bursts OUT/latency-series-<rate>.csv [--top 3]
    python benchmarks/latency_tail.py calls OUT/call-trace-<rate> [--over-ms 40] [--after 100]

``bursts``: from ``bench_throughput.py``'s per-payment series (append time, latency, partition),
the payments over the run's p99 counted by the second of their append time (MM:SS), with each
second's partitions, and the ``--top`` largest such seconds: bursts on every partition at once,
a fixed time apart, point at one stall of the flow rather than one slow partition.

``calls``: from a ``--call-trace`` run's call files (``dataflows/call_trace.py``), every call
into the flow's steps that took ``--over-ms`` or longer, ``--after`` seconds or more after the
process's first call (the start's own work left out), per process file, in time order.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from epoch_close_trace import read_calls


def bursts(series: Path, top: int) -> None:
    with series.open(newline="") as f:
        rows = [
            (r["appended_at"], int(r["latency_us"]), r["kafka_partition"])
            for r in csv.DictReader(f)
        ]
    latencies = sorted(latency for _, latency, _ in rows)
    p99 = latencies[int(len(latencies) * 0.99)]
    by_second: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for appended, latency, partition in rows:
        if latency >= p99:
            by_second[appended[14:19]][partition] += 1
    print(f"{series}: {len(rows):,} payments, p99 {p99 / 1000:.1f} ms; over it, by second:")
    for second in sorted(by_second):
        parts = ", ".join(f"{p}: {n}" for p, n in sorted(by_second[second].items()))
        print(f"  {second}  {sum(by_second[second].values()):>5}  (partitions {parts})")
    largest = sorted(by_second, key=lambda s: -sum(by_second[s].values()))[:top]
    print("largest: " + ", ".join(f"{s}: {sum(by_second[s].values())}" for s in largest))


def long_calls(folder: Path, over_ms: float, after: float) -> None:
    for path in sorted(folder.glob("calls-*.tsv")):
        calls = read_calls(path)
        if not calls:
            continue
        first = calls[0].started
        print(f"{path.name}: {len(calls):,} calls")
        for c in calls:
            took = (c.ended - c.started) * 1000
            if took >= over_ms and c.started - first >= after:
                at = datetime.fromtimestamp(c.started, UTC).strftime("%M:%S.%f")[:9]
                print(f"  {at}  {took:7.1f} ms  {c.step}  {c.what}  items {c.items}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("bursts", help="payments over p99 by second of append time")
    b.add_argument("series", type=Path)
    b.add_argument("--top", type=int, default=3)
    c = commands.add_parser("calls", help="calls into the flow's steps over a duration")
    c.add_argument("folder", type=Path)
    c.add_argument("--over-ms", type=float, default=40.0)
    c.add_argument("--after", type=float, default=100.0)
    args = parser.parse_args()
    if args.command == "bursts":
        bursts(args.series, args.top)
    else:
        long_calls(args.folder, args.over_ms, args.after)


if __name__ == "__main__":
    main()
