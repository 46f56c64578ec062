"""A flow resumed from a recovery snapshot whose next offset the broker deleted already (the
topic's retention passed while the flow was down, or records deleted by an operator) reads
every message the partition still holds, and logs what was deleted unread.

Bytewax's consumer had no ``auto.offset.reset``, so librdkafka's default (``latest``) applied:
an offset out of range moved the reader to the end of the partition, and every message still
in it was skipped without a word (``dataflows/sources.py``)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import msgspec
import pytest
from bytewax.recovery import init_db_dir
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, select

from dataflows.sources import FlowKafkaSource, SnapshotPastEndError
from storage.tables import scored_payments
from test_data.hostile import valid_payment
from test_data.ports import free_ports
from tests.flowrun import BROKERS, ROOT, flow_env, run_flow

pytestmark = pytest.mark.integration


def send(topic: str, txns: list[str]) -> None:
    producer = Producer({"bootstrap.servers": BROKERS})
    for txn in txns:
        value = msgspec.json.encode(valid_payment(transaction_id=txn, card_id=f"card-{txn}"))
        producer.produce(topic, value, key=txn.encode(), partition=0)
    assert producer.flush(30) == 0


def test_a_resume_past_what_retention_deleted_reads_what_is_left_and_says_what_is_gone(
    one_partition_topics: dict[str, str], mysql_url: str, engine: Engine, models: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    topics = one_partition_topics
    pay = topics["payments_topic"]
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    env = flow_env(topics, mysql_url, models)
    resume = ["-r", str(recovery), "-s", "1", "-b", "10"]
    send(pay, ["tx-0", "tx-1"])
    run_flow(env, 1, 1, resume)  # the snapshot: payments resume at offset 2
    send(pay, [f"tx-{i}" for i in range(2, 10)])
    admin = AdminClient({"bootstrap.servers": BROKERS})
    gone = TopicPartition(pay, 0, 5)  # offsets 2 to 4 deleted before the flow read them
    admin.delete_records([gone])[gone].result(timeout=30)
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1", *resume],
        env=env | {"FLOW_BASE_PORT": str(free_ports(1))},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with engine.connect() as c:
        stored = set(c.execute(select(scored_payments.c.transaction_id)).scalars())
    assert stored == {"tx-0", "tx-1", *(f"tx-{i}" for i in range(5, 10))}
    assert f"{pay}[0]: offsets 2 to 4 were deleted (retention) before the flow read them" in (
        done.stderr
    ), done.stderr[-3000:]


def test_a_snapshot_offset_past_the_partition_s_end_refuses_the_start_naming_both_offsets(
    one_partition_topics: dict[str, str],
) -> None:
    # A topic re-created (or truncated) while the flow was down: its snapshot resumes at 7, the
    # partition ends at 2. With auto.offset.reset=earliest the reader read offsets 0 and 1 again
    # as new, without a word.
    pay = one_partition_topics["payments_topic"]
    send(pay, ["tx-0", "tx-1"])
    source = FlowKafkaSource(
        [BROKERS], [pay], stop=threading.Event(), consumer_config={"auto.offset.reset": "earliest"}
    )
    assert source.list_parts() == [f"0-{pay}"]
    at_end = source.build_part("payments_in", f"0-{pay}", 2)  # resuming at the end is normal
    at_end.close()
    with pytest.raises(SnapshotPastEndError) as refused:
        source.build_part("payments_in", f"0-{pay}", 7)
    said = str(refused.value)
    assert f"Kafka topic '{pay}' partition 0: the recovery snapshot resumes at offset 7, but " in (
        said
    )
    assert "the partition ends at offset 2" in said and "move the recovery folder" in said
    assert len(said) < 1000
