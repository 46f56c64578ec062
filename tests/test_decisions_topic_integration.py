"""The decisions topic (issue 21 item 9), on the real server and broker with the flow's own
payments sink (two workers' partitions) and publisher: a consumer that keeps the last value per
key sees exactly the stored decisions, through replays re-scored by another model, reused ids
settled by Kafka order whichever worker commits first, rows MySQL refuses, and a broker that
takes nothing (the batch rolls back)."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from dataflows.decisions_topic import DecisionsTopic, DecisionsTopicError
from rules.decisions import Outcome
from settings.config import DECISIONS_TOPIC_SETTINGS, Config
from storage.payments import settle_reused_ids
from storage.rows import refused_row_letter, scored_payment_row
from storage.sink import MySQLSink, MySQLSinkPartition, Writing
from storage.tables import dead_letters, scored_payments
from test_data.chaos import check_decisions, latest_decisions
from test_data.generator import simulate
from test_data.ports import free_ports
from test_data.spec import SimulationSpec
from tests.builders import payment
from tests.flowrun import ROOT, flow_env, produce, run_flow

pytestmark = pytest.mark.integration

BROKERS = Config.from_env(os.environ).kafka_brokers
SOURCE = "test-payments"
T0 = datetime(2026, 11, 2, 8, 30)


@pytest.fixture
def decisions_topic() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}-decisions"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    new = NewTopic(name, num_partitions=4, config=DECISIONS_TOPIC_SETTINGS)
    admin.create_topics([new])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def workers(url: str, topic: str, n: int = 2, *, patience: float = 30) -> list[MySQLSinkPartition]:
    """``n`` workers' partitions of the flow's payments sink (as scoring.scored_payments_sink)."""
    sink = MySQLSink(
        url,
        scored_payments,
        Writing(
            refused=refused_row_letter(SOURCE),
            refused_table=dead_letters,
            conflicts=settle_reused_ids,
            patience=patience,
            before_commit=lambda: DecisionsTopic(
                {"bootstrap.servers": BROKERS}, topic, patience=patience
            ),
        ),
    )
    return [sink.build("store_scored_payments", i, n) for i in range(n)]


def row(
    txn: str, card: str, offset: int, *, probability: float = 0.1, rule: str | None = None
) -> dict[str, Any]:
    """A scored payment read at ``offset`` of partition 0 (appended then)."""
    model = "decline" if probability >= 0.9 else "review" if probability >= 0.5 else "approve"
    outcome = Outcome("decline", rule, (rule,), (), (f"decline by rule {rule}",)) if rule else None
    return scored_payment_row(
        payment(transaction_id=txn, card_id=card, event_time=T0.astimezone()),
        partition=0, offset=offset, features={"card_count_24h": 1.0}, probability=probability,
        decision=model, reasons=() if model != "approve" else None, model_version="v00001",
        scored_at=T0, appended_at=(T0 + timedelta(seconds=offset)).timestamp(),
        outcome=outcome, ruleset_version=3 if rule else 0,
    )  # fmt: skip


def stored_count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(scored_payments)).scalar_one())


def test_replays_and_a_reused_id_leave_the_stored_decision_last(
    mysql_url: str, engine: Engine, decisions_topic: str
) -> None:
    one, two = workers(mysql_url, decisions_topic)
    a = row("tx-1", "card-A", 10)  # the first message in Kafka order
    b = row("tx-1", "card-B", 11, rule="burst")  # a later message reusing its id
    c = row("tx-2", "card-C", 12, probability=0.95)
    two.write_batch([b, c])  # the later message is stored first ...
    latest, _ = latest_decisions(BROKERS, decisions_topic)
    assert latest["tx-1"].decided_by == "burst" and latest["tx-1"].decision == "decline"
    one.write_batch([a])  # ... until the earlier one replaces it, published after it
    latest, _ = latest_decisions(BROKERS, decisions_topic)
    assert (latest["tx-1"].decision, latest["tx-1"].decided_by) == ("approve", "model")
    assert latest["tx-1"].kafka_offset == 10
    # A replay re-scored by another model (or ruleset) publishes the stored decision, not its own.
    rescored = row("tx-2", "card-C", 12, probability=0.2, rule="other")
    one.write_batch([rescored])
    two.write_batch([dict(b)])
    latest, records = latest_decisions(BROKERS, decisions_topic)
    assert latest["tx-2"].decision == "decline" and latest["tx-2"].model_decision == "decline"
    assert latest["tx-2"].fraud_probability == 0.95
    assert check_decisions(engine, latest) == []
    assert records >= 5  # at least once: repeats on the log, the last one right


def test_a_row_mysql_refuses_is_never_published(
    mysql_url: str, engine: Engine, decisions_topic: str
) -> None:
    (one,) = workers(mysql_url, decisions_topic, 1)
    good = row("tx-good", "card-A", 1)
    bad = row("tx-bad", "card-B", 2)
    bad["currency"] = "EURO"  # longer than the column: MySQL refuses the row
    one.write_batch([good, bad])
    latest, _ = latest_decisions(BROKERS, decisions_topic)
    assert set(latest) == {"tx-good"}
    assert check_decisions(engine, latest) == []
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 1


def test_a_decision_the_broker_does_not_take_rolls_the_batch_back(
    mysql_url: str, engine: Engine
) -> None:
    (one,) = workers(mysql_url, f"test-{uuid.uuid4().hex[:8]}-absent", 1, patience=5)
    with pytest.raises(DecisionsTopicError, match="rolled back"):
        one.write_batch([row("tx-1", "card-A", 1)])
    assert stored_count(engine) == 0  # nothing stored: the replay stores and publishes it


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.tuples(
            st.integers(0, 5),  # transaction id
            st.integers(0, 3),  # which message of it (its offset order)
            st.integers(0, 1),  # worker
            st.booleans(),  # a rule fires
            st.floats(0, 1),  # re-scored probability
        ),
        min_size=4,
        max_size=25,
    )
)
def test_concurrent_workers_leave_exactly_the_stored_decisions_last(
    mysql_url: str, engine: Engine, decisions_topic: str, plan
) -> None:
    """Messages of a few ids (reused, replayed, re-scored) written by two workers at once, in
    any order: the last value per key is the stored decision."""
    run = uuid.uuid4().hex[:6]
    workers_ = workers(mysql_url, decisions_topic)
    batches: list[list[dict[str, Any]]] = [[], []]
    for txn, message, worker, rule, p in plan:
        r = row(
            f"{run}-{txn}", f"card-{message}", 100 + 10 * txn + message,
            probability=p, rule="r1" if rule else None,
        )  # fmt: skip
        batches[worker].append(r)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            for r in batches[index]:
                workers_[index].write_batch([r])
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    latest, _ = latest_decisions(BROKERS, decisions_topic)
    assert check_decisions(engine, latest) == []
    for w in workers_:
        w.close()


def test_a_flow_whose_decisions_cannot_go_out_stops_and_a_rerun_loses_nothing(
    topics: dict[str, str], mysql_url: str, engine: Engine, models, tmp_path
) -> None:
    """The flow (2 processes, 4 partitions) with its decisions topic missing: it refuses to
    start, naming the variable (``dataflows/output_topics.py``; before, every batch rolled back
    after PAYSCORE_MYSQL_OUTAGE_SECONDS, which ``test_a_decision_the_broker_does_not_take_rolls_
    the_batch_back`` still shows for a topic that fails while the flow runs), nothing stored;
    once the topic exists, a rerun stores every payment and publishes its decision."""
    sim = simulate(SimulationSpec(seed=45, days=1, cards=100, merchants=20))
    payments = list(sim.payments())
    produce(topics, payments)
    missing = f"{topics['decisions_topic']}-later"
    env = flow_env(topics, mysql_url, models, decisions_topic=missing, mysql_outage_seconds="5") | {
        "FLOW_BASE_PORT": str(free_ports(2))
    }
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "2", "2"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"Kafka topic '{missing}' (PAYSCORE_DECISIONS_TOPIC) cannot be described" in (
        done.stderr
    ), done.stderr[-3000:]
    assert stored_count(engine) == 0
    admin = AdminClient({"bootstrap.servers": BROKERS})
    new = NewTopic(missing, num_partitions=4, config=DECISIONS_TOPIC_SETTINGS)
    admin.create_topics([new])[missing].result(timeout=30)
    try:
        run_flow(env, processes=2, workers=2)
        latest, _ = latest_decisions(BROKERS, missing)
    finally:
        admin.delete_topics([missing])[missing].result(timeout=30)
    assert stored_count(engine) == len(payments)
    assert len(latest) == len(payments)
    assert check_decisions(engine, latest) == []
