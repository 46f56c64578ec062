"""Write a simulated history to a JSON Lines file, for training, evaluation and replays.

    python -m test_data.generate --days 30 --cards 10000 --out history.jsonl

Each line is one Kafka message in the envelope format of :mod:`test_data.samples`, in the order
messages reach Kafka: payments (``"event": "payment"``, with the ground truth ``is_fraud`` and,
for fraud, ``scenario``) and labels (``"event": "label"``). Replay it with
``python -m test_data.produce --file history.jsonl``; the producer sends the values only.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from tqdm import tqdm

from features.contract import Payment
from test_data.cli import add_spec_arguments, spec_from_arguments
from test_data.generator import simulate
from test_data.samples import dump_line, from_event


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m test_data.generate",
        description="Write a simulated history of payments and labels as JSON Lines.",
    )
    parser.add_argument("--out", required=True, help="the JSON Lines file to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_spec_arguments(parser)
    args = parser.parse_args(argv)
    try:
        spec = spec_from_arguments(args)
    except ValueError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    sim = simulate(spec)
    truth = sim.truth
    written = 0
    try:
        with (
            open(args.out, "wb") as out,
            tqdm(
                total=sim.n_payments + sim.n_labels,
                unit="msg",
                unit_scale=True,
                disable=args.no_progress,
                file=sys.stderr,
            ) as bar,
        ):
            for event in sim.stream:
                if isinstance(event, Payment):
                    message = from_event(event, truth[event.transaction_id])
                else:
                    message = from_event(event)
                out.write(dump_line(message) + b"\n")
                written += 1
                if written % 4096 == 0:
                    bar.update(4096)
            bar.update(written % 4096)
    except OSError as exc:
        print(f"generate: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(
        f"wrote {written:,} messages ({sim.n_payments:,} payments, {sim.n_fraud:,} fraudulent; "
        f"{sim.n_labels:,} labels) to {args.out} in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
