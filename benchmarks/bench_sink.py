"""Rows per second the MySQL sink writes: scored-payment rows with 45 features, in batches.

    python benchmarks/bench_sink.py [--rows 100000] [--batch 1000] [--method load|insert]

Writes into a throwaway database ``payscore_bench`` (created and dropped) on the server of
``PAYSCORE_MYSQL_URL``. A second pass rewrites the same rows (what a replay after recovery does)
and must change nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from settings.config import Config
from storage.engine import make_engine
from storage.sink import MySQLSinkPartition, Writing
from storage.tables import scored_payments
from test_data.chaos import scratch_database


def make_rows(n: int) -> list[dict[str, object]]:
    rng = random.Random(7)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    names = [f"feature_{i:02d}" for i in range(45)]
    return [
        {
            "transaction_id": f"tx-{rng.getrandbits(64):016x}",
            "card_id": f"card-{rng.randrange(10_000)}",
            "merchant_id": f"m-{rng.randrange(1000)}",
            "terminal_id": f"t-{rng.randrange(5000)}",
            "amount_minor": rng.randrange(1, 100_000),
            "currency": "EUR",
            "event_time": (start + timedelta(seconds=i)).replace(tzinfo=None),
            "utc_offset_minutes": 60,
            "fraud_probability": rng.random(),
            "decision": "approve",
            "reason_codes": names[:3],
            "model_version": "bench",
            "features": {name: rng.random() for name in names},
            "kafka_partition": i % 4,
            "kafka_offset": i,
            "scored_at": datetime.now(UTC).replace(tzinfo=None),
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--method", choices=["load", "insert"], default="load")
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    with scratch_database(config, "payscore_bench") as url:
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    engine = make_engine(url, local_infile=args.method == "load")
    rows = make_rows(args.rows)
    sink = MySQLSinkPartition(engine, scored_payments, Writing(args.method))
    print(f"method {args.method}, batches of {args.batch}")
    for label in ("first write", "replay (no change)"):
        started = time.perf_counter()
        for i in range(0, len(rows), args.batch):
            sink.write_batch(rows[i : i + args.batch])
        seconds = time.perf_counter() - started
        print(f"{label}: {len(rows)} rows in {seconds:.2f} s = {len(rows) / seconds:,.0f} rows/s")
    with engine.connect() as c:
        print(
            "rows in table:", c.execute(select(func.count()).select_from(scored_payments)).scalar()
        )
    sink.close()


if __name__ == "__main__":
    main()
