"""A transaction id carried by several messages: the first in Kafka order keeps it, whichever
worker's sink commits first and however often batches are replayed; every other message is one
dead letter, in the table and on the topic. On the real server and broker, with the flow's own
payments sink (two workers' partitions) and dead-letter topic publisher."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text

from dataflows.dead_letter_topic import DeadLetterTopic
from settings.config import Config
from storage.payments import kafka_order, settle_reused_ids
from storage.rows import refused_row_letter
from storage.sink import MySQLSink, MySQLSinkPartition, Writing
from storage.tables import dead_letters, scored_payments
from test_data.hostile import valid_payment
from tests.flowrun import ROOT, flow_env, run_flow
from tests.test_dead_letters_integration import topic_keys

pytestmark = pytest.mark.integration

BROKERS = Config.from_env(os.environ).kafka_brokers
SOURCE = "test-payments"
T0 = datetime(2026, 11, 2, 8, 30)
_ids = itertools.count()


@pytest.fixture
def letter_topic() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}-dead-letters"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    admin.create_topics([NewTopic(name, num_partitions=4)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def workers(
    url: str, topic: str, n: int = 2, kinds: list[str] | None = None
) -> list[MySQLSinkPartition]:
    """``n`` workers' partitions of the flow's payments sink (as scoring.scored_payments_sink);
    the kind of each dead letter they make is appended to ``kinds``."""
    sink = MySQLSink(
        url,
        scored_payments,
        Writing(
            refused=refused_row_letter(SOURCE),
            refused_table=dead_letters,
            conflicts=settle_reused_ids,
            conflict_kind="reused_id",
            on_refused=kinds.append if kinds is not None else None,
            patience=30,
            letters_out=lambda: (
                DeadLetterTopic({"bootstrap.servers": BROKERS}, topic, 900_000).publish
            ),
        ),
    )
    return [sink.build("store_scored_payments", i, n) for i in range(n)]


def row(
    txn: str, card: str, partition: int, offset: int, appended: datetime | None
) -> dict[str, Any]:
    return {
        "transaction_id": txn,
        "card_id": card,
        "merchant_id": "m-1",
        "terminal_id": "t-1",
        "amount_minor": 9_900,
        "currency": "EUR",
        "event_time": T0,
        "utc_offset_minutes": 0,
        "fraud_probability": 0.1,
        "decision": "approve",
        "reason_codes": [],
        "model_version": "v00001",
        "features": {"card_count_24h": 1.0},
        "kafka_partition": partition,
        "kafka_offset": offset,
        "scored_at": T0,
        "appended_at": appended,
        "shadow_version": None,
        "shadow_probability": None,
    }


def stored(engine: Engine, txn: str) -> tuple[str, int, int]:
    sp = scored_payments
    with engine.connect() as c:
        r = c.execute(
            select(sp.c.card_id, sp.c.kafka_partition, sp.c.kafka_offset).where(
                sp.c.transaction_id == txn
            )
        ).one()
    return r.card_id, r.kafka_partition, r.kafka_offset


def lettered(engine: Engine) -> dict[tuple[int, int], str]:
    with engine.connect() as c:
        return {
            (r.kafka_partition, r.kafka_offset): r.error
            for r in c.execute(select(dead_letters).where(dead_letters.c.topic == SOURCE))
        }


@pytest.mark.parametrize("first_commit", ["earlier", "later"])
def test_the_earlier_offset_keeps_the_id_whichever_commits_first_and_replays_change_nothing(
    mysql_url: str, engine: Engine, letter_topic: str, first_commit: str
) -> None:
    """The review's case: offsets 377 and 378 of one partition, cards A then B, 99 EUR."""
    a = row("tx-377", "card-A", 3, 377, T0)
    b = row("tx-377", "card-B", 3, 378, T0 + timedelta(milliseconds=1))
    one, two = workers(mysql_url, letter_topic)
    first, second = (a, b) if first_commit == "earlier" else (b, a)
    one.write_batch([first])
    two.write_batch([second])
    assert stored(engine, "tx-377") == ("card-A", 3, 377)
    letters = lettered(engine)
    assert list(letters) == [(3, 378)]
    assert "reused" in letters[(3, 378)]
    before = lettered(engine), stored(engine, "tx-377")
    for replay in ([a, b], [b], [a], [b, a]):  # a crash makes either worker write again
        two.write_batch([dict(r) for r in replay])
        one.write_batch([dict(r) for r in reversed(replay)])
    assert (lettered(engine), stored(engine, "tx-377")) == before
    keys = topic_keys(letter_topic)
    assert set(keys) == {f"{SOURCE}/3/378".encode()}  # on the topic too (at least once)


