"""What checking a label's analyst costs a label claim: batches of plain labels (the bank's
feed), of labels naming an analyst that a recorded verdict confirms, and of labels naming one
that none confirms (forged).

    python benchmarks/bench_label_claims.py [--labels 6000] [--batch 500]

Fills a throwaway database ``payscore_bench_<random>`` (created and dropped) on the server of
``PAYSCORE_MYSQL_URL`` with ``3 * --labels`` scored payments (real feature rows, as the flow's
account) and a ``review_verdicts`` row for each payment of the second kind (as the review
queue's), then claims ``--labels`` labels of
each kind in batches of ``--batch`` (:func:`storage.labels.claim_labels`, one transaction per
batch, as the flow's label step does; the kinds take turns batch by batch) and prints µs per
label and labels/s of each kind, and the rows by analyst column at the end.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel
from settings.config import Config
from storage.engine import make_engine
from storage.labels import ReadLabel, claim_labels
from storage.sink import MySQLSinkPartition
from storage.tables import fraud_labels, review_verdicts, scored_payments
from test_data.chaos import scratch_database

START = datetime(2026, 3, 2, 9)
REPORTED = datetime(2026, 3, 9, 10, tzinfo=UTC)
KINDS = ("plain", "confirmed", "forged")


def payment(i: int) -> dict[str, object]:
    return {
        "transaction_id": f"tx-{i:07d}",
        "card_id": f"card-{i % 5000}",
        "merchant_id": f"m-{i % 500}",
        "terminal_id": f"t-{i % 2000}",
        "amount_minor": 1000 + i % 9000,
        "currency": "EUR",
        "event_time": START + timedelta(seconds=i),
        "utc_offset_minutes": 60,
        "fraud_probability": (i * 7919 % 1000) / 1000,
        "decision": "review",
        "reason_codes": ["amount_eur"],
        "model_version": "v00001",
        "features": dict.fromkeys(FEATURE_NAMES, 1.0),
        "kafka_partition": 0,
        "kafka_offset": i,
        "scored_at": START,
    }


def label(i: int, kind: str) -> FraudLabel:
    return FraudLabel(
        transaction_id=f"tx-{i:07d}",
        card_id=f"card-{i % 5000}",
        is_fraud=i % 3 == 0,
        reported_at=REPORTED + timedelta(microseconds=i),
        analyst=None if kind == "plain" else "alice",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    if args.labels < 1 or not 1 <= args.batch <= 5000:
        parser.error(f"--labels {args.labels}, --batch {args.batch}: expected >= 1 and 1-5000")
    config = Config.from_env(os.environ)
    n = args.labels
    with scratch_database(config, "payscore_bench") as url:
        # The flow's account stores payments and claims labels; the verdicts are the review
        # queue's (the flow may only read what a label of one says).
        engine = make_engine(url, isolation_level="READ COMMITTED", local_infile=True)
        database = make_url(url).database
        assert database, url
        review = make_engine(config.on_database(database).review_mysql_dsn)
        sink = MySQLSinkPartition(engine, scored_payments)
        for low in range(0, 3 * n, 2000):
            sink.write_batch([payment(i) for i in range(low, min(low + 2000, 3 * n))])
        with review.begin() as c:
            c.execute(
                insert(review_verdicts),
                [
                    {
                        "transaction_id": lab.transaction_id,
                        "card_id": lab.card_id,
                        "analyst": "alice",
                        "is_fraud": lab.is_fraud,
                        "decided_at": lab.reported_at.replace(tzinfo=None),
                        "model_version": "v00001",
                        "model_decision": "review",
                        "model_probability": 0.5,
                        "labels_topic": "labels",
                    }
                    for lab in (label(i, "confirmed") for i in range(n, 2 * n))
                ],
            )
        print(f"{3 * n:,} payments stored, {n:,} verdicts recorded; batches of {args.batch}")
        reads = {
            kind: [ReadLabel(label(i, kind), k, i) for i in range(k * n, (k + 1) * n)]
            for k, kind in enumerate(KINDS)
        }
        seconds = dict.fromkeys(KINDS, 0.0)
        for low in range(0, n, args.batch):  # the kinds take turns: no warm-up favours one
            for kind in KINDS:
                started = time.perf_counter()
                with engine.begin() as c:
                    claim_labels(c, "labels", reads[kind][low : low + args.batch])
                seconds[kind] += time.perf_counter() - started
        for kind in KINDS:
            print(
                f"{kind:>9}: {seconds[kind] / n * 1e6:7.1f} µs per label, "
                f"{n / seconds[kind]:8,.0f} labels/s"
            )
        with engine.connect() as c:
            fl = fraud_labels
            rows = c.execute(
                select(
                    fl.c.analyst.is_not(None), fl.c.unverified_analyst.is_not(None), func.count()
                ).group_by(fl.c.analyst.is_not(None), fl.c.unverified_analyst.is_not(None))
            ).all()
        named = {(bool(a), bool(u)): int(count) for a, u, count in rows}
        print(
            f"rows: {named.get((False, False), 0):,} without analyst, "
            f"{named.get((True, False), 0):,} with a confirmed analyst, "
            f"{named.get((False, True), 0):,} with an unverified one"
        )
        engine.dispose()
        review.dispose()


if __name__ == "__main__":
    main()
