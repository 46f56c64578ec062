"""What refusing a key named twice costs per message (features.json_keys).

    .venv/bin/python benchmarks/bench_json_keys.py [--days 2] [--cards 5000]

Encodes the generator's stream (seed 99) as the producer does (msgspec, every field written),
then times on one core, best of five runs: the contract's decode as it is (duplicate-key check
included), msgspec's decode alone (what the check adds to), and the check alone; for payments,
for labels, and for labels that carry a free-text ``note`` (an analyst's verdict: that path
parses the message again with Python's json).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import msgspec

from features.contract import FraudLabel, LabelDecoder, Payment, PaymentDecoder
from features.json_keys import repeated_key
from test_data.generator import simulate
from test_data.spec import SimulationSpec


def per_message(work: Callable[[bytes], object], messages: list[bytes]) -> float:
    """Best of five: microseconds per message of ``work``."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for raw in messages:
            work(raw)
        best = min(best, time.perf_counter() - started)
    return best * 1e6 / len(messages)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--cards", type=int, default=5_000)
    args = parser.parse_args()
    sim = simulate(SimulationSpec(seed=99, days=args.days, cards=args.cards, merchants=1_000))
    encode = msgspec.json.Encoder().encode
    payments = [encode(e) for e in sim.stream if isinstance(e, Payment)]
    labels = [encode(e) for e in sim.stream if isinstance(e, FraudLabel)]
    noted = [
        encode(msgspec.structs.replace(msgspec.json.decode(raw, type=FraudLabel), note="a, b"))
        for raw in labels
    ]
    print(f"{len(payments):,} payments, {len(labels):,} labels (seed 99)")
    rows = (
        ("payments", payments, PaymentDecoder(), msgspec.json.Decoder(Payment), False),
        ("labels", labels, LabelDecoder(), msgspec.json.Decoder(FraudLabel), False),
        ("labels with a note", noted, LabelDecoder(), msgspec.json.Decoder(FraudLabel), True),
    )
    print(f"{'messages':<20} {'decode':>9} {'msgspec only':>13} {'check alone':>12}  (µs each)")
    for name, messages, contract, plain, free_text in rows:
        whole = per_message(contract.decode, messages)
        bare = per_message(plain.decode, messages)
        check = per_message(lambda raw, f=free_text: repeated_key(raw, free_text=f), messages)
        print(f"{name:<20} {whole:9.2f} {bare:13.2f} {check:12.2f}")


if __name__ == "__main__":
    main()
