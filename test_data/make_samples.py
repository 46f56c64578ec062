"""Regenerate the committed sample files ``test_data/samples/{payments,labels}.jsonl``.

    python -m test_data.make_samples

Three days of a 45-card network (seed 3, about 200 payments, one fraud of each scenario) in
arrival order, with sixteen malformed payment messages slipped in, each a copy of the payment
before it (under the id ``<id>-bad``) broken the way a faulty producer would; and the labels of
every sample payment, in report order. The output is deterministic: running this again rewrites
the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from features.contract import Payment
from test_data.generator import simulate
from test_data.samples import SampleMessage, from_event, write_samples
from test_data.spec import SimulationSpec

SAMPLES_DIR = Path(__file__).with_name("samples")
SPEC = SimulationSpec(seed=3, days=3, cards=45, merchants=60, fraud_rate=0.02)
EVERY = 12  # one malformed message after every this many valid ones


def _edit(**changes: Any) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        payment = json.loads(raw)
        payment.update(changes)
        return json.dumps({k: v for k, v in payment.items() if v is not ...}).encode()

    return apply


# (reason, how to break a valid payment's bytes, keyed by its card?)
BREAKAGES: tuple[tuple[str, Callable[[bytes], bytes], bool], ...] = (
    ("truncated JSON", lambda raw: raw[: len(raw) // 2], True),
    ("not UTF-8", lambda raw: raw.replace(b'"merchant_id":"', b'"merchant_id":"\xff\xfe'), True),
    ("empty message", lambda raw: b"", False),
    ("JSON array instead of an object", lambda raw: b"[" + raw + b"]", True),
    ("amount as a string", lambda raw: _edit(amount_minor="12.50")(raw), True),
    ("missing transaction_id", _edit(transaction_id=...), True),
    ("unknown field cvv", _edit(cvv="123"), True),
    ("NaN amount", lambda raw: _set_amount(raw, b"NaN"), True),
    ("amount 1e400", lambda raw: _set_amount(raw, b"1e400"), True),
    ("amount above 10^12", _edit(amount_minor=10**12 + 1), True),
    ("negative amount", _edit(amount_minor=-1250), True),
    ("unknown currency XYZ", _edit(currency="XYZ"), True),
    ("event time in 1970", _edit(event_time="1970-01-01T00:00:00+00:00"), True),
    ("event time in 2999", _edit(event_time="2999-01-01T00:00:00+00:00"), True),
    ("event time without a time zone", lambda raw: _naive(raw), True),
    ("SQL in transaction_id", _edit(transaction_id="x'); DROP TABLE scored_payments;--"), True),
)


def _set_amount(raw: bytes, literal: bytes) -> bytes:
    payment = json.loads(raw)
    return raw.replace(
        f'"amount_minor":{payment["amount_minor"]}'.encode(), b'"amount_minor":' + literal
    )


def _naive(raw: bytes) -> bytes:
    payment = json.loads(raw)
    payment["event_time"] = payment["event_time"][:19]
    return json.dumps(payment).encode()


def build() -> tuple[list[SampleMessage], list[SampleMessage]]:
    """The sample payment and label messages."""
    sim = simulate(SPEC)
    truth = sim.truth
    payments: list[SampleMessage] = []
    labels: list[SampleMessage] = []
    breakages = iter(BREAKAGES)
    valid = 0
    for event in sim.stream:
        if not isinstance(event, Payment):
            labels.append(from_event(event))
            continue
        message = from_event(event, truth[event.transaction_id])
        payments.append(message)
        valid += 1
        if valid % EVERY == 0:
            breakage = next(breakages, None)
            if breakage is not None:
                reason, breaker, keyed = breakage
                # A copy of the neighbour under an id of its own, so each dead letter is traceable.
                bad_id = f"{event.transaction_id}-bad".encode()
                raw = msgspec.json.encode(event).replace(event.transaction_id.encode(), bad_id)
                payments.append(
                    SampleMessage(
                        key=message.key if keyed else None,
                        value=breaker(raw),
                        kind="malformed",
                        reason=reason,
                    )
                )
    return payments, labels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m test_data.make_samples", description=__doc__)
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help="folder (%(default)s)")
    args = parser.parse_args(argv)
    payments, labels = build()
    args.out.mkdir(parents=True, exist_ok=True)
    write_samples(args.out / "payments.jsonl", payments)
    write_samples(args.out / "labels.jsonl", labels)
    malformed = sum(m.kind == "malformed" for m in payments)
    fraud = sum(bool(m.is_fraud) for m in payments)
    print(
        f"wrote {len(payments) - malformed} valid payments ({fraud} fraudulent) and {malformed} "
        f"malformed ones to {args.out / 'payments.jsonl'}, {len(labels)} labels to "
        f"{args.out / 'labels.jsonl'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
