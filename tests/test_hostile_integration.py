"""Hostile input through the whole flow, on the real broker and server.

Every case of ``test_data.hostile`` that a broker with default limits accepts is produced into
fresh topics (payments and labels); the flow runs to the end of its topics and must leave exactly
one dead-letter row per bad message (with its reason, partition and offset) and exactly one scored
row per distinct valid transaction id; SQL-looking text is stored verbatim and changes nothing
else; the flow does not stop.
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer
from sqlalchemy import Engine, func, select, text

from dataflows.readable_headers import UNREADABLE, UNREADABLE_WHY
from features.bounded import TEXT_CHARS
from storage.tables import dead_letters, fraud_labels, metadata, scored_payments
from test_data.hostile import (
    LABEL_CASES,
    PAYMENT_CASES,
    HostileCase,
    scored_transaction_ids,
    valid_payment,
)
from test_data.raw_headers import RawRecord, produce_raw
from tests.flowrun import BROKERS
from tests.test_dead_letters_integration import topic_keys
from tests.test_flow_integration import flow_env, run_flow

pytestmark = pytest.mark.integration


def produce(topic: str, cases: list[HostileCase]) -> None:
    """Every case in order; those whose header names are bytes through librdkafka's C API (the
    Python client sends only UTF-8 names), after the others."""
    producer = Producer({"bootstrap.servers": BROKERS, "linger.ms": 5})
    failures: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for case in cases:
        if not case.raw_header_names:
            producer.produce(
                topic,
                value=case.raw,
                key=case.key,
                headers=list(case.headers) or None,
                on_delivery=delivered,
            )
    assert producer.flush(30) == 0
    assert not failures, failures
    raw = [
        RawRecord(
            case.raw,
            key=case.key,
            headers=[(n.encode() if isinstance(n, str) else n, v) for n, v in case.headers],
        )
        for case in cases
        if case.raw_header_names
    ]
    produce_raw(BROKERS, topic, raw)


def kept_headers(case: HostileCase) -> list[list[str | None]]:
    """The headers a dead letter of ``case`` keeps: its own, or (a name that is not UTF-8: the
    client cannot read them) the one that says so (``dataflows/readable_headers.py``)."""
    names = [n if isinstance(n, bytes) else n.encode() for n, _ in case.headers]
    try:
        [n.decode() for n in names]
    except UnicodeDecodeError:
        return [[UNREADABLE, base64.b64encode(UNREADABLE_WHY).decode()]]
    return [
        [str(n), base64.b64encode(v).decode() if v is not None else None] for n, v in case.headers
    ]


def test_every_hostile_message_ends_in_one_row_and_the_flow_keeps_going(
    topics: dict[str, str], mysql_url: str, engine: Engine, admin_engine: Engine, models: Path
) -> None:
    payments = [c for c in PAYMENT_CASES if c.fits_kafka_default]
    labels = [c for c in LABEL_CASES if c.fits_kafka_default]
    produce(topics["payments_topic"], payments)
    produce(topics["labels_topic"], labels)

    env = flow_env(topics, mysql_url, models, label_wait_seconds="5", label_retry_seconds="1")
    run_flow(env, processes=1, workers=2)

    with engine.connect() as c:
        letters = c.execute(select(dead_letters)).mappings().all()
        scored = c.execute(select(scored_payments.c.transaction_id)).scalars().all()
        dead_count = c.execute(select(func.count()).select_from(dead_letters)).scalar_one()

    expected_dead = [c for c in payments + labels if c.expected == "dead_letter"]
    reused = [c for c in payments if c.rejected == "reused"]
    assert dead_count == len(expected_dead) + len(reused)
    assert sum("reused" in letter["error"] for letter in letters) == len(reused)
    by_value: dict[bytes | None, list] = {}
    for letter in letters:
        raw = bytes(letter["raw_value"]) if letter["raw_value"] is not None else None
        by_value.setdefault(raw, []).append(letter)
    for case in expected_dead:
        stored = by_value.get(case.raw)
        assert stored, f"case {case.name} left no dead letter"
        assert any(case.says in letter["error"] for letter in stored), (
            f"case {case.name}: expected an error saying {case.says!r}; "
            f"got {[letter['error'] for letter in stored]}"
        )
        # The record's headers are kept whole too, in order (NULL for a record without any).
        kept = [
            msgspec.json.decode(d["message_headers"]) if d["message_headers"] else []
            for d in stored
        ]
        wanted = kept_headers(case)
        assert wanted in kept, f"case {case.name}: headers {wanted!r} not among {kept!r}"
        # The record's key is kept whole, whatever its bytes (or its absence).
        keys = [bytes(d["message_key"]) if d["message_key"] is not None else None for d in stored]
        assert case.key in keys, f"case {case.name}: key {case.key!r} not among {keys}"
    assert all(letter["kafka_offset"] >= 0 and letter["kafka_partition"] >= 0 for letter in letters)
    assert {letter["topic"] for letter in letters} == {
        topics["payments_topic"],
        topics["labels_topic"],
    }

    # Every dead letter is on the topic too, under its key (table rows == topic messages).
    assert set(topic_keys(topics["dead_letters_topic"])) == {
        f"{d['topic']}/{d['kafka_partition']}/{d['kafka_offset']}".encode() for d in letters
    }
    assert all(len(d["error"]) <= TEXT_CHARS and d["error"].isprintable() for d in letters)

    assert sorted(scored) == sorted(scored_transaction_ids(tuple(payments)))
    with admin_engine.connect() as c:  # the flow's account sees only the tables it may use
        tables = {r[0] for r in c.execute(text("SHOW TABLES"))}
    assert tables == set(metadata.tables)  # the schema's tables and no other
    # Every label message ends in exactly one place: its fraud_labels row, or a dead letter.
    with engine.connect() as c:
        statuses = dict(
            c.execute(text("SELECT status, COUNT(*) FROM fraud_labels GROUP BY status")).all()
        )
    label_letters = sum(1 for d in letters if d["topic"] == topics["labels_topic"])
    assert sum(statuses.values()) + label_letters == len(labels), statuses
    assert "waiting" not in statuses
    # Valid labels the join cannot learn are rejected with their reason, each in its own row.
    with engine.connect() as c:
        reasons = c.execute(
            select(fraud_labels.c.reason).where(fraud_labels.c.status == "rejected")
        ).scalars()
        rejected = Counter(reason.split(":")[0] for reason in reasons)
    assert rejected == Counter(case.rejected for case in labels if case.rejected)


MONSTERS = [
    c
    for c in PAYMENT_CASES
    if c.name.startswith(("unknown_field_name", "bad_enum_value", "field_name_not", "huge_key"))
]


def test_monsters_stop_nothing_each_is_one_dead_letter_and_the_next_payments_are_stored(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    """The review's 70,000-character field name (which stopped the flow for good) and other
    monsters on every partition, each followed by ordinary payments on every partition."""
    producer = Producer({"bootstrap.servers": BROKERS, "linger.ms": 5})
    ordinary = []
    for round_ in range(2):
        for partition in range(4):
            for case in MONSTERS:
                producer.produce(
                    topics["payments_topic"], value=case.raw, key=case.key, partition=partition
                )
            txn = f"after-monsters-{round_}-{partition}"
            ordinary.append(txn)
            value = msgspec.json.encode(valid_payment(transaction_id=txn, card_id=f"c-{txn}"))
            producer.produce(topics["payments_topic"], value=value, key=b"c", partition=partition)
    assert producer.flush(60) == 0
    run_flow(flow_env(topics, mysql_url, models), processes=2, workers=2)

    with engine.connect() as c:
        letters = c.execute(select(dead_letters)).mappings().all()
        scored = c.execute(select(scored_payments.c.transaction_id)).scalars().all()
    assert sorted(scored) == sorted(ordinary)  # the flow went on storing after every monster
    assert len(letters) == 2 * 4 * len(MONSTERS)  # each monster once
    by_value = Counter(bytes(d["raw_value"]) for d in letters)
    assert by_value == Counter({c.raw: 8 for c in MONSTERS})  # whole in MySQL
    for letter in letters:
        case = next(c for c in MONSTERS if c.raw == bytes(letter["raw_value"]))
        assert case.says in letter["error"] and len(letter["error"]) <= TEXT_CHARS
        assert bytes(letter["message_key"]) == case.key
    keys = topic_keys(topics["dead_letters_topic"])
    assert set(keys) == {
        f"{d['topic']}/{d['kafka_partition']}/{d['kafka_offset']}".encode() for d in letters
    }
