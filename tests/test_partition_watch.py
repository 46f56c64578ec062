"""The partition watch's logic, with a fake client and clock (``dataflows/partition_watch.py``);
on the real broker and flow in ``tests/test_partition_watch_integration.py``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from dataflows.partition_watch import PartitionsGrewError, PartitionWatch


class Broker:
    def __init__(self, count: int) -> None:
        self.count, self.asked, self.fails = count, 0, False

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        self.asked += 1
        if self.fails:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        found = SimpleNamespace(error=None, partitions=dict.fromkeys(range(self.count)))
        return SimpleNamespace(topics={topic: found})


def test_the_watch_asks_at_most_every_interval_and_stops_the_flow_once_partitions_grew() -> None:
    broker, now = Broker(4), [0.0]
    watch = PartitionWatch(broker.list_topics, "payments", 4, every=30, clock=lambda: now[0])
    watch.check()
    assert broker.asked == 0  # not due yet
    now[0] = 31
    watch.check()
    assert broker.asked == 1
    broker.fails = True  # a broker that does not answer: asked again later, nothing stops
    now[0] = 62
    watch.check()
    broker.fails, broker.count = False, 8
    now[0] = 70
    watch.check()  # not due
    now[0] = 93
    with pytest.raises(PartitionsGrewError, match=r"'payments' has 8 partitions now, 4 when"):
        watch.check()
