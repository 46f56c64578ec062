"""End-to-end throughput of the scoring flow: payments/s from Kafka to MySQL.

    python benchmarks/bench_flow.py [--days 2] [--cards 20000] [--processes 1 2] [--workers 1]

Simulates traffic, produces it into fresh topics (4 partitions; payments only), then for each
process count runs ``ops/run_flow.sh P W`` with ``PAYSCORE_TAIL=false`` against a fresh database
and prints payments, wall seconds (process start to exit, start-up included) and payments/s.
A model must exist in ``PAYSCORE_MODEL_DIR`` (``python -m model_state.train``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import func, select

from settings.config import DECISIONS_TOPIC_SETTINGS, PAYMENTS_TOPIC_SETTINGS, Config
from storage.engine import make_engine
from storage.tables import scored_payments
from test_data.chaos import scratch_database
from test_data.generator import simulate
from test_data.produce import from_simulation, send
from test_data.spec import SimulationSpec

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    topics = {k: f"{prefix}-{k}" for k in ("payments", "labels", "dead", "decisions")}
    admin = AdminClient({"bootstrap.servers": config.kafka_brokers})
    settings = {
        topics["payments"]: PAYMENTS_TOPIC_SETTINGS,
        topics["decisions"]: DECISIONS_TOPIC_SETTINGS,
    }
    wanted = [NewTopic(t, num_partitions=4, config=settings.get(t, {})) for t in topics.values()]
    for f in admin.create_topics(wanted).values():
        f.result()
    sim = simulate(
        SimulationSpec(seed=99, days=args.days, cards=args.cards, merchants=max(args.cards // 5, 2))
    )
    producer = Producer({"bootstrap.servers": config.kafka_brokers, "linger.ms": 20})
    report = send(
        (
            r
            for r in from_simulation(sim.stream, topics["payments"], topics["labels"])
            if r.event == "payment"
        ),
        producer,
        progress=False,
    )
    print(f"produced {report.payments:,} payments")
    try:
        for processes in args.processes:
            with scratch_database(config, "payscore_bench") as db_url:
                measure(db_url, topics, processes, args.workers)
    finally:
        for f in admin.delete_topics(list(topics.values())).values():
            f.result()


def measure(db_url: str, topics: dict[str, str], processes: int, workers: int) -> None:
    """One drain run of the flow over the topics into a fresh database; prints its rate."""
    env = dict(os.environ)
    env.update(
        PAYSCORE_PAYMENTS_TOPIC=topics["payments"],
        PAYSCORE_LABELS_TOPIC=topics["labels"],
        PAYSCORE_DEAD_LETTERS_TOPIC=topics["dead"],
        PAYSCORE_DECISIONS_TOPIC=topics["decisions"],
        PAYSCORE_MYSQL_URL=db_url,
        PAYSCORE_TAIL="false",
    )
    started = time.perf_counter()
    subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), str(processes), str(workers)],
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    engine = make_engine(db_url)
    with engine.connect() as c:
        rows = c.execute(select(func.count()).select_from(scored_payments)).scalar_one()
    engine.dispose()
    print(
        f"{processes} process(es) x {workers} worker(s): {rows:,} payments scored "
        f"and stored in {seconds:.1f} s = {rows / seconds:,.0f} payments/s"
    )


if __name__ == "__main__":
    main()