def test_across_partitions_the_earlier_append_time_wins_then_the_lower_partition(
    mysql_url: str, engine: Engine, letter_topic: str
) -> None:
    (one,) = workers(mysql_url, letter_topic, 1)
    one.write_batch([row("tx-time", "card-B", 0, 5, T0 + timedelta(seconds=1))])
    one.write_batch([row("tx-time", "card-A", 2, 900, T0)])  # later partition, earlier time
    assert stored(engine, "tx-time") == ("card-A", 2, 900)
    one.write_batch([row("tx-tie", "card-B", 2, 1, T0)])
    one.write_batch([row("tx-tie", "card-A", 1, 50, T0)])  # the same time: partition 1 first
    assert stored(engine, "tx-tie") == ("card-A", 1, 50)
    one.write_batch([row("tx-none", "card-B", 0, 1, None)])  # no record time: after any time
    one.write_batch([row("tx-none", "card-A", 3, 1, T0)])
    assert stored(engine, "tx-none") == ("card-A", 3, 1)
    assert set(lettered(engine)) == {(0, 5), (2, 1), (0, 1)}


def test_a_stored_payment_whose_label_was_claimed_keeps_its_id(
    mysql_url: str, engine: Engine, letter_topic: str
) -> None:
    (one,) = workers(mysql_url, letter_topic, 1)
    one.write_batch([row("tx-labelled", "card-B", 0, 11, T0)])
    with engine.begin() as c:  # as storage.labels.claim_labels marks it
        c.execute(
            text(
                "UPDATE scored_payments SET label_is_fraud = 1 WHERE transaction_id = 'tx-labelled'"
            )
        )
    one.write_batch([row("tx-labelled", "card-A", 0, 10, T0)])
    assert stored(engine, "tx-labelled") == ("card-B", 0, 11)
    assert "a label was claimed for the stored one" in lettered(engine)[(0, 10)]


