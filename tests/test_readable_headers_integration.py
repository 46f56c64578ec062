"""A record whose header names are not UTF-8, on the real broker, read by the flow's consumer
(``dataflows/readable_headers.py``); through the whole flow in ``tests/test_hostile_integration.py``
(cases ``*header_name_not_utf8*``)."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from dataflows.readable_headers import UNREADABLE, UNREADABLE_WHY, ReadableHeaders
from test_data.raw_headers import RawRecord, produce_raw
from tests.flowrun import BROKERS

pytestmark = pytest.mark.integration


def test_a_header_name_that_is_not_utf8_is_replaced_and_the_next_records_are_read(
    one_partition_topics: dict[str, str],
) -> None:
    """Read one at a time after 50 good records, so that CPython has specialised the call of
    ``headers()`` (which then let the client's broken result through, and the error surfaced
    later, from other code)."""
    topic = one_partition_topics["payments_topic"]
    good = [RawRecord(b"ok-%d" % i, headers=[(b"h", b"v")]) for i in range(50)]
    bad = RawRecord(b"bad", key=b"k", headers=[(b"\xff\xfe", b"x"), (b"fine", None)])
    produce_raw(BROKERS, topic, [*good, bad, RawRecord(b"after")])
    consumer = ReadableHeaders(
        Consumer({"bootstrap.servers": BROKERS, "group.id": "unused", "enable.auto.commit": False})
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    read: list = []
    try:
        for _ in range(600):  # up to 600 polls of at most 1 s: the records are there already
            read += consumer.consume(1, 1.0)
            if len(read) == len(good) + 2:
                break
    finally:
        consumer.close()
    assert [m.value() for m in read] == [r.value for r in good] + [b"bad", b"after"]
    assert all(m.headers() == [("h", b"v")] for m in read[:50])
    assert read[50].headers() == [(UNREADABLE, UNREADABLE_WHY)]
    assert (read[50].key(), read[50].offset()) == (b"k", 50)
    assert read[51].headers() is None
