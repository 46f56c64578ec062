"""A topic read to its end as it stands now: what the checks and benchmarks that read back what
the flow published (the decisions topic) share."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from features.bounded import bounded


def read_to_end(client: Mapping[str, str], topic: str, *, seconds: float) -> Iterator[Message]:
    """Every message of ``topic`` from its start up to each partition's end (its high watermark
    when this is called), in offset order within a partition. ``client`` is the consumer's
    librdkafka configuration (with its ``group.id``; offsets are never committed). Raises
    :class:`TimeoutError` when the ends are not reached within ``seconds``, and
    :class:`RuntimeError` on a message carrying an error."""
    consumer = Consumer({**client, "enable.auto.commit": "false"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + seconds
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"could not read {bounded(topic)} to its end in {seconds:g} s: "
                    f"partitions {sorted(ends)} unfinished"
                )
            for message in consumer.consume(1000, timeout=1.0):
                if message.error():
                    raise RuntimeError(f"reading {bounded(topic)}: {message.error()}")
                if message.offset() + 1 >= ends.get(message.partition(), -1):
                    ends.pop(message.partition(), None)
                yield message
    finally:
        consumer.close()
