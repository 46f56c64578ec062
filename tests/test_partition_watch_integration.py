"""A partition added to the payments topic while the flow runs stops the flow (for its
supervisor to start it again), and the next run reads it (``dataflows/partition_watch.py``).
Before, the flow went on without the new partition, and its payments were not scored."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions
from sqlalchemy import Engine, select

from dataflows.partition_watch import CHECK_SECONDS
from storage.tables import scored_payments
from test_data.hostile import valid_payment
from test_data.ports import free_ports
from tests.flowrun import BROKERS, ROOT, flow_env, run_flow, stop

pytestmark = pytest.mark.integration


def send(topic: str, txn: str, partition: int) -> None:
    producer = Producer({"bootstrap.servers": BROKERS})
    value = msgspec.json.encode(valid_payment(transaction_id=txn, card_id=f"card-{txn}"))
    producer.produce(topic, value, key=txn.encode(), partition=partition)
    assert producer.flush(30) == 0


def stored(engine: Engine) -> set[str]:
    with engine.connect() as c:
        return set(c.execute(select(scored_payments.c.transaction_id)).scalars())


def test_a_partition_added_while_the_flow_runs_stops_it_and_the_next_run_reads_it(
    one_partition_topics: dict[str, str],
    mysql_url: str,
    engine: Engine,
    models: Path,
    tmp_path: Path,
) -> None:
    topics = one_partition_topics
    pay = topics["payments_topic"]
    send(pay, "tx-before", 0)
    env = flow_env(topics, mysql_url, models, tail="true") | {"FLOW_BASE_PORT": str(free_ports(1))}
    log = tmp_path / "flow.log"
    with log.open("wb") as out:
        flow = subprocess.Popen(
            ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while stored(engine) != {"tx-before"}:
            assert time.monotonic() < deadline and flow.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        admin = AdminClient({"bootstrap.servers": BROKERS})
        admin.create_partitions([NewPartitions(pay, 2)])[pay].result(timeout=30)
        send(pay, "tx-new-partition", 1)
        flow.wait(timeout=CHECK_SECONDS * 2 + 60)  # the check runs every CHECK_SECONDS
    finally:
        stop(flow)
    said = log.read_text(errors="replace")
    assert flow.returncode != 0, said[-3000:]
    assert f"Kafka topic '{pay}' has 2 partitions now, 1 when the flow started" in said
    assert stored(engine) == {"tx-before"}  # the new partition was not read by that run
    run_flow(flow_env(topics, mysql_url, models), processes=1, workers=1)
    assert stored(engine) == {"tx-before", "tx-new-partition"}
