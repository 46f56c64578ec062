"""Offline/online parity: the features the live flow stored equal those the offline replay computes.

    python -m storage.parity --file history.jsonl [--prefix card_]

reads the stream of a sample-format file (``test_data/samples.py``), replays it through
:func:`features.replay.replay` and compares every feature of every payment with the
``features`` column of ``scored_payments`` (float tolerance only). It prints the number of
payments and values compared, and the first mismatches; the exit status is 1 on any mismatch or
missing row.

Parity holds exactly when the flow saw each key's events in the order the file gives: per card
that is Kafka's per-partition order (payments are keyed by card). Terminal and merchant features
and fraud rates also depend on how payments of different cards, and labels, interleave on the
way to their step; with several partitions or workers that order is not the file's, so compare
card features only (``--prefix card_``) or run the flow on one partition and one worker.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from sqlalchemy import Engine, select

from features.bounded import bounded
from features.contract import FraudLabel, Payment
from features.replay import replay
from settings.arguments import Parser
from storage.refusals import REFUSED, refusing
from storage.tables import scored_payments


class Mismatch(msgspec.Struct, frozen=True):
    transaction_id: str
    feature: str
    live: float | None
    offline: float


class ParityReport(msgspec.Struct):
    payments: int = 0
    values: int = 0
    missing_rows: list[str] = []
    mismatches: list[Mismatch] = []

    @property
    def ok(self) -> bool:
        return not self.missing_rows and not self.mismatches

    def summary(self) -> str:
        lines = [
            f"parity: {self.payments} payments, {self.values} feature values compared; "
            f"{len(self.missing_rows)} payments not stored, {len(self.mismatches)} values differ"
        ]
        lines += [
            f"  {m.transaction_id} {m.feature}: live {m.live}, offline {m.offline}"
            for m in self.mismatches[:20]
        ]
        return "\n".join(lines)


def compare(
    stored: Mapping[str, Mapping[str, float]],
    offline: Iterable[tuple[Payment, Mapping[str, float]]],
    *,
    prefix: str = "",
    rel: float = 1e-9,
    abs_tol: float = 1e-9,
) -> ParityReport:
    """Compare the live ``stored`` features (transaction id -> features) with ``offline`` ones."""
    report = ParityReport()
    for payment, features in offline:
        live = stored.get(payment.transaction_id)
        if live is None:
            report.missing_rows.append(payment.transaction_id)
            continue
        report.payments += 1
        for name, value in features.items():
            if not name.startswith(prefix):
                continue
            report.values += 1
            got = live.get(name)
            if got is None or not math.isclose(got, value, rel_tol=rel, abs_tol=abs_tol):
                report.mismatches.append(Mismatch(payment.transaction_id, name, got, value))
    return report


def stored_features(engine: Engine) -> dict[str, dict[str, float]]:
    sp = scored_payments
    with engine.connect() as connection:
        return {
            txn: features
            for txn, features in connection.execute(select(sp.c.transaction_id, sp.c.features))
        }


def check(
    engine: Engine, stream: Iterable[Payment | FraudLabel], *, prefix: str = ""
) -> ParityReport:
    """Replay ``stream`` offline and compare it with what the live flow stored in ``engine``."""
    return compare(stored_features(engine), replay(stream), prefix=prefix)


@refusing("python -m storage.parity", "flow")
def main(argv: list[str] | None = None) -> int:
    from settings.config import Config
    from storage.engine import make_engine
    from test_data.samples import iter_samples

    parser = Parser(
        prog="python -m storage.parity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--file", required=True, action="append", help="sample-format file(s)")
    parser.add_argument("--prefix", default="", help="compare only features with this prefix")
    args = parser.parse_args(argv)
    decoders: dict[str, Any] = {
        "payment": msgspec.json.Decoder(Payment),
        "label": msgspec.json.Decoder(FraudLabel),
    }
    stream = (
        decoders[m.event].decode(m.value)
        for path in args.file
        for m in iter_samples(path)
        if m.kind == "valid" and m.value is not None
    )
    engine = make_engine(Config.from_env(os.environ).mysql_dsn)
    try:
        report = check(engine, stream, prefix=args.prefix)
    except (OSError, ValueError) as exc:  # a file missing or not samples: status 1 said mismatch
        print(f"python -m storage.parity: refused: {bounded(str(exc))}", file=sys.stderr)
        return REFUSED
    finally:
        engine.dispose()
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
