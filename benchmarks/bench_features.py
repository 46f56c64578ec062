"""Feature throughput and state size: prints the figures for the features issue's closing note.

    .venv/bin/python benchmarks/bench_features.py [--cards 300] [--days 35] [--per-day 10]

Measures on one core, with synthetic payments (seeded; a little out of order):

- feature updates per second: card + terminal + merchant ``observe`` per payment, and the whole
  :func:`features.replay.replay` (with calendar features and ``assemble``);
- bytes of pickled state per card after ``--days`` days at ``--per-day`` payments a day, and for
  a card paying 1,000 times a day (bounded by time, not traffic);
- microseconds to ``copy.deepcopy`` and then pickle one card's state (what Bytewax does to every
  touched key at each epoch).
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from features.card import CardHistory
from features.catalog import FEATURE_NAMES
from features.contract import Payment
from features.entity import EntityHistory
from features.replay import replay

START = datetime(2026, 1, 1, tzinfo=UTC)
CURRENCIES = ("EUR", "EUR", "EUR", "USD", "GBP", "JPY")


def make_stream(cards: int, days: int, per_day: int, seed: int = 7) -> list[Payment]:
    """``cards`` cards paying ``per_day`` times a day for ``days`` days, roughly in time order."""
    rng = random.Random(seed)
    terminals = max(cards // 2, 1)
    rows: list[tuple[float, Payment]] = []
    for c in range(cards):
        home = (rng.uniform(40, 55), rng.uniform(-5, 20))
        shops = [rng.randrange(terminals) for _ in range(8)]
        for _ in range(days * per_day):
            shop = rng.choice(shops)
            when = START + timedelta(seconds=rng.uniform(0, days * 86_400))
            located = rng.random() < 0.7
            payment = Payment(
                transaction_id=f"t{len(rows)}",
                card_id=f"card-{c}",
                merchant_id=f"m-{shop // 3}",
                terminal_id=f"p-{shop}",
                amount_minor=rng.randint(100, 20_000),
                currency=rng.choice(CURRENCIES),
                event_time=when,
                mcc="5411",
                channel="pos",
                country="FR" if rng.random() < 0.9 else "DE",
                latitude=home[0] + rng.uniform(-0.1, 0.1) if located else None,
                longitude=home[1] + rng.uniform(-0.1, 0.1) if located else None,
            )
            # Arrival: event time plus a delay of up to 2 minutes, so some arrive out of order.
            rows.append((when.timestamp() + rng.expovariate(1 / 20.0), payment))
    rows.sort(key=lambda row: row[0])
    return [payment for _, payment in rows]


def observe_all(stream: list[Payment]) -> dict[str, CardHistory]:
    cards: dict[str, CardHistory] = {}
    terminals: dict[str, EntityHistory] = {}
    merchants: dict[str, EntityHistory] = {}
    for p in stream:
        card = cards.get(p.card_id) or cards.setdefault(p.card_id, CardHistory())
        terminal = terminals.get(p.terminal_id) or terminals.setdefault(
            p.terminal_id, EntityHistory("terminal")
        )
        merchant = merchants.get(p.merchant_id) or merchants.setdefault(
            p.merchant_id, EntityHistory("merchant")
        )
        card.observe(p)
        terminal.observe(p)
        merchant.observe(p)
    return cards


def observe_one(stream: list[Payment], kind: str, key: str) -> None:
    """Only the ``kind`` histories, keyed by the payment field ``key``."""
    states: dict[str, CardHistory | EntityHistory] = {}
    for p in stream:
        k = getattr(p, key)
        state = states.get(k)
        if state is None:
            state = states[k] = CardHistory() if kind == "card" else EntityHistory(kind)
        state.observe(p)


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """The fastest of ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def per_call_us(fn: Callable[[], object], n: int = 2_000) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=300)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--per-day", type=int, default=10)
    args = parser.parse_args()

    stream = make_stream(args.cards, args.days, args.per_day)
    n = len(stream)
    print(f"stream: {n:,} payments, {args.cards} cards, {args.days} days, {args.per_day}/day/card")
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    seconds = best_of(3, lambda: observe_all(stream))
    print(f"card+terminal+merchant observe: {n / seconds:,.0f} payments/s on one core")
    for kind, key in (("card", "card_id"), ("terminal", "terminal_id")):
        seconds = best_of(3, lambda kind=kind, key=key: observe_one(stream, kind, key))
        print(f"  {kind} observe alone: {seconds / n * 1e6:.1f} us per payment")
    seconds = best_of(3, lambda: sum(1 for _ in replay(stream)))
    names = len(FEATURE_NAMES)
    print(f"replay (all {names} features, assemble): {n / seconds:,.0f} payments/s on one core")

    cards = observe_all(stream)
    sizes = sorted(len(pickle.dumps(c, pickle.HIGHEST_PROTOCOL)) for c in cards.values())
    print(
        f"pickled card state after {args.days} d at {args.per_day}/day: "
        f"median {statistics.median(sizes):,.0f} B, max {sizes[-1]:,} B"
    )
    typical = next(c for c in cards.values() if len(pickle.dumps(c, 5)) >= statistics.median(sizes))
    print(f"  e.g. {typical!r}")
    copy_us = per_call_us(lambda: copy.deepcopy(typical))
    both_us = per_call_us(lambda: pickle.dumps(copy.deepcopy(typical), pickle.HIGHEST_PROTOCOL))
    load_us = per_call_us(lambda: pickle.loads(pickle.dumps(typical, pickle.HIGHEST_PROTOCOL)))
    print(
        f"one card: deepcopy {copy_us:.1f} us, deepcopy+pickle {both_us:.1f} us, "
        f"pickle+unpickle {load_us:.1f} us"
    )

    heavy = make_stream(1, args.days, 1_000, seed=11)
    card = CardHistory()
    for p in heavy:
        card.observe(p)
    size = len(pickle.dumps(card, pickle.HIGHEST_PROTOCOL))
    print(f"a card paying 1,000 times a day for {args.days} d: {size:,} B pickled, {card!r}")
    merchant = EntityHistory("merchant")
    for p in heavy:
        merchant.observe(p)
    size = len(pickle.dumps(merchant, pickle.HIGHEST_PROTOCOL))
    both_us = per_call_us(lambda: pickle.dumps(copy.deepcopy(merchant), pickle.HIGHEST_PROTOCOL))
    print(
        f"a merchant with 1,000 payments a day for {args.days} d: {size:,} B pickled, "
        f"deepcopy+pickle {both_us:.1f} us"
    )


if __name__ == "__main__":
    main()
