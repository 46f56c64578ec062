"""What the payments sink's read-back of the stored decisions costs, and what reading back only
``stored_at`` would cost instead.

    python benchmarks/bench_decisions_readback.py [--rows 6000] [--batches 12 60 500] [--repeats 60]

Before each commit the payments sink reads back the stored decisions of its batch
(:func:`storage.decision_records.stored_decisions`: 16 columns a row, the rows locked) and
publishes them (``dataflows/decisions_topic.py``). A batch with no row skipped as stored already
(every batch but a replay's) holds exactly what it wrote, but for ``stored_at`` (MySQL's
``SYSDATE(6)`` per row), so the records could be made from the rows and a read of
``(transaction_id, stored_at)``. This measures both reads on the server of
``PAYSCORE_MYSQL_URL`` (a throwaway database, created and dropped): the median over
``--repeats`` batches of each size, ms a batch and µs a row (wall time, client and server).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench_sink import make_rows

from settings.config import Config
from storage.decision_records import stored_decisions
from storage.engine import make_engine
from storage.sink import MySQLSinkPartition, Writing, _cursor_reader
from storage.tables import scored_payments
from test_data.chaos import scratch_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--batches", type=int, nargs="+", default=[12, 60, 500])
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    with scratch_database(config, "payscore_bench_readback") as url:
        engine = make_engine(url, local_infile=True)
        rows = make_rows(args.rows)
        sink = MySQLSinkPartition(engine, scored_payments, Writing("load"))
        for start in range(0, len(rows), 500):
            sink.write_batch(rows[start : start + 500])
        ids = [row["transaction_id"] for row in rows]
        raw = engine.raw_connection()
        try:
            read = _cursor_reader(raw.cursor())
            for n in args.batches:
                whole, stamps = [], []
                for k in range(args.repeats):
                    start = k * n % max(len(ids) - n, 1)
                    chunk = ids[start : start + n]
                    began = time.perf_counter()
                    stored_decisions(read, chunk)
                    middle = time.perf_counter()
                    marks = ", ".join(["%s"] * len(chunk))
                    read(
                        "SELECT transaction_id, stored_at FROM scored_payments "
                        f"WHERE transaction_id IN ({marks}) LOCK IN SHARE MODE",
                        chunk,
                    )
                    whole.append(middle - began)
                    stamps.append(time.perf_counter() - middle)
                a, b = statistics.median(whole), statistics.median(stamps)
                print(
                    f"batches of {n}: every decision column {a * 1e3:.2f} ms ({a * 1e6 / n:.1f} "
                    f"µs a row); stored_at only {b * 1e3:.2f} ms ({b * 1e6 / n:.1f} µs a row)"
                )
            raw.commit()
        finally:
            raw.close()
            sink.close()


if __name__ == "__main__":
    main()