def test_two_workers_writing_at_once_leave_every_id_with_its_earlier_message(
    mysql_url: str, engine: Engine, letter_topic: str
) -> None:
    one, two = workers(mysql_url, letter_topic)
    pairs = [
        (
            row(f"tx-race-{i}", "card-A", 1, 2 * i, T0),
            row(f"tx-race-{i}", "card-B", 1, 2 * i + 1, T0),
        )
        for i in range(200)
    ]
    earlier = [a for a, _ in pairs]
    later = [b for _, b in pairs]
    threads = [
        threading.Thread(
            target=lambda: [one.write_batch(earlier[i : i + 20]) for i in range(0, 200, 20)]
        ),
        threading.Thread(
            target=lambda: [two.write_batch(later[i : i + 20]) for i in range(0, 200, 20)]
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sp = scored_payments
    with engine.connect() as c:
        cards = dict(c.execute(select(sp.c.transaction_id, sp.c.card_id)).all())
    assert set(cards.values()) == {"card-A"} and len(cards) == 200
    assert set(lettered(engine)) == {(1, 2 * i + 1) for i in range(200)}
    assert {k.decode() for k in topic_keys(letter_topic)} == {
        f"{SOURCE}/1/{2 * i + 1}" for i in range(200)
    }


@st.composite
def messages_of_one_id(draw: st.DrawFn) -> list[dict[str, Any]]:
    """2 to 5 messages with one transaction id and other content each, on up to 3 partitions;
    within a partition offsets and append times grow (the broker's append time)."""
    n = next(_ids)
    txn = f"tx-prop-{n}"
    out = []
    offsets = {p: n * 1_000 + draw(st.integers(0, 100)) for p in range(3)}  # no two examples meet
    times = {p: T0 for p in range(3)}
    for card in range(draw(st.integers(2, 5))):
        p = draw(st.integers(0, 2))
        offsets[p] += draw(st.integers(1, 3))
        times[p] += timedelta(milliseconds=draw(st.integers(0, 2)))
        out.append(row(txn, f"card-{card}", p, offsets[p], times[p]))
    return out


def test_any_arrival_order_and_replays_settle_on_the_first_message_in_kafka_order(
    mysql_url: str, engine: Engine, letter_topic: str
) -> None:
    one, two = workers(mysql_url, letter_topic)
    expected_letters: set[tuple[int, int]] = set()
    written: list[str] = []

    @settings(
        max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(data=st.data(), messages=messages_of_one_id())
    def settle(data: st.DataObject, messages: list[dict[str, Any]]) -> None:
        replays = data.draw(st.lists(st.sampled_from(messages), max_size=4))
        arrivals = data.draw(st.permutations(messages + replays))
        # Every draw before any write: an example hypothesis abandons mid-draw writes nothing.
        by = [data.draw(st.sampled_from([one, two])) for _ in arrivals]
        for message, worker in zip(arrivals, by, strict=True):
            worker.write_batch([dict(message)])
        first = min(messages, key=kafka_order)
        txn = first["transaction_id"]
        assert stored(engine, txn) == (
            first["card_id"],
            first["kafka_partition"],
            first["kafka_offset"],
        )
        expected_letters.update(
            (m["kafka_partition"], m["kafka_offset"]) for m in messages if m is not first
        )
        written.append(txn)

    settle()
    assert set(lettered(engine)) == expected_letters
    with engine.connect() as c:
        stored_ids = c.execute(select(scored_payments.c.transaction_id)).scalars().all()
    assert sorted(stored_ids) == sorted(set(written))
    letters = lettered(engine)
    assert {k.decode() for k in topic_keys(letter_topic)} == {
        f"{SOURCE}/{p}/{o}" for p, o in letters
    }


# -- the whole flow: several processes, commits in either order, replays ---------------------


def produce_at(topic: str, messages: list[tuple[int, int | None, bytes, bytes]]) -> None:
    """(partition, create time in ms or None, key, value), each delivered before the next."""
    producer = Producer({"bootstrap.servers": BROKERS, "linger.ms": 0})
    failures: list[str] = []
    for partition, millis, key, value in messages:
        producer.produce(
            topic,
            value=value,
            key=key,
            partition=partition,
            on_delivery=lambda err, _: failures.append(str(err)) if err else None,
            **({"timestamp": millis} if millis is not None else {}),
        )
        producer.flush(30)
    assert not failures, failures


def timestamp_type(topic: str) -> str:
    admin = AdminClient({"bootstrap.servers": BROKERS})
    resource = ConfigResource("topic", topic)
    return admin.describe_configs([resource])[resource].result()["message.timestamp.type"].value


def timestamp_type_is(topic: str, kind: str, timeout: float = 30.0) -> None:
    """Until the broker describes ``topic``'s timestamp type as ``kind``: the controller
    answers an alteration once it has committed it, and the broker applies it a moment later
    (read at once, the broker can still give the old type, and take messages by it)."""
    deadline = time.monotonic() + timeout
    while (found := timestamp_type(topic)) != kind:
        assert time.monotonic() < deadline, f"{topic}: message.timestamp.type {found}, not {kind}"
        time.sleep(0.2)


def set_timestamp_type(topic: str, kind: str) -> None:
    admin = AdminClient({"bootstrap.servers": BROKERS})
    entry = ConfigEntry("message.timestamp.type", kind, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    timestamp_type_is(topic, kind)


def payment(txn: str, card: str, amount: int = 9_900) -> bytes:
    return json.dumps(valid_payment(transaction_id=txn, card_id=card, amount_minor=amount)).encode()


def test_on_the_flow_the_first_message_keeps_the_id_and_every_dead_letter_is_also_on_the_topic(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    """Run 1: 40 pairs, card A then card B in one partition (the review's offsets 377 and
    378), racing through two processes of two workers; and the later message of two forced
    pairs alone. Run 2: the earlier messages of the forced pairs (on another partition, with an
    earlier record time): X's earlier message arrives after its later one is stored and must
    replace it; Y's later message arrives after its earlier one is stored. Run 3 replays all."""
    now = int(time.time() * 1000)
    pay = topics["payments_topic"]
    set_timestamp_type(pay, "CreateTime")  # to force the order across runs: producers' times
    run_1 = []
    for i in range(40):
        p = i % 4
        run_1 += [
            (p, None, b"card-A", payment(f"tx-pair-{i}", f"card-A-{i}")),
            (p, None, b"card-B", payment(f"tx-pair-{i}", f"card-B-{i}", 99)),
        ]
    run_1 += [
        (0, now + 60_000, b"x", payment("tx-X", "card-X-later")),  # later in Kafka order
        (1, now, b"y", payment("tx-Y", "card-Y-earlier")),
        (2, None, b"bad", b'{"transaction_id": "tx-bad"}'),  # and a decode dead letter
    ]
    produce_at(pay, run_1)
    env = flow_env(
        topics,
        mysql_url,
        models,
        label_wait_seconds="5",
        label_retry_seconds="1",
        trust_producer_timestamps="true",  # the flow refuses a CreateTime topic otherwise
    )
    run_flow(env, processes=2, workers=2)
    assert stored(engine, "tx-X")[0] == "card-X-later"  # stored first: its rival is not read yet
    produce_at(
        pay,
        [
            (1, now, b"x", payment("tx-X", "card-X-earlier")),
            (0, now + 60_000, b"y", payment("tx-Y", "card-Y-later")),
        ],
    )
    run_flow(env, processes=2, workers=2)

    sp = scored_payments
    with engine.connect() as c:
        cards = dict(c.execute(select(sp.c.transaction_id, sp.c.card_id)).all())
        letters = c.execute(select(dead_letters)).all()
    assert {t: c for t, c in cards.items() if t.startswith("tx-pair-")} == {
        f"tx-pair-{i}": f"card-A-{i}" for i in range(40)
    }
    assert cards["tx-X"] == "card-X-earlier" and cards["tx-Y"] == "card-Y-earlier"
    reused = [d for d in letters if "reused" in d.error]
    assert len(reused) == 42  # 40 card-B, X's later (replaced) and Y's later
    assert len(letters) == 43  # and the decode dead letter
    keys = topic_keys(topics["dead_letters_topic"])
    table_keys = {f"{pay}/{d.kafka_partition}/{d.kafka_offset}".encode() for d in letters}
    assert set(keys) == table_keys  # table rows == topic messages (distinct keys), every kind

    before = (cards, sorted((d.topic, d.kafka_partition, d.kafka_offset, d.error) for d in letters))
    run_flow(env, processes=2, workers=2)  # a replay of everything changes nothing
    with engine.connect() as c:
        cards_again = dict(c.execute(select(sp.c.transaction_id, sp.c.card_id)).all())
        letters_again = c.execute(select(dead_letters)).all()
    again = sorted((d.topic, d.kafka_partition, d.kafka_offset, d.error) for d in letters_again)
    assert (cards_again, again) == before
    assert set(topic_keys(topics["dead_letters_topic"])) == table_keys


def test_a_row_mysql_refuses_is_a_dead_letter_in_the_table_and_on_the_topic(
    mysql_url: str, engine: Engine, letter_topic: str
) -> None:
    """The last kind of dead letter the payments sink makes: MySQL refuses the row's data."""
    kinds: list[str] = []
    (one,) = workers(mysql_url, letter_topic, 1, kinds)
    bad = row("tx-refused", "card-A", 2, 7, T0) | {"currency": "EURO"}  # too long: strict mode
    one.write_batch([row("tx-fine", "card-A", 2, 6, T0), bad, row("tx-fine-2", "card-A", 2, 8, T0)])
    letters = lettered(engine)
    assert (
        list(letters) == [(2, 7)] and "MySQL refused the row for scored_payments" in letters[(2, 7)]
    )
    assert set(topic_keys(letter_topic)) == {f"{SOURCE}/2/7".encode()}
    assert kinds == ["refused_by_mysql"]  # the metric's reason: where the letter was made
    one.write_batch([row("tx-fine", "card-B", 2, 9, T0)])  # the id again: a conflict
    assert kinds == ["refused_by_mysql", "reused_id"]


def test_create_topics_makes_an_existing_create_time_payments_topic_append_time_and_says_so(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    """Review of issue 20, finding 5: a back-dated forgery for another card, produced after the
    genuine payment into another partition, took the transaction id on a CreateTime topic, which
    ops/create_topics.py left as it was. It now alters the topic, and the broker's times decide."""
    pay = topics["payments_topic"]
    set_timestamp_type(pay, "CreateTime")
    env = flow_env(topics, mysql_url, models, label_wait_seconds="5", label_retry_seconds="1")
    done = subprocess.run(
        [sys.executable, str(ROOT / "ops" / "create_topics.py")],
        env=env, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{pay}: message.timestamp.type altered from CreateTime to LogAppendTime" in done.stderr
    timestamp_type_is(pay, "LogAppendTime")
    again = subprocess.run(
        [sys.executable, str(ROOT / "ops" / "create_topics.py")],
        env=env, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert again.returncode == 0 and "altered" not in again.stderr, again.stderr

    now = int(time.time() * 1000)
    produce_at(pay, [(0, None, b"card-A", payment("tx-genuine", "card-A"))])
    time.sleep(1.0)
    produce_at(pay, [(1, now - 86_400_000, b"card-B", payment("tx-genuine", "card-B", 99))])
    run_flow(env, processes=1, workers=2)
    with engine.connect() as c:
        card = c.execute(
            select(scored_payments.c.card_id).where(
                scored_payments.c.transaction_id == "tx-genuine"
            )
        ).scalar_one()
        lettered = c.execute(select(dead_letters.c.kafka_partition)).scalars().all()
    assert (card, lettered) == ("card-A", [1])


def test_the_flow_refuses_a_create_time_payments_topic_naming_the_setting(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    pay = topics["payments_topic"]
    set_timestamp_type(pay, "CreateTime")
    produce_at(pay, [(0, None, b"card-A", payment("tx-1", "card-A"))])
    env = flow_env(topics, mysql_url, models)
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "PaymentsTopicError" in done.stderr, done.stderr[-3000:]
    assert f"payments topic '{pay}' has message.timestamp.type=CreateTime" in done.stderr
    assert "PAYSCORE_TRUST_PRODUCER_TIMESTAMPS=true" in done.stderr
    with engine.connect() as c:
        assert c.execute(select(scored_payments.c.transaction_id)).all() == []


PLACE = {"mcc": "5411", "channel": "pos", "country": "FR", "device_id": "d-1",
         "latitude": 48.857, "longitude": 2.352}  # fmt: skip


def test_a_stored_id_sent_again_with_any_field_changed_is_a_dead_letter_not_a_repeat(
    mysql_url: str, engine: Engine, letter_topic: str
) -> None:
    """The sink took a message of a stored id and card for a harmless repeat when card,
    merchant, terminal, amount, currency and event time agreed: another country, channel,
    device, place, MCC or UTC offset vanished without a trace."""
    (one,) = workers(mysql_url, letter_topic, 1)
    base = row("tx-content", "card-A", 1, 10, T0) | PLACE
    one.write_batch([base])
    changes = [
        {"country": "NG"},
        {"channel": "ecom"},
        {"device_id": "d-2"},
        {"latitude": -33.9, "longitude": 18.4},
        {"mcc": "7995"},
        {"utc_offset_minutes": 60},
    ]
    for offset, change in enumerate(changes, start=11):
        one.write_batch([base | change | {"kafka_offset": offset}])
    one.write_batch([base | {"kafka_offset": 20}])  # the same payment again: a repeat
    assert stored(engine, "tx-content") == ("card-A", 1, 10)
    assert sorted(lettered(engine)) == [(1, offset) for offset in range(11, 11 + len(changes))]
    assert all("reused" in reason for reason in lettered(engine).values())


def test_on_the_flow_a_reused_id_past_the_card_s_last_64_with_another_country_is_a_dead_letter(
    one_partition_topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    """Past the card step's memory (its last 64 ids), only the sink sees the reuse."""
    topics = one_partition_topics
    card = "card-far"
    messages = [payment("tx-far", card)]
    messages += [payment(f"tx-between-{i}", card) for i in range(64)]
    again = json.loads(payment("tx-far", card)) | {"country": "NG"}
    messages.append(json.dumps(again).encode())
    produce_at(topics["payments_topic"], [(0, None, card.encode(), m) for m in messages])
    run_flow(flow_env(topics, mysql_url, models), processes=1, workers=1)
    sp = scored_payments
    with engine.connect() as c:
        countries = dict(c.execute(select(sp.c.transaction_id, sp.c.country)).all())
        letters = c.execute(select(dead_letters.c.kafka_offset, dead_letters.c.error)).all()
    assert len(countries) == 65 and countries["tx-far"] == "FR"
    assert [offset for offset, _ in letters] == [65] and "reused" in letters[0].error
