"""How fast the review queue reads a page from a million stored payments, and MySQL's plan.

    python benchmarks/bench_review_queue.py [--rows 1000000]

Fills a throwaway database ``payscore_bench_<random>`` (created and dropped) on the server of
``PAYSCORE_MYSQL_URL`` with ``--rows`` scored payments made in SQL: 30 days, 2,000 merchants,
probabilities skewed towards 0 so that about 7 % go to review and 1.3 % are declined (the
thresholds 0.5 and 0.9). Rows carry an empty ``features`` object (a real row holds 42 features;
the queue does not read them). Then it times pages of :func:`review.queries.queue` (best of 5)
and prints ``EXPLAIN`` of each decision's query.
"""

from __future__ import annotations

import argparse
import os
import time

from sqlalchemy import func, select, text

from review import queries
from settings.config import Config
from storage.engine import make_engine
from storage.tables import scored_payments
from test_data.chaos import scratch_database

DIGITS = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
FILL = """
INSERT INTO scored_payments
  (transaction_id, card_id, merchant_id, terminal_id, amount_minor, currency, event_time,
   utc_offset_minutes, fraud_probability, decision, reason_codes, model_version, features,
   kafka_partition, kafka_offset, scored_at)
SELECT CONCAT('b-', LPAD(n, 8, '0')), CONCAT('c-', n % 50000), CONCAT('m-', n % 2000),
       CONCAT('t-', n % 20000), 100 + n % 50000, 'EUR',
       TIMESTAMP('2026-01-01') + INTERVAL (n * 2592000 DIV :rows) SECOND, 0,
       p, CASE WHEN p >= 0.9 THEN 'decline' WHEN p >= 0.5 THEN 'review' ELSE 'approve' END,
       '["amount_eur"]', 'v00001', '{}', 0, n, NOW(6)
FROM (SELECT n, POW(((n * 7919) % 1000003) / 1000003.0, 8) AS p
      FROM (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d AS n
            FROM (DIGITS) a, (DIGITS) b, (DIGITS) c, (DIGITS) e, (DIGITS) f, (DIGITS) g) ns
      WHERE n >= :low AND n < :high) rows_
""".replace("DIGITS", DIGITS)


def best_of(work: object, times: int = 5) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if not 1 <= args.rows <= 1_000_000:
        parser.error(f"--rows {args.rows}: expected 1 to 1,000,000")
    config = Config.from_env(os.environ)
    with scratch_database(config, "payscore_bench") as url:
        engine = make_engine(url)
        started = time.perf_counter()
        step = 100_000
        for low in range(0, args.rows, step):
            with engine.begin() as c:
                c.execute(
                    text(FILL), {"rows": args.rows, "low": low, "high": min(low + step, args.rows)}
                )
        with engine.begin() as c:
            c.execute(text("ANALYZE TABLE scored_payments"))
            counts = dict(
                c.execute(
                    select(scored_payments.c.decision, func.count()).group_by(
                        scored_payments.c.decision
                    )
                ).all()
            )
        print(f"stored {args.rows:,} payments in {time.perf_counter() - started:.0f} s: {counts}")
        with engine.connect() as c:
            first = queries.queue(c, queries.QueueFilter())
            assert first.next is not None
        cases = {
            "review, first page": queries.QueueFilter(),
            "review, page after the 20th": queries.QueueFilter(
                after=queries.Cursor(0.6, "b-00500000")
            ),
            "review, one merchant": queries.QueueFilter(merchant_id="m-42"),
            "review, one day": queries.QueueFilter(
                since=first.rows[0].event_time.replace(hour=0, minute=0, second=0),
                until=first.rows[0].event_time.replace(hour=23, minute=59, second=59),
            ),
            "review and decline": queries.QueueFilter(decisions=("review", "decline")),
        }
        for name, where in cases.items():
            with engine.connect() as c:
                page = queries.queue(c, where)
                seconds = best_of(lambda c=c, where=where: queries.queue(c, where))
                plans = queries.explain_queue(c, where)
            print(f"\n{name}: {len(page.rows)} rows in {seconds * 1000:.1f} ms")
            for plan in plans:
                print(
                    "  EXPLAIN: "
                    + ", ".join(
                        f"{k}={plan[k]}"
                        for k in ("select_type", "table", "type", "key", "key_len", "rows", "Extra")
                    )
                )
        with engine.connect() as c:
            where = queries.QueueFilter(merchant_id="m-42")
            sql = queries.queue_query("review", where).compile(
                dialect=c.dialect, compile_kwargs={"literal_binds": True}
            )
        print(f"\nthe query (review, one merchant):\n{sql}")
        engine.dispose()


if __name__ == "__main__":
    main()
