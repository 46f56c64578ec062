"""A bounded chaos drill on the real broker and server: payments and labels flow while the flow is
killed with ``kill -9`` at random moments (one right after a snapshot, one right after a
restart), stopped once with SIGTERM, and MariaDB and the broker are each restarted under it
(``ops/services.sh restart-mysql|restart-kafka``: run it against private services, whose
``SERVICES_*`` settings and ``PAYSCORE_*`` URLs and broker the test passes on; see the README's
*Outages*).

Afterwards, from MySQL alone (:mod:`test_data.chaos`): every payment is stored once with card
features equal to the offline replay; every label message is accounted for and every claimed
label was learned exactly once (the newest version's ``labels_learned``, and the chain of
versions); and probe payments scored last show fraud rates that count every claimed fraud of
their terminal and merchant exactly once; and on the decisions topic, the last record of every
key is exactly its stored decision (a consumer that keeps the last value per key sees the stored
decisions, none missing, none extra). Labels come as banks send them: a payment nobody
reported within a day (``PAYSCORE_LABEL_DELAY_DAYS=1``) is an implicit negative, claimed and
learned once through the crashes, a fraud reported after it is a correction, and legitimate
labels are learned as a half sample (``PAYSCORE_LEGIT_SAMPLE_RATE=0.5``), chosen by transaction
id; then 20 frauds reported five days after payments learned as legitimate are corrections,
through one more ``kill -9``. Runs in about four minutes on a loaded machine.
"""

from __future__ import annotations

import random
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

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
    services,
    wait_for,
)
from test_data.generator import simulate
from test_data.spec import LabelDelays, SimulationSpec
from tests.flowrun import BROKERS, flow_env

pytestmark = [pytest.mark.integration, pytest.mark.restarts_services]
DELAY = timedelta(days=1)


def stored(engine: Engine) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(scored_payments)).scalar_one()


def labels_settled(engine: Engine, topic: str, expected: int) -> bool:
    fl, dl = fraud_labels, dead_letters
    with engine.connect() as c:
        rows = c.execute(
            select(func.count()).select_from(fl).where(fl.c.status != "waiting")
        ).scalar_one()
        letters = c.execute(
            select(func.count()).select_from(dl).where(dl.c.topic == topic)
        ).scalar_one()
    return rows + letters == expected


def test_crashes_a_stop_and_outages_lose_nothing_and_learn_nothing_twice(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path, tmp_path: Path
) -> None:
    rng = random.Random(20261201)
    spec = SimulationSpec(
        seed=41,
        days=4,
        cards=2000,
        merchants=150,
        fraud_rate=0.02,
        # Most legitimate payments are never reported (implicit negatives); some are, after the
        # delay (duplicates of an implicit negative, or claimed first: the flow reads both
        # topics at once after a restart).
        label_delays=LabelDelays(
            fraud_median_days=1.0, legit_maturity_days=3.0, legit_fraction=0.3
        ),
    )
    sim = simulate(spec)
    payments = list(sim.payments())
    horizon = payments[0].event_time + timedelta(days=20)  # fraud rates' 30-day window
    labels = [label for label in sim.labels() if label.reported_at <= horizon]
    chunks = 6
    size = -(-len(payments) // chunks)
    env = flow_env(
        topics,
        mysql_url,
        models,
        tail="true",
        kafka_batch_size="200",
        label_retry_seconds="1",
        label_wait_seconds="300",
        publish_every_labels="100",
        publish_seconds="2",
        model_refresh_seconds="1",
        mysql_outage_seconds="120",
        label_delay_days="1",
        legit_sample_rate="0.5",
    )
    flow = FlowProcess(env, tmp_path / "recovery", tmp_path / "flow.log")
    flow.start()
    sent_labels = 0
    try:
        for i in range(chunks):
            part = payments[i * size : (i + 1) * size]
            last = part[-1].event_time if i < chunks - 1 else horizon
            due = [x for x in labels[sent_labels:] if x.reported_at <= last]
            sent_labels += len(due)
            # Labels first: some reach the flow before their payments and wait for them.
            produce(BROKERS, topics, due + part)
            time.sleep(rng.uniform(0.3, 1.5))
            if i == 0:
                flow.kill9()
                flow.start()
            elif i == 1:
                flow.kill9_after_snapshot()
                flow.start()
            elif i == 2:
                services("restart-mysql", "3")
                assert flow.running, "the flow stopped during a short MySQL outage"
            elif i == 3:
                flow.wait_built()  # a SIGTERM before the handlers are installed kills it
                assert flow.stop() == 0, "SIGTERM did not stop the flow cleanly"
                flow.start()
            elif i == 4:
                services("restart-kafka", "1")
                assert flow.running, "the flow stopped during a broker restart"
            else:
                flow.kill9()
                flow.start()
                time.sleep(rng.uniform(4, 8))  # about when the restarted flow gets going
                flow.kill9()
                flow.start()
        assert sent_labels == len(labels)
        wait_for("every payment to be stored", lambda: stored(engine) == len(payments), 150)
        wait_for(
            "every label to be settled",
            lambda: labels_settled(engine, topics["labels_topic"], len(labels)),
            150,
        )
        # Frauds reported days after payments the flow learned as legitimate: corrections.
        late = late_frauds(engine, payments, 20, after=timedelta(days=5))
        labels += late
        produce(BROKERS, topics, late)
        flow.kill9()  # while they are claimed
        flow.start()
        wait_for(
            "the late frauds to be settled",
            lambda: labels_settled(engine, topics["labels_topic"], len(labels)),
            150,
        )
        time.sleep(2)  # the last claims reach the fraud rates
        # Probe rounds (at most three, 15 s apart) until the fraud notes in flight have landed.
        probe, rates, rounds = probe_rounds(
            engine, lambda batch: produce(BROKERS, topics, batch), probe_time(payments, labels)
        )
        wait_for("the implicit negatives due", lambda: implicit_settled(engine, DELAY), 60)
        # The probes move the event-time clock: the implicit negatives they make due are claimed
        # and learned, and published within PAYSCORE_PUBLISH_SECONDS; a label claimed but never
        # learned would stop this wait.
        wait_for("every claimed label in a version", lambda: all_in_versions(engine), 60)
        assert flow.stop() == 0
    finally:
        if flow.running:
            flow.kill9()

    result = account(
        engine,
        payments + probe,
        labels,
        topics["labels_topic"],
        decisions=(BROKERS, topics["decisions_topic"]),
        label_delay=DELAY,
        sample_rate=0.5,
    )
    print(
        result.summary(),
        f"\nflow starts: {flow.starts}; probes: {len(probe)} in {rounds} rounds",
    )
    log_tail = (tmp_path / "flow.log").read_text(errors="replace")[-3000:]
    assert result.problems == [], result.summary() + "\n" + log_tail
    # The recovery folder run_flow.sh made holds card histories: its owner's alone.
    assert stat.S_IMODE((tmp_path / "recovery").stat().st_mode) == 0o700
    assert rates == [], rates[:10]
    assert result.claimed > 100 and result.versions > 5, result.summary()
    assert result.decision_keys == len(payments) + len(probe), result.summary()
    assert result.implicit_learned > 1000 and result.corrections >= len(late), result.summary()
