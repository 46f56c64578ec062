"""A soak of the flow under a long crash and outage schedule, with the same accounting as the
chaos test (``tests/test_chaos_integration.py``); not part of CI.

    .venv/bin/python benchmarks/soak.py --cards 60000 --days 8 --kills 20 --mysql-outage 60

It simulates a stream (payments and their labels, labels reported within a day or two), sends it
in ``kills + 4`` chunks to fresh topics, and runs the flow (``ops/run_flow.sh``, recovery on)
while it ``kill -9``s it at random moments (every third right after a snapshot, every fifth right
after a restart), stops it once with SIGTERM, takes MySQL down for ``--mysql-outage`` seconds
under it and restarts the broker once. Then it waits for everything to settle, scores one probe
payment per terminal and prints what :func:`test_data.chaos.account` and
:func:`test_data.chaos.check_fraud_rates` found; the exit status is 1 on any problem.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, Table, func, select

from settings.config import Config
from storage.engine import make_engine
from storage.tables import dead_letters, fraud_labels, scored_payments
from test_data.chaos import (
    FlowProcess,
    account,
    check_fraud_rates,
    probe_time,
    probes,
    produce,
    scratch_database,
    scratch_topics,
    services,
    wait_for,
)
from test_data.generator import simulate
from test_data.spec import LabelDelays, SimulationSpec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--mysql-outage", type=float, default=60.0, help="seconds MySQL is down")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model-dir", default="model_state/versions")
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    rng = random.Random(args.seed)
    spec = SimulationSpec(
        seed=args.seed,
        days=args.days,
        cards=args.cards,
        merchants=max(args.cards // 20, 10),
        fraud_rate=0.01,
        label_delays=LabelDelays(fraud_median_days=1.0, legit_maturity_days=2.0),
    )
    sim = simulate(spec)
    payments = list(sim.payments())
    horizon = payments[0].event_time + timedelta(days=args.days + 10)
    labels = [label for label in sim.labels() if label.reported_at <= horizon]
    print(f"stream: {len(payments):,} payments, {len(labels):,} labels", flush=True)
    chunks = args.kills + 4
    size = -(-len(payments) // chunks)
    outage_at, stop_at, broker_at = 1, 2, 3
    with (
        scratch_database(config, "payscore_soak") as url,
        scratch_topics(config.kafka_brokers, config.topic_partitions, "soak") as topics,
        tempfile.TemporaryDirectory(prefix="payscore-soak-") as work,
    ):
        engine = make_engine(url)
        models = Path(work) / "models"
        models.mkdir()
        for version in sorted(Path(args.model_dir).iterdir()):
            if version.name.count(".") == 0 and (version / "metadata.json").exists():
                (models / version.name).symlink_to(version.resolve())
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
        env |= {f"PAYSCORE_{k.upper()}": v for k, v in topics.items()}
        env |= {
            "PAYSCORE_MYSQL_URL": url,
            "PAYSCORE_MODEL_DIR": str(models),
            "PAYSCORE_TAIL": "true",
            "PAYSCORE_LABEL_RETRY_SECONDS": "1",
            "PAYSCORE_LABEL_WAIT_SECONDS": "900",
            "PAYSCORE_MYSQL_OUTAGE_SECONDS": str(args.mysql_outage + 120),
        }
        log = Path(work) / "flow.log"
        flow = FlowProcess(
            env, Path(work) / "recovery", log, processes=args.processes, workers=args.workers
        )
        flow.start()
        started = time.monotonic()
        sent = kills = 0
        try:
            for i in range(chunks):
                part = payments[i * size : (i + 1) * size]
                if not part:
                    break
                last = part[-1].event_time if (i + 1) * size < len(payments) else horizon
                due = [x for x in labels[sent:] if x.reported_at <= last]
                sent += len(due)
                produce(config.kafka_brokers, topics, due + part)
                time.sleep(rng.uniform(0.5, 3.0))
                if i == outage_at:
                    print(f"MySQL down for {args.mysql_outage:.0f} s", flush=True)
                    services("restart-mysql", str(args.mysql_outage))
                elif i == stop_at:
                    print(f"SIGTERM: exit status {flow.stop()}", flush=True)
                    flow.start()
                elif i == broker_at:
                    print("broker restart", flush=True)
                    services("restart-kafka", "2")
                elif kills < args.kills:
                    kills += 1
                    if kills % 3 == 0:
                        flow.kill9_after_snapshot(timeout=60)
                    else:
                        flow.kill9()
                    flow.start()
                    if kills % 5 == 0:
                        time.sleep(rng.uniform(3, 8))
                        flow.kill9()
                        flow.start()
                if not flow.running:
                    print(f"the flow exited; see {log}", flush=True)
                    return 1
            labels = labels[:sent]

            def count(table: Table, *where: ColumnElement[bool]) -> int:
                with engine.connect() as c:
                    query = select(func.count()).select_from(table).where(*where)
                    return int(c.execute(query).scalar_one())

            def settled() -> bool:
                if not flow.running:
                    raise SystemExit(f"the flow exited while settling; see {log}")
                labelled = count(fraud_labels, fraud_labels.c.status != "waiting")
                letters = count(dead_letters)
                return count(scored_payments) == len(payments) and labelled + letters == len(labels)

            wait_for("everything to settle", settled, 3600)
            time.sleep(2)
            probe = probes(engine, probe_time(payments, labels))
            produce(config.kafka_brokers, topics, probe)
            total = len(payments) + len(probe)
            wait_for("the probes", lambda: count(scored_payments) == total, 600)
            status = flow.stop()
        finally:
            if flow.running:
                flow.kill9()
        seconds = time.monotonic() - started
        result = account(
            engine,
            payments + probe,
            labels,
            topics["labels_topic"],
            decisions=(config.kafka_brokers, topics["decisions_topic"]),
        )
        rates = check_fraud_rates(engine, [p.transaction_id for p in probe])
        print(result.summary())
        print(
            f"flow starts: {flow.starts} (kills: {kills}); final stop status {status}; "
            f"{seconds:.0f} s; fraud-rate probes: {len(probe)}, problems: {len(rates)}"
        )
        for problem in rates[:10]:
            print("  ", problem)
        engine.dispose()
        return 1 if result.problems or rates or status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
