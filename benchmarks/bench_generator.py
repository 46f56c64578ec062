"""Generator speed: prints the figures for the generator issue's closing note.

    .venv/bin/python benchmarks/bench_generator.py [--cards 10000] [--days 1 30]

For each number of days, on one core, best of ``--repeats`` runs:

- seconds to simulate (world, everyday payments, fraud, labels and arrival order as columns);
- seconds to build every event (``Payment`` and ``FraudLabel`` structs) in arrival order and
  encode it as JSON, streaming as the producer and ``test_data.generate`` do;
- payments per second end to end (simulate + build + encode), and messages per second;
- for reference, seconds to build the whole stream as a list (holding every event in memory).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

import msgspec

from test_data.generator import SimulationSpec, simulate

T = TypeVar("T")


def best_of(repeats: int, run: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``repeats`` runs in seconds, with the last run's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--days", type=int, nargs="+", default=[1, 30])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    encode = msgspec.json.Encoder().encode
    for days in args.days:
        spec = SimulationSpec(seed=args.seed, days=days, cards=args.cards)
        sim_s, sim = best_of(args.repeats, lambda spec=spec: simulate(spec))
        stream_s, size = best_of(
            args.repeats, lambda sim=sim: sum(len(encode(e)) for e in sim.stream)
        )
        list_s, events = best_of(1, lambda sim=sim: list(sim.stream))
        total = sim_s + stream_s
        print(
            f"{days} day(s), {args.cards:,} cards: {sim.n_payments:,} payments "
            f"({sim.n_fraud:,} fraudulent, {sim.n_fraud / sim.n_payments:.2%}), "
            f"{sim.n_labels:,} labels"
        )
        print(
            f"  simulate {sim_s:.2f} s + build and encode events {stream_s:.2f} s "
            f"({size / 1e6:.0f} MB of JSON) = {total:.2f} s: "
            f"{sim.n_payments / total:,.0f} payments/s, {len(events) / total:,.0f} messages/s"
        )
        print(f"  (building the stream as one list: {list_s:.2f} s)")


if __name__ == "__main__":
    main()
