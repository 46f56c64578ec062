"""Where one write of the payments sink spends its time, stage by stage, at the sizes a tailing
flow writes (a few rows) and a drain writes (hundreds).

    python benchmarks/bench_sink_stages.py [--batches 8 60 500] [--repeats 100]

A tailing flow's sink write took 4 to 6 ms whatever its size (README, "Where the pause at each
close goes"), a third of a tailing worker's time. This replays the payments sink's bulk path
(``storage.sink.MySQLSinkPartition._load`` with the flow's ``before_commit``,
``dataflows.decisions_topic.DecisionsTopic``) on the servers of ``PAYSCORE_MYSQL_URL`` and
``PAYSCORE_KAFKA_BROKERS`` (a throwaway database and topic, created and removed), one stage at a
time, after a warm-up of 20 writes, and prints the median and p90 of each stage in ms, and of
the whole write:

- ``text``: the rows' LOAD DATA lines (``tsv_lines``);
- ``file``: the temporary file made, written and flushed;
- ``checkout``: a connection from the pool (SQLAlchemy's pre-ping included);
- ``load``: ``LOAD DATA LOCAL INFILE`` (the client sends the file when the server asks);
- ``read back``: the stored decisions of the batch (``stored_decisions``, the rows locked);
- ``publish``: the decisions produced and every acknowledgement awaited (``acks=all``);
- ``commit``: the transaction's commit;
- ``release``: the connection back to the pool and the file removed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict

from bench_sink import make_rows

from dataflows.decisions_topic import DecisionsTopic
from settings.config import Config
from storage.decision_records import stored_decisions
from storage.engine import make_engine
from storage.sink import _TMP_DIR, _cursor_reader, load_data_statement, tsv_lines
from storage.tables import scored_payments
from test_data.chaos import scratch_database, scratch_topics

WARM_UP = 20  # writes of 8 rows first: the producer's first ones wait for its id from the broker
STAGES = ("text", "file", "checkout", "load", "read back", "publish", "commit", "release")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 60, 500])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    rows = make_rows(sum(args.batches) * args.repeats + WARM_UP * 8)
    with (
        scratch_database(config, "payscore_bench_stages") as url,
        scratch_topics(config.kafka_brokers, 4, "payscore-bench-stages") as topics,
    ):
        engine = make_engine(url, local_infile=True)
        topic = topics["decisions_topic"]
        publish = DecisionsTopic(config.kafka_client(), topic, patience=30)
        print(f"stage medians (p90) in ms, {args.repeats} writes a size, {len(STAGES)} stages")
        print("rows  " + "  ".join(f"{s:>16}" for s in (*STAGES, "whole")))
        offset = 0
        try:
            for _ in range(WARM_UP):
                write_once(engine, publish, rows[offset : offset + 8], defaultdict(list))
                offset += 8
            for n in args.batches:
                times: dict[str, list[float]] = defaultdict(list)
                for _ in range(args.repeats):
                    batch = rows[offset : offset + n]
                    offset += n
                    write_once(engine, publish, batch, times)
                cells = []
                for stage in (*STAGES, "whole"):
                    values = sorted(times[stage])
                    p90 = values[int(0.9 * (len(values) - 1))]
                    cells.append(f"{1000 * statistics.median(values):7.3f} ({1000 * p90:6.3f})")
                print(f"{n:>4}  " + "  ".join(f"{c:>16}" for c in cells))
        finally:
            publish.close()
            engine.dispose()


def write_once(
    engine: object, publish: DecisionsTopic, batch: list, times: dict[str, list[float]]
) -> None:
    """One write of ``batch`` as the sink's bulk path makes it, each stage timed into ``times``."""
    marks = [time.perf_counter()]

    def mark(stage: str) -> None:
        marks.append(time.perf_counter())
        times[stage].append(marks[-1] - marks[-2])

    columns, lines = tsv_lines(scored_payments, batch)
    mark("text")
    file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, as the sink does)
        "w", encoding="utf-8", dir=_TMP_DIR, prefix="payscore-", suffix=".tsv"
    )
    file.write("\n".join(lines))
    file.write("\n")
    file.flush()
    mark("file")
    raw = engine.raw_connection()  # type: ignore[attr-defined]
    mark("checkout")
    cursor = raw.cursor()
    cursor.execute(load_data_statement(scored_payments, columns, file.name))
    if cursor.rowcount != len(batch):
        raise RuntimeError(f"stored {cursor.rowcount} of {len(batch)} rows")
    mark("load")
    records = stored_decisions(_cursor_reader(cursor), [r["transaction_id"] for r in batch])
    mark("read back")
    publish.publish(records)
    mark("publish")
    raw.commit()
    mark("commit")
    raw.close()
    file.close()
    mark("release")
    times["whole"].append(marks[-1] - marks[0])


if __name__ == "__main__":
    main()
