"""The dead-letter path on the real server and broker: any bytes in, one queryable letter out.

Hypothesis drives messages of any kind (random bytes; payments with an unknown field whose name
runs to 100,000 characters of any code point, NUL and escapes among them; huge bad enum values;
nesting 100,000 deep; keys of any size; record times of any 64-bit value) through the decoder
and the flow's own dead-letter sink partition (``DeadLetterSink``: ``dead_letters`` on MariaDB,
then the dead-letter topic). The topic takes at most 100,000 bytes a message while the flow
allows 900,000 (``PAYSCORE_DEAD_LETTER_MAX_BYTES``' default): a larger letter is refused by the
broker and must go again smaller. Every letter must end as one row and one message under its
key; nothing may raise.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.outputs import StatelessSinkPartition
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from dataflows.dead_letter_topic import DeadLetterSink, dead_letter_key
from dataflows.messages import DeadLetter, MessageDecoder, letter_row
from features.bounded import TEXT_CHARS
from features.contract import LabelDecoder, PaymentDecoder
from settings.config import Config
from storage.dead_letters import BARE_REASON, store_letters
from storage.tables import dead_letters
from test_data.hostile import valid_payment

pytestmark = pytest.mark.integration

BROKERS = Config.from_env(os.environ).kafka_brokers
TOPIC_MAX_BYTES = 100_000
DECODE = MessageDecoder(PaymentDecoder(), LabelDecoder())
SOURCE = "test-payments"
BATCH = 250  # letters a sink partition writes at once
_offsets = itertools.count()


@pytest.fixture(scope="module")
def letter_topic() -> Iterator[str]:
    """A dead-letter topic of 4 partitions that takes at most 100,000 bytes a message."""
    name = f"test-{uuid.uuid4().hex[:8]}-dead-letters"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    new = NewTopic(name, num_partitions=4, config={"max.message.bytes": str(TOPIC_MAX_BYTES)})
    admin.create_topics([new])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def topic_keys(topic: str) -> list[bytes]:
    """The key of every message on ``topic``, read to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": BROKERS,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    keys, ended, deadline = [], set(), time.monotonic() + 60
    while len(ended) < 4 and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error() is not None:
            if message.error().code() == KafkaError._PARTITION_EOF:
                ended.add(message.partition())
            continue
        keys.append(message.key())
    consumer.close()
    assert len(ended) == 4, "the dead-letter topic was not read to its end"
    return keys


# -- what a hostile producer sends ---------------------------------------------------------------


def sizes(big: int) -> st.SearchStrategy[int]:
    """Mostly small, now and then up to ``big``."""
    return st.integers(0, 2_000) | st.integers(0, big)


odd_characters = st.sampled_from(["A", "\x00", "é", "\U0001f4a5", "\\", '"', "\n", "\u2028", "`"])


