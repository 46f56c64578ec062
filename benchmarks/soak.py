"""A soak of the flow under a long crash and outage schedule, with the same accounting as the
chaos drill (``tests/test_chaos_integration.py``); not part of CI.

    .venv/bin/python benchmarks/soak.py --cards 8000 --days 6 --kills 25 \\
        --mysql-outage 45 --outage-limit 15 --seed 805178

It simulates a stream (payments and their labels), sends it in ``kills + 4`` chunks to fresh
topics, and runs the flow (``ops/run_flow.sh``, recovery on) while it ``kill -9``s it at random
moments (every third right after a snapshot, every fifth right after a restart), stops it once
with SIGTERM, takes MySQL down for ``--mysql-outage`` seconds under it (once every process has
built the flow) and restarts the broker once. When the outage is longer than ``--outage-limit``
(``PAYSCORE_MYSQL_OUTAGE_SECONDS``), the flow exits non-zero under it and runs under
``run_flow.sh --supervise``, which starts it again.

Labels come as ``--labels`` says: ``banks`` (the default, as the drill) reports every fraud
and three in ten legitimate payments, and a payment nobody reported within a day
(``PAYSCORE_LABEL_DELAY_DAYS=1``) is an implicit negative; ``frauds-only`` reports frauds alone
(every legitimate payment is an implicit negative); ``all`` reports every payment (no implicit
negatives). The learner downsamples legitimate labels at ``--sample-rate``
(``PAYSCORE_LEGIT_SAMPLE_RATE``, by default what ships). With implicit negatives, frauds reported
five days after payments learned as legitimate then come as corrections, through one more
``kill -9``. Then it waits for everything to settle, scores probe payments per terminal
(:func:`test_data.chaos.probe_rounds`), waits for the implicit negatives due and for every
claimed label to reach a published version, and prints what :func:`test_data.chaos.account`
found; the exit status is 1 on any problem. The flow's log is kept (its path is printed).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import msgspec
from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.engine import make_url

from features.contract import FraudLabel, Payment
from settings.config import Config
from storage.engine import make_engine
from storage.tables import dead_letters, fraud_labels, scored_payments
from test_data.chaos import (
    FlowProcess,
    account,
    all_in_versions,
    implicit_settled,
    late_frauds,
    probe_rounds,
    probe_time,
    produce,
    scratch_database,
    scratch_topics,
    services,
    wait_for,
)
from test_data.generator import simulate
from test_data.spec import LabelDelays, SimulationSpec

# Legitimate payments reported, by label mode (frauds are always reported).
LEGIT_REPORTED = {"banks": 0.3, "frauds-only": 0.0, "all": 1.0}
DELAY = timedelta(days=1)  # PAYSCORE_LABEL_DELAY_DAYS with implicit negatives
LATE_FRAUDS = 20
# PAYSCORE_LEGIT_SAMPLE_RATE as it ships: the Config field's default.
SHIPPED_SAMPLE_RATE: float = next(
    f.default for f in msgspec.structs.fields(Config) if f.name == "legit_sample_rate"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--mysql-outage", type=float, default=60.0, help="seconds MySQL is down")
    parser.add_argument(
        "--outage-limit",
        type=float,
        default=None,
        help="PAYSCORE_MYSQL_OUTAGE_SECONDS (default: the outage + 120 s, ridden out); below "
        "the outage the flow exits under it and runs supervised",
    )
    parser.add_argument("--labels", choices=sorted(LEGIT_REPORTED), default="banks")
    parser.add_argument(
        "--sample-rate",
        type=float,
        default=SHIPPED_SAMPLE_RATE,
        help="PAYSCORE_LEGIT_SAMPLE_RATE (default: what ships, %(default)s)",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model-dir", default="model_state/versions")
    parser.add_argument(
        "--keep", default="soak-logs", help="folder the flow's log is copied to (per seed)"
    )
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    rng = random.Random(args.seed)
    implicit = args.labels != "all"
    limit = args.outage_limit if args.outage_limit is not None else args.mysql_outage + 120
    supervise = args.mysql_outage > limit
    spec = SimulationSpec(
        seed=args.seed,
        days=args.days,
        cards=args.cards,
        merchants=max(args.cards // 20, 10),
        fraud_rate=0.01,
        label_delays=LabelDelays(
            fraud_median_days=1.0,
            legit_maturity_days=3.0 if implicit else 2.0,
            legit_fraction=LEGIT_REPORTED[args.labels],
        ),
    )
    sim = simulate(spec)
    payments = list(sim.payments())
    horizon = payments[0].event_time + timedelta(days=args.days + 10)
    labels: list[FraudLabel] = [x for x in sim.labels() if x.reported_at <= horizon]
    print(
        f"seed {args.seed}; stream: {len(payments):,} payments, {len(labels):,} labels "
        f"({args.labels}); sample rate {args.sample_rate}; MySQL outage {args.mysql_outage:.0f} s"
        f", limit {limit:.0f} s ({'supervised' if supervise else 'ridden out'})",
        flush=True,
    )
    chunks = args.kills + 4
    size = -(-len(payments) // chunks)
    outage_at, stop_at, broker_at = 1, 2, 3
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    kept_log = keep / f"soak-{args.seed}-{time.strftime('%Y%m%dT%H%M%S')}.log"
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
        on_it = config.on_database(str(make_url(url).database))
        env |= {
            # The configured broker and server (private ones for a drill, README *Outages*).
            "PAYSCORE_KAFKA_BROKERS": config.kafka_brokers,
            "PAYSCORE_REVIEW_MYSQL_URL": on_it.review_mysql_dsn,
            "PAYSCORE_MODELS_MYSQL_URL": on_it.models_mysql_dsn,
            "PAYSCORE_MYSQL_ADMIN_URL": on_it.mysql_admin_dsn,
            "PAYSCORE_MYSQL_URL": url,
            "PAYSCORE_MODEL_DIR": str(models),
            "PAYSCORE_TAIL": "true",
            "PAYSCORE_LABEL_RETRY_SECONDS": "1",
            "PAYSCORE_LABEL_WAIT_SECONDS": "900",
            "PAYSCORE_MYSQL_OUTAGE_SECONDS": str(limit),
            "PAYSCORE_PUBLISH_SECONDS": "5",
            "PAYSCORE_LEGIT_SAMPLE_RATE": str(args.sample_rate),
            # No implicit negatives in "all": a century.
            "PAYSCORE_LABEL_DELAY_DAYS": "1" if implicit else "36500",
        }
        log = Path(work) / "flow.log"
        flow = FlowProcess(
            env,
            Path(work) / "recovery",
            log,
            processes=args.processes,
            workers=args.workers,
            supervise=supervise,
        )

        def count(table: Table, *where: ColumnElement[bool]) -> int:
            with engine.connect() as c:
                query = select(func.count()).select_from(table).where(*where)
                return int(c.execute(query).scalar_one())

        def settled(expected: int) -> bool:
            if not flow.running:
                raise SystemExit(f"the flow exited while settling; see {kept_log}")
            labelled = count(fraud_labels, fraud_labels.c.status != "waiting")
            letters = count(dead_letters, dead_letters.c.topic == topics["labels_topic"])
            return count(scored_payments) == len(payments) and labelled + letters == expected

        flow.start()
        started = time.monotonic()
        sent = kills = 0
        probe: list[Payment] = []
        rates: list[str] = []
        rounds = 0
        status = -1
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
                    # Under a running flow (its sinks and label claims), not one still starting.
                    flow.wait_built()
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
                    print(f"the flow exited; see {kept_log}", flush=True)
                    return 1
            labels = labels[:sent]
            wait_for("everything to settle", lambda: settled(len(labels)), 3600)
            print(f"settled after {time.monotonic() - started:.0f} s", flush=True)
            if implicit:
                # Frauds reported days after payments learned as legitimate: corrections.
                late = late_frauds(engine, payments, LATE_FRAUDS, after=timedelta(days=5))
                labels += late
                produce(config.kafka_brokers, topics, late)
                kills += 1
                flow.kill9()  # while they are claimed
                flow.start()
                wait_for("the late frauds to settle", lambda: settled(len(labels)), 600)
            time.sleep(2)  # the last claims reach the fraud rates
            probe, rates, rounds = probe_rounds(
                engine,
                lambda batch: produce(config.kafka_brokers, topics, batch),
                probe_time(payments, labels),
            )
            if implicit:
                wait_for("the implicit negatives due", lambda: implicit_settled(engine, DELAY), 300)
            # The learner publishes within PAYSCORE_PUBLISH_SECONDS: a label claimed but never
            # learned stops this wait.
            wait_for("every claimed label in a version", lambda: all_in_versions(engine), 300)
            status = flow.stop()
        finally:
            if flow.running:
                flow.kill9()
            if log.exists():
                shutil.copyfile(log, kept_log)
            print(f"the flow's log: {kept_log}", flush=True)
        seconds = time.monotonic() - started
        result = account(
            engine,
            payments + probe,
            labels,
            topics["labels_topic"],
            decisions=(config.kafka_brokers, topics["decisions_topic"]),
            label_delay=DELAY if implicit else None,
            sample_rate=args.sample_rate,
        )
        restarts = flow.supervised_restarts()
        print(result.summary())
        print(
            f"flow starts: {flow.starts} (kills: {kills}); supervised restarts: {len(restarts)}; "
            f"final stop status {status}; {seconds:.0f} s; fraud-rate probes: {len(probe)} in "
            f"{rounds} rounds, problems: {len(rates)}"
        )
        for line in restarts[:10]:
            print("  ", line)
        for problem in rates[:10]:
            print("  ", problem)
        problems = list(result.problems)
        if result.decision_keys != len(payments) + len(probe):
            problems.append(f"{result.decision_keys} decision keys, {len(payments) + len(probe)}")
        if supervise and not restarts:
            problems.append("the MySQL outage passed its limit but no supervised restart shows")
        engine.dispose()
        return 1 if problems or rates or status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
