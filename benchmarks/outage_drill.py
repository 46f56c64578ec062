"""A drill of repeated MySQL outages under load (issue 20, item 2); not part of CI.

    .venv/bin/python benchmarks/outage_drill.py --outages 10 --min-down 10 --max-down 90

It simulates a stream (payments and their labels), runs the flow (``ops/run_flow.sh``, 2
processes, recovery on, *not* supervised: any non-zero exit shows) and feeds the stream to fresh
topics at a steady pace for the whole drill. Meanwhile it takes MySQL down ``--outages`` times,
each for a random 10-90 s, with 20-40 s of service between outages. For each outage it prints
how long MySQL was down, whether the flow rode it out, how long the flow took to store again
once MySQL was back, and what the flow logged meanwhile (retries, errors, panics). A flow that
exits is reported with the tail of its log and started again (recovery resumes it), so that the
other outages are still drilled. At the end it waits for everything to settle, scores one probe
payment per terminal and prints the exactly-once accounting of :func:`test_data.chaos.account`
and :func:`test_data.chaos.check_fraud_rates`. The exit status is 1 if the flow exited even
once or the accounting found a problem.

MySQL is stopped and started with ``--mysql-down`` and ``--mysql-up`` (default
``bash ops/services.sh mysql-down`` / ``mysql-up``: the server ``ops/services.sh`` runs). To
leave a shared server alone, drill a private one: ``ops/services.sh`` runs a second server from
``SERVICES_MYSQL_DATADIR`` on ``SERVICES_MYSQL_PORT`` with the same accounts, and the flow and
this script connect to the server of ``PAYSCORE_MYSQL_URL`` (the flow's account) and
``PAYSCORE_MYSQL_ADMIN_URL`` (the admin's, which makes the drill's database and grants the job
accounts their rights in it, as ``python -m storage.schema --create`` does)::

    export SERVICES_MYSQL_DATADIR=/work/drill-mysql/data SERVICES_MYSQL_PORT=3310
    export PAYSCORE_MYSQL_URL=mysql+pymysql://payscore_flow:payscore_flow@127.0.0.1:3310/payscore
    export PAYSCORE_REVIEW_MYSQL_URL=mysql+pymysql://payscore_review:payscore_review@127.0.0.1:3310/payscore
    export PAYSCORE_MODELS_MYSQL_URL=mysql+pymysql://payscore_models:payscore_models@127.0.0.1:3310/payscore
    export PAYSCORE_ANALYST_MYSQL_URL=mysql+pymysql://payscore_analyst:payscore_analyst@127.0.0.1:3310/payscore
    export PAYSCORE_MYSQL_ADMIN_URL=mysql+pymysql://payscore_admin:payscore_admin@127.0.0.1:3310/payscore
    bash ops/services.sh mysql-up
    .venv/bin/python benchmarks/outage_drill.py

The broker (``PAYSCORE_KAFKA_BROKERS``) is never restarted; the topics are new and deleted
afterwards, as is the database. The flow's log is kept under ``--keep`` (default
``reports/outage_drill/<time>/flow.log``).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import Producer
from sqlalchemy import ColumnElement, Engine, Table, func, select

from features.contract import FraudLabel, Payment
from settings.config import Config
from storage.engine import make_engine
from storage.tables import dead_letters, fraud_labels, scored_payments
from test_data.chaos import (
    ROOT,
    FlowProcess,
    account,
    check_fraud_rates,
    probe_time,
    probes,
    produce,
    scratch_database,
    scratch_topics,
    wait_for,
)
from test_data.generator import simulate
from test_data.produce import from_simulation, send
from test_data.spec import LabelDelays, SimulationSpec

# What in the flow's log says something went wrong (a retry is expected during an outage).
ALARMS = re.compile(
    r"Traceback|panic|FATAL|exited with status|\b(ERROR|CRITICAL)\b|Abort|core dumped|"
    r"Fatal Python error"
)
LINE_CHARS = 300


class Feeder(threading.Thread):
    """Sends the stream in one-second chunks, paced to last ``seconds``; labels go out once the
    stream's clock passes their report time. :meth:`hurry` sends the rest at once."""

    def __init__(
        self,
        brokers: str,
        topics: dict[str, str],
        payments: Sequence[Payment],
        labels: Sequence[FraudLabel],
        seconds: float,
    ) -> None:
        super().__init__(name="drill-feeder", daemon=True)
        self._brokers = brokers
        self._topics = topics
        self._payments = payments
        self._labels = labels
        self._chunk = max(1, -(-len(payments) // max(int(seconds), 1)))
        self._fast = threading.Event()
        self.payments_sent = 0
        self.labels_sent = 0
        self.error: str | None = None

    def hurry(self) -> None:
        self._fast.set()

    def run(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self._brokers, "linger.ms": 5, "enable.idempotence": True}
        )
        labels = sorted(self._labels, key=lambda x: x.reported_at)
        sent_labels = 0
        try:
            for start in range(0, len(self._payments), self._chunk):
                part = list(self._payments[start : start + self._chunk])
                last = part[-1].event_time
                due: list[Payment | FraudLabel] = []
                while sent_labels < len(labels) and labels[sent_labels].reported_at <= last:
                    due.append(labels[sent_labels])
                    sent_labels += 1
                records = from_simulation(
                    [*due, *part], self._topics["payments_topic"], self._topics["labels_topic"]
                )
                report = send(records, producer, progress=False)
                if not report.ok:
                    self.error = f"producing failed: {report.errors[:3]}"
                    return
                self.payments_sent += len(part)
                self.labels_sent = sent_labels
                if not self._fast.is_set():
                    self._fast.wait(1.0)
        except Exception as exc:  # the drill reports it; the flow is not at fault
            self.error = f"{type(exc).__name__}: {exc}"


def count(engine: Engine, table: Table, *where: ColumnElement[bool]) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def run(command: str) -> float:
    """Run a stop or start command of MySQL; the seconds it took."""
    began = time.monotonic()
    subprocess.run(shlex.split(command), check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.monotonic() - began


def new_log_lines(log: Path, offset: int) -> tuple[list[str], int]:
    with log.open("rb") as f:
        f.seek(offset)
        data = f.read()
    return data.decode(errors="replace").splitlines(), offset + len(data)


def describe_log(lines: list[str]) -> str:
    retries = sum("retrying" in line for line in lines)
    lookups = sum("could not look for" in line for line in lines)
    alarms = [line for line in lines if ALARMS.search(line)]
    text = f"log: {retries} write retries, {lookups} failed model look-ups, {len(alarms)} alarms"
    for line in alarms[:8]:
        text += "\n      ! " + line[:LINE_CHARS]
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outages", type=int, default=10)
    parser.add_argument("--min-down", type=float, default=10.0, help="shortest outage, seconds")
    parser.add_argument("--max-down", type=float, default=90.0, help="longest outage, seconds")
    parser.add_argument("--min-up", type=float, default=20.0, help="shortest time between")
    parser.add_argument("--max-up", type=float, default=40.0, help="longest time between")
    parser.add_argument("--cards", type=int, default=6000)
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--model-dir", default="model_state/versions")
    parser.add_argument("--mysql-down", default="bash ops/services.sh mysql-down")
    parser.add_argument("--mysql-up", default="bash ops/services.sh mysql-up")
    parser.add_argument(
        "--bound", type=float, default=300.0, help="PAYSCORE_MYSQL_OUTAGE_SECONDS of the flow"
    )
    parser.add_argument("--base-port", type=int, default=2470, help="the flow's cluster ports")
    parser.add_argument("--metrics-port", type=int, default=3370, help="its metrics ports")
    parser.add_argument("--keep", default="", help="folder for the flow's log")
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    rng = random.Random(args.seed)
    downs = [rng.uniform(args.min_down, args.max_down) for _ in range(args.outages)]
    ups = [rng.uniform(args.min_up, args.max_up) for _ in range(args.outages)]
    lead = 30.0
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
    horizon = payments[-1].event_time
    labels = [label for label in sim.labels() if label.reported_at <= horizon]
    seconds = lead + sum(downs) + sum(ups)
    print(
        f"stream: {len(payments):,} payments, {len(labels):,} labels, fed over {seconds:.0f} s; "
        f"{args.outages} outages of {', '.join(f'{d:.0f}' for d in downs)} s; "
        f"flow: {args.processes} processes x {args.workers} worker, bound {args.bound:.0f} s",
        flush=True,
    )
    keep = Path(args.keep or ROOT / "reports" / "outage_drill" / time.strftime("%Y%m%d-%H%M%S"))
    keep.mkdir(parents=True, exist_ok=True)
    log = keep / "flow.log"
    print(f"flow log: {log}", flush=True)
    with (
        scratch_database(config, "payscore_drill") as url,
        scratch_topics(config.kafka_brokers, config.topic_partitions, "drill") as topics,
        tempfile.TemporaryDirectory(prefix="payscore-drill-") as work,
    ):
        engine = make_engine(url, pool_size=1)
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
            "PAYSCORE_MODEL_KEY_FILE": config.model_key_file,
            "PAYSCORE_KAFKA_BROKERS": config.kafka_brokers,
            "PAYSCORE_TAIL": "true",
            "PAYSCORE_LABEL_RETRY_SECONDS": "1",
            "PAYSCORE_LABEL_WAIT_SECONDS": "900",
            "PAYSCORE_MYSQL_OUTAGE_SECONDS": str(args.bound),
            "FLOW_METRICS_BASE_PORT": str(args.metrics_port),
            "PYTHONFAULTHANDLER": "1",  # an abort prints every thread's Python stack
        }
        flow = FlowProcess(
            env,
            Path(work) / "recovery",
            log,
            processes=args.processes,
            workers=args.workers,
            base_port=args.base_port,
        )
        feeder = Feeder(config.kafka_brokers, topics, payments, labels, seconds)
        exits: list[str] = []
        ridden = 0
        started = time.monotonic()

        def check_running(when: str) -> bool:
            if flow.running:
                return True
            assert flow.proc is not None
            exits.append(f"status {flow.proc.returncode} {when}")
            lines, _ = new_log_lines(log, 0)
            print(f"    FLOW EXITED with status {flow.proc.returncode} {when}; log tail:")
            for line in lines[-40:]:
                print("      | " + line[:LINE_CHARS])
            flow.start()
            return False

        flow.start()
        feeder.start()
        time.sleep(lead)
        offset = log.stat().st_size
        try:
            for i, (down, up) in enumerate(zip(downs, ups, strict=True), start=1):
                if feeder.error:
                    raise SystemExit(f"the feeder failed: {feeder.error}")
                ok = check_running(f"before outage {i}")
                before = count(engine, scored_payments)
                stop_took = run(args.mysql_down)
                went_down = time.monotonic()
                while time.monotonic() - went_down < down:
                    ok = check_running(f"during outage {i}") and ok
                    time.sleep(1.0)
                run(args.mysql_up)
                back = time.monotonic()
                at_up = count(engine, scored_payments)
                resumed: float | None = None
                while time.monotonic() - back < up:
                    ok = check_running(f"after outage {i}") and ok
                    if resumed is None and count(engine, scored_payments) > at_up:
                        resumed = time.monotonic() - back
                    time.sleep(0.5)
                ok = check_running(f"after outage {i}") and ok
                after = count(engine, scored_payments)
                lines, offset = new_log_lines(log, offset)
                ridden += ok
                stored_again = (
                    f"stored again {resumed:.1f} s after"
                    if resumed is not None
                    else ("nothing stored after")
                )
                print(
                    f"outage {i}/{args.outages}: MySQL down {down:.0f} s (+{stop_took:.0f} s to "
                    f"stop); {'ridden out' if ok else 'THE FLOW EXITED'}; payments stored "
                    f"{before:,} -> {at_up:,} (while down) -> {after:,}; {stored_again} it was "
                    f"back; fed {feeder.payments_sent:,} payments, {feeder.labels_sent:,} labels"
                    f"\n    {describe_log(lines)}",
                    flush=True,
                )
            feeder.hurry()
            feeder.join()
            if feeder.error:
                raise SystemExit(f"the feeder failed: {feeder.error}")

            def settled() -> bool:
                check_running("while settling")
                resolved = count(engine, fraud_labels, fraud_labels.c.status != "waiting")
                letters = count(engine, dead_letters)
                stored = count(engine, scored_payments)
                return stored == len(payments) and resolved + letters == len(labels)

            wait_for("everything to settle", settled, 1800)
            time.sleep(2)
            probe = probes(engine, probe_time(payments, labels))
            produce(config.kafka_brokers, topics, probe)
            total = len(payments) + len(probe)
            wait_for("the probes", lambda: count(engine, scored_payments) == total, 600)
            lines, offset = new_log_lines(log, offset)
            status = flow.stop()
        finally:
            feeder.hurry()
            if flow.running:
                flow.kill9()
        result = account(engine, payments + probe, labels, topics["labels_topic"])
        rates = check_fraud_rates(engine, [p.transaction_id for p in probe])
        print(f"after the last outage: {describe_log(lines)}")
        print(result.summary())
        print(
            f"outages ridden out: {ridden} of {args.outages}; flow exits: "
            f"{len(exits)} ({'; '.join(exits) or 'none'}); flow starts: {flow.starts}; "
            f"final stop status {status}; {time.monotonic() - started:.0f} s; "
            f"fraud-rate probes: {len(probe)}, problems: {len(rates)}"
        )
        for problem in rates[:10]:
            print("  ", problem)
        engine.dispose()
        return 1 if exits or result.problems or rates or status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