@st.composite
def json_escaped(draw: st.DrawFn, max_size: int) -> str:
    """A JSON string body (no quotes) of up to ``max_size`` characters, repeated from a few
    drawn ones; escapes included."""
    size = draw(sizes(max_size))
    unit = draw(st.text(odd_characters, min_size=1, max_size=4))
    text = (unit * (size // len(unit) + 1))[:size]
    return json.dumps(text)[1:-1]


def payment_with(field: str, raw_value: str) -> bytes:
    text = json.dumps(valid_payment())
    return (text[:-1] + f', "{field}": {raw_value}}}').encode()


@st.composite
def monsters(draw: st.DrawFn, big: int) -> bytes | None:
    kind = draw(
        st.sampled_from(
            ["bytes", "unknown_field", "bad_enum", "bad_currency", "nested", "long_id", "none"]
        )
    )
    if kind == "bytes":
        size = draw(sizes(big))
        return draw(st.binary(max_size=64)) * (size // 64 + 1) if size > 64 else draw(st.binary())
    if kind == "unknown_field":  # msgspec quotes the name in its error
        name = draw(json_escaped(big))
        return (json.dumps(valid_payment())[:-1] + f', "{name}": 1}}').encode()
    if kind == "bad_enum":  # msgspec quotes the value
        return payment_with("channel", f'"{draw(json_escaped(big))}"').replace(
            b'"channel": "contactless", ', b""
        )
    if kind == "bad_currency":
        return json.dumps(
            valid_payment(currency=draw(st.sampled_from(["USN", "XXX", "XAU"])))
        ).encode()
    if kind == "nested":
        depth = draw(st.integers(1, 100_000))
        return (
            b"[" * depth + b"]" * depth
            if draw(st.booleans())
            else b'{"a":' * depth + b"1" + b"}" * depth
        )
    if kind == "long_id":
        return json.dumps(valid_payment(card_id="c" * (65 + draw(sizes(big))))).encode()
    return None


@st.composite
def raw_messages(draw: st.DrawFn, big: int) -> KafkaSourceMessage:
    key_size = draw(sizes(big))
    key = draw(st.none() | st.just(draw(st.binary(min_size=1, max_size=8)) * (key_size // 8 + 1)))
    millis = draw(
        st.integers(-(2**63), 2**63 - 1) | st.integers(1_700_000_000_000, 1_800_000_000_000)
    )
    return KafkaSourceMessage(
        key=key,
        value=draw(monsters(big)),
        topic=SOURCE,
        partition=draw(st.integers(0, 3)),
        offset=next(_offsets),
        timestamp=(draw(st.sampled_from([0, 1, 2])), millis),
    )


def dead_letters_of(messages: list[KafkaSourceMessage]) -> list[DeadLetter]:
    """Decode ``messages`` as payments, as the flow does; the dead letters, each checked."""
    letters = []
    for message in messages:
        decoded = DECODE.payment(message)  # never raises
        if isinstance(decoded, DeadLetter):
            assert 0 < len(decoded.error) <= TEXT_CHARS and decoded.error.isprintable()
            decoded.error.encode()  # any text the decoder makes encodes to UTF-8
            letters.append(decoded)
    return letters


def write_and_check(
    engine: Engine, part: StatelessSinkPartition, letters: list[DeadLetter]
) -> None:
    """Through one worker's dead-letter sink partition in batches, as the flow writes them;
    then each letter's row: one, queryable by where its message was read, whole or kept with
    the reason why not."""
    for start in range(0, len(letters), BATCH):
        part.write_batch([letter_row(x) for x in letters[start : start + BATCH]])
    dl = dead_letters
    with engine.connect() as c:
        rows = {
            r.kafka_offset: r
            for r in c.execute(
                select(
                    dl.c.kafka_offset,
                    dl.c.kafka_partition,
                    dl.c.error,
                    func.md5(dl.c.raw_value).label("value_md5"),
                    func.md5(dl.c.message_key).label("key_md5"),
                ).where(dl.c.topic == SOURCE)
            )
        }
    assert len(rows) == len({x.offset for x in letters})
    for letter in letters:
        row = rows[letter.offset]
        assert row.kafka_partition == letter.partition
        assert 0 < len(row.error) <= TEXT_CHARS and row.error.isprintable()
        if row.value_md5 is not None or letter.value is None:
            assert row.value_md5 == _md5(letter.value) and row.key_md5 == _md5(letter.key)
        else:  # left out, and the reason says why
            assert "not stored" in row.error or row.error == BARE_REASON


def _md5(data: bytes | None) -> str | None:
    return hashlib.md5(data).hexdigest() if data is not None else None


def test_any_message_ends_as_one_row_and_one_message_whatever_it_holds(
    mysql_url: str, engine: Engine, letter_topic: str
) -> None:
    letters: list[DeadLetter] = []

    @settings(
        max_examples=2_000, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(messages=st.lists(raw_messages(big=80_000), min_size=1, max_size=3))
    def many(messages: list[KafkaSourceMessage]) -> None:
        letters.extend(dead_letters_of(messages))

    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(message=raw_messages(big=2_000_000))
    def huge(message: KafkaSourceMessage) -> None:
        letters.extend(dead_letters_of([message]))

    started = time.monotonic()
    many()
    huge()
    decoded = time.monotonic()
    sink = DeadLetterSink(
        mysql_url, {"bootstrap.servers": BROKERS}, letter_topic, 900_000, patience=30
    )
    part = sink.build("store_payments_dead_letters", 0, 1)  # one worker's, as in the flow
    try:
        write_and_check(engine, part, letters)
    finally:
        part.close()
    print(
        f"{len(letters):,} dead letters: decoded in {decoded - started:.1f} s, stored, "
        f"published and checked in {time.monotonic() - decoded:.1f} s"
    )
    keys = topic_keys(letter_topic)
    expected = {dead_letter_key(letter_row(x)) for x in letters}
    assert set(keys) == expected and len(keys) == len(expected)  # each once, under its key
    assert len(letters) > 2_000


def test_a_letter_mysql_refuses_whole_is_kept_without_its_bytes_and_then_bare(
    mysql_url: str, engine: Engine, letter_topic: str
) -> None:
    """Rows made without the flow's bounds: a reason too long for the TEXT column, bytes too
    large for an INSERT. The first is kept without bytes (reason bounded), and none raises."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "topic": SOURCE,
            "kafka_partition": 0,
            "kafka_offset": 10**12 + i,
            "message_key": b"k" * size,
            "raw_value": b"\x00\xff" * size,
            "error": error,
            "received_at": None,
            "dead_lettered_at": now,
        }
        for i, (size, error) in enumerate([(10, "x" * 70_000), (9_000_000, "too big"), (5, "ok")])
    ]
    sink = DeadLetterSink(
        mysql_url, {"bootstrap.servers": BROKERS}, letter_topic, 900_000, patience=30
    )
    part = sink.build("s", 0, 1)
    part.write_batch(rows)
    part.close()
    with engine.connect() as c:
        stored = c.execute(
            select(dead_letters)
            .where(dead_letters.c.kafka_offset >= 10**12)
            .order_by("kafka_offset")
        ).all()
    assert [r.kafka_offset - 10**12 for r in stored] == [0, 1, 2]
    assert (
        stored[0].raw_value is None
        and "not stored" in stored[0].error
        and len(stored[0].error) <= TEXT_CHARS
    )
    assert bytes(stored[1].raw_value) == rows[1]["raw_value"]  # LOAD DATA takes 18 MB rows
    assert bytes(stored[2].raw_value) == rows[2]["raw_value"]


def test_a_letter_stored_again_as_the_flow_keeps_the_first_and_changes_nothing(
    engine: Engine,
) -> None:
    """A replay makes the same letter again (the settlement of a reused id, a refused row): the
    flow's account, which may add dead letters but never change one, stores it without error,
    and the first stays as it was, in every form the path tries."""
    now = datetime.now(UTC).replace(tzinfo=None)
    first = {
        "topic": SOURCE,
        "kafka_partition": 3,
        "kafka_offset": 2 * 10**12,
        "message_key": b"card-1",
        "raw_value": b'{"transaction_id": "tx-1"}',
        "error": "the first reason",
        "received_at": None,
        "dead_lettered_at": now,
    }
    refused_whole = {**first, "error": "x" * 70_000}  # MySQL refuses it: tried without bytes
    for letters in ([first], [first], [{**first, "error": "a later reason"}], [refused_whole]):
        with engine.begin() as c:
            assert store_letters(c, letters) != []
    with engine.connect() as c:
        stored = c.execute(
            select(dead_letters).where(dead_letters.c.kafka_offset == 2 * 10**12)
        ).all()
    assert [(r.error, bytes(r.raw_value)) for r in stored] == [
        ("the first reason", first["raw_value"])
    ]
