"""The flow's own steps, without Kafka or MySQL: configuration, decoding, keyed histories."""

from __future__ import annotations

import copy
import hashlib
import math
import os
import pickle
import subprocess
import sys
import zlib
from array import array
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from confluent_kafka import KafkaException
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from dataflows.dead_letter_topic import DeadLetterTopic, to_kafka
from dataflows.decisions_topic import DecisionsTopic
from dataflows.keyed_history import (
    content_mark,
    id_hash,
    keyed_history,
    mark_key,
    pack_recent,
    unpack_recent,
)
from dataflows.messages import (
    DeadLetter,
    MessageDecoder,
    Positioned,
    headers_json,
    letter_row,
    rejected_letter,
)
from features.card import CardHistory
from features.catalog import FEATURE_NAMES
from features.contract import LabelDecoder, Payment, PaymentDecoder
from settings.config import TOPICS, Config
from storage.labels import LabelledPayment
from storage.rows import refused_row_letter
from test_data.hostile import PAYMENT_CASES, valid_payment

DECODE = MessageDecoder(PaymentDecoder(), LabelDecoder())
MARK_KEY = mark_key(b"a model signing key for the tests")


def message(
    value: bytes | None, offset: int = 7, ms: int = 1_777_000_000_000
) -> KafkaSourceMessage:
    return KafkaSourceMessage(
        key=b"c-1", value=value, topic="payments", partition=2, offset=offset, timestamp=(1, ms)
    )


def test_config_defaults_match_the_local_services() -> None:
    config = Config.from_env({})
    assert config.brokers == ["127.0.0.1:9092"]
    assert config.mysql_url.endswith("@127.0.0.1:3306/payscore")
    assert config.tail is True


def test_the_mysql_password_comes_from_a_file_and_never_twice(tmp_path: Path) -> None:
    secret = tmp_path / "mysql.password"
    secret.write_text("s3cr3t-üñ\n")
    base = "mysql+pymysql://payscore@db.internal:3306/payscore?ssl_ca=/etc/ca.pem"
    config = Config.from_env(
        {"PAYSCORE_MYSQL_URL": base, "PAYSCORE_MYSQL_PASSWORD_FILE": str(secret)}
    )
    assert "s3cr3t" not in config.mysql_url and "s3cr3t" not in repr(config)
    url = make_url(config.mysql_dsn)
    assert (url.password, url.host, url.query["ssl_ca"]) == (
        "s3cr3t-üñ",
        "db.internal",
        "/etc/ca.pem",
    )
    twice = Config.from_env(
        {"PAYSCORE_MYSQL_PASSWORD_FILE": str(secret)}  # the default URL carries a password
    )
    with pytest.raises(ValueError, match="keep it in one place"):
        _ = twice.mysql_dsn
    missing = Config.from_env(
        {"PAYSCORE_MYSQL_URL": base, "PAYSCORE_MYSQL_PASSWORD_FILE": str(tmp_path / "nope")}
    )
    with pytest.raises(ValueError, match=r"PAYSCORE_MYSQL_PASSWORD_FILE=.* cannot be read"):
        _ = missing.mysql_dsn


def test_a_secret_file_that_is_not_text_names_the_variable(tmp_path: Path) -> None:
    secret = tmp_path / "mysql.password"
    secret.write_bytes(b"pass\xffword\n")  # Latin-1, or a key file given by mistake
    config = Config.from_env(
        {
            "PAYSCORE_MYSQL_URL": "mysql+pymysql://payscore@db:3306/payscore",
            "PAYSCORE_MYSQL_PASSWORD_FILE": str(secret),
            "PAYSCORE_KAFKA_CONFIG_FILE": str(secret),
        }
    )
    with pytest.raises(ValueError, match=r"PAYSCORE_MYSQL_PASSWORD_FILE=.* is not UTF-8 text: "
                       r"byte 0xff at offset 4"):  # fmt: skip
        _ = config.mysql_dsn
    with pytest.raises(ValueError, match=r"PAYSCORE_KAFKA_CONFIG_FILE=.* is not UTF-8 text"):
        _ = config.kafka_settings


def test_the_largest_dead_letter_bound_builds_a_producer() -> None:
    """The bound's maximum is one librdkafka takes (a larger one failed at the sink's build
    with librdkafka's words, not the variable's)."""
    config = Config.from_env({"PAYSCORE_DEAD_LETTER_MAX_BYTES": "999900000"})
    DeadLetterTopic({"bootstrap.servers": "127.0.0.1:1"}, "t", config.dead_letter_max_bytes)
    with pytest.raises(KafkaException, match=r"message\.max\.bytes"):
        DeadLetterTopic({"bootstrap.servers": "127.0.0.1:1"}, "t", 999_900_001)


def test_the_largest_bounds_build_what_they_configure() -> None:
    """Each bound's maximum is one its consumer takes (a larger one failed as the flow was
    built: librdkafka refused message.timeout.ms, timedelta overflowed)."""
    config = Config.from_env(
        {
            "PAYSCORE_MYSQL_OUTAGE_SECONDS": "2147483",
            "PAYSCORE_LABEL_DELAY_DAYS": "36500",
            "PAYSCORE_MAX_FUTURE_SKEW_SECONDS": str(10**9),
        }
    )
    DecisionsTopic({"bootstrap.servers": "127.0.0.1:1"}, "t", patience=config.mysql_outage_seconds)
    with pytest.raises(KafkaException, match=r"message\.timeout\.ms"):
        DecisionsTopic({"bootstrap.servers": "127.0.0.1:1"}, "t", patience=2_147_484)
    assert timedelta(days=config.label_delay_days) and timedelta(seconds=10**9)
    with pytest.raises(OverflowError):
        timedelta(days=1e9)


def test_the_default_topics_and_any_legal_names_are_accepted() -> None:
    config = Config.from_env(
        {"PAYSCORE_PAYMENTS_TOPIC": "p.a_y-1", "PAYSCORE_LABELS_TOPIC": "L" * 249}
    )
    assert (config.payments_topic, config.labels_topic) == ("p.a_y-1", "L" * 249)
    assert len({getattr(Config(), f) for f in TOPICS}) == len(TOPICS)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("REVIEW_MYSQL", "review_mysql_dsn"),
        ("MODELS_MYSQL", "models_mysql_dsn"),
        ("ANALYST_MYSQL", "analyst_mysql_dsn"),
        ("MYSQL_ADMIN", "mysql_admin_dsn"),
    ],
)
def test_every_account_s_password_may_come_from_a_file(
    tmp_path: Path, name: str, field: str
) -> None:
    secret = tmp_path / "password"
    secret.write_text("an0ther\n")
    base = "mysql+pymysql://someone@db:3306/payscore"
    config = Config.from_env(
        {f"PAYSCORE_{name}_URL": base, f"PAYSCORE_{name}_PASSWORD_FILE": str(secret)}
    )
    assert make_url(getattr(config, field)).password == "an0ther"
    twice = Config.from_env({f"PAYSCORE_{name}_PASSWORD_FILE": str(secret)})
    with pytest.raises(ValueError, match=f"PAYSCORE_{name}_PASSWORD_FILE is set and "
                       f"PAYSCORE_{name}_URL carries a password too"):  # fmt: skip
        _ = getattr(twice, field)


def test_each_job_has_its_own_account_and_a_database_moves_them_all() -> None:
    config = Config.from_env({})
    users = {
        make_url(u).username
        for u in (
            config.mysql_url, config.review_mysql_url, config.models_mysql_url,
            config.analyst_mysql_url, config.mysql_admin_url,
        )
    }  # fmt: skip
    assert users == {
        "payscore_flow", "payscore_review", "payscore_models", "payscore_analyst", "payscore_admin"
    }  # fmt: skip
    moved = config.on_database("payscore_test_x")
    for dsn in (
        moved.mysql_dsn, moved.review_mysql_dsn, moved.models_mysql_dsn, moved.analyst_mysql_dsn,
        moved.mysql_admin_dsn,
    ):  # fmt: skip
        assert make_url(dsn).database == "payscore_test_x"
        assert make_url(dsn).password  # the default URLs' passwords are kept


def test_kafka_settings_from_a_file_reach_every_client(tmp_path: Path) -> None:
    settings = tmp_path / "kafka.properties"
    settings.write_text(
        "# SASL\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism = SCRAM-SHA-256\n"
    )
    config = Config.from_env({"PAYSCORE_KAFKA_CONFIG_FILE": str(settings)})
    assert config.kafka_client(**{"group.id": "g"}) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "group.id": "g",
    }
    settings.write_text("security.protocol\n")
    with pytest.raises(ValueError, match="line 1: expected 'name=value'"):
        _ = config.kafka_settings


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PAYSCORE_TOPIC_PARTITIONS": "four"}, "PAYSCORE_TOPIC_PARTITIONS='four': Expected `int`"),
        ({"PAYSCORE_TOPIC_PARTITIONS": "0"}, "Expected `int` >= 1"),
        ({"PAYSCORE_TOPIC_PARTITON": "4"}, "unknown variable PAYSCORE_TOPIC_PARTITON"),
        ({"PAYSCORE_DECLINE_THRESHOLD": "1.5"}, "Expected `float` <= 1.0"),
        ({"PAYSCORE_TAIL": "maybe"}, "PAYSCORE_TAIL='maybe': Expected `bool`"),
        # librdkafka refuses a producer's message.max.bytes past 10**9 (the sink's, at build).
        (
            {"PAYSCORE_DEAD_LETTER_MAX_BYTES": "2000000000"},
            "PAYSCORE_DEAD_LETTER_MAX_BYTES='2000000000': Expected `int` <= 999900000",
        ),
        # Values that failed only as the flow was built, in librdkafka's or timedelta's words.
        (
            {"PAYSCORE_MYSQL_OUTAGE_SECONDS": "3000000"},
            "PAYSCORE_MYSQL_OUTAGE_SECONDS='3000000': Expected `float` <= 2147483",
        ),
        (
            {"PAYSCORE_LABEL_DELAY_DAYS": "1e9"},
            "PAYSCORE_LABEL_DELAY_DAYS='1e9': Expected `float` <= 36500",
        ),
        (
            {"PAYSCORE_MAX_FUTURE_SKEW_SECONDS": "100000000000000"},
            "PAYSCORE_MAX_FUTURE_SKEW_SECONDS='100000000000000': Expected `int` <= 1000000000",
        ),
        # One topic for two roles: the flow would read its own dead letters as payments.
        (
            {"PAYSCORE_DEAD_LETTERS_TOPIC": "payments"},
            "PAYSCORE_DEAD_LETTERS_TOPIC and PAYSCORE_PAYMENTS_TOPIC both name the topic "
            "'payments'",
        ),
        (
            {"PAYSCORE_LABELS_TOPIC": "t", "PAYSCORE_DECISIONS_TOPIC": "t"},
            "PAYSCORE_DECISIONS_TOPIC and PAYSCORE_LABELS_TOPIC both name the topic 't'",
        ),
        # Names the broker refuses (or that MySQL's 249-character topic column cannot hold).
        ({"PAYSCORE_PAYMENTS_TOPIC": ""}, "PAYSCORE_PAYMENTS_TOPIC='': Expected `str` matching"),
        ({"PAYSCORE_LABELS_TOPIC": "fraud labels"}, "PAYSCORE_LABELS_TOPIC='fraud labels'"),
        ({"PAYSCORE_DECISIONS_TOPIC": ".."}, "PAYSCORE_DECISIONS_TOPIC='..': Expected `str`"),
        ({"PAYSCORE_DEAD_LETTERS_TOPIC": "d" * 250}, "PAYSCORE_DEAD_LETTERS_TOPIC='ddd"),
    ],
)
def test_bad_configuration_names_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match="invalid configuration") as caught:
        Config.from_env(env)
    assert says in str(caught.value)


def test_a_valid_payment_keeps_its_position() -> None:
    out = DECODE.payment(message(msgspec.json.encode(valid_payment())))
    assert isinstance(out, Positioned)
    assert (out.partition, out.offset) == (2, 7)
    assert out.event.transaction_id == "hostile-tx-valid"
    assert out.features == {}


def test_a_bad_message_becomes_a_dead_letter_with_reason_and_position() -> None:
    out = DECODE.payment(message(msgspec.json.encode(valid_payment(amount_minor=-1))))
    assert isinstance(out, DeadLetter)
    assert (out.topic, out.partition, out.offset) == ("payments", 2, 7)
    assert out.error == "Expected `int` >= 0 - at `$.amount_minor`"
    assert out.received_at == datetime.fromtimestamp(1_777_000_000, UTC)
    key, value, headers = to_kafka(row_of(out), max_bytes=900_000)
    assert value == out.value
    assert key == b"payments/2/7"  # the same for every replay of the message
    assert dict(headers)["source_offset"] == b"7"
    assert "truncated" not in dict(headers)


def test_a_dead_letter_keeps_the_record_s_headers_whole() -> None:
    """Headers are part of the message (a producer's trace id, its schema id): a dead letter
    keeps them, any bytes, repeated names and null values in order (they were dropped)."""
    headers = [("trace", b"\x00\xff" * 50_000), ("empty", None), ("trace", b"again")]
    raw = KafkaSourceMessage(
        key=None, value=b"{", topic="payments", partition=0, offset=1, headers=headers
    )
    letter = DECODE.payment(raw)  # type: ignore[arg-type]
    assert isinstance(letter, DeadLetter) and letter.headers is not None
    stored = letter_row(letter)["message_headers"]
    assert msgspec.json.decode(stored, type=list[tuple[str, bytes | None]]) == headers
    assert DECODE.payment(message(b"{")).headers is None  # no headers: NULL


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(
        st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=200)), max_size=6
    )
)
def test_headers_of_any_bytes_round_trip_through_their_json(
    headers: list[tuple[str, bytes | None]],
) -> None:
    stored = headers_json(headers)
    if not headers:
        assert stored is None
    else:
        assert stored is not None
        assert msgspec.json.decode(stored, type=list[tuple[str, bytes | None]]) == headers


def test_a_payment_refused_after_decoding_keeps_its_record_time() -> None:
    """A reused id (card step) or a row MySQL refused (sink): the dead letter says when the
    record reached Kafka, as a letter of decoding does (it said none before)."""
    decoded = DECODE.payment(message(msgspec.json.encode(valid_payment())))
    assert isinstance(decoded, Positioned)
    decoded.rejected = "transaction id reused by card hostile-c-1 for another payment"
    letter = rejected_letter(decoded, "payments")
    assert letter.received_at == datetime.fromtimestamp(1_777_000_000, UTC)
    assert (letter.partition, letter.offset, letter.key) == (2, 7, b"hostile-c-1")
    row = {"kafka_partition": 2, "kafka_offset": 7, "card_id": "c", "transaction_id": "t",
           "appended_at": datetime(2026, 4, 24, 3, 6, 40, 5)}  # fmt: skip
    stored = refused_row_letter("payments")(row, "MySQL refused the row")
    assert stored["received_at"] == datetime(2026, 4, 24, 3, 6, 40, 5)  # naive UTC, as stored
    assert refused_row_letter("payments")({**row, "appended_at": None}, "x")["received_at"] is None


@given(
    size=st.integers(min_value=0, max_value=300_000),
    key_size=st.integers(min_value=0, max_value=300_000),
    max_bytes=st.integers(min_value=1024, max_value=200_000),
)
@settings(max_examples=60, deadline=None)
def test_a_dead_letter_of_any_size_fits_the_topic_and_says_what_was_cut(
    size: int, key_size: int, max_bytes: int
) -> None:
    letter = DeadLetter(
        topic="payments",
        partition=1,
        offset=99,
        key=b"k" * key_size,
        value=b"x" * size,
        error="too big " * 2000,
        received_at=None,
        dead_lettered_at=datetime.now(UTC),
    )
    key, value, listed = to_kafka(row_of(letter), max_bytes)
    headers = dict(listed)
    total = len(key) + len(value or b"")
    total += sum(len(name) + len(v) for name, v in listed)
    assert total <= max_bytes
    assert letter.value is not None and value is not None
    assert letter.value.startswith(value)
    assert ("truncated" in headers) == (len(value) < size)
    if "truncated" in headers:
        assert int(headers["truncated"]) == size


def row_of(letter: DeadLetter) -> dict[str, object]:
    return letter_row(letter)


def test_an_event_far_ahead_of_its_record_time_is_dead() -> None:
    raw = msgspec.json.encode(valid_payment())
    out = DECODE.payment(message(raw, ms=1_700_000_000_000))  # record from Nov 2023
    assert isinstance(out, DeadLetter)
    assert "after the record reached Kafka" in out.error


def payment(txn: str) -> Positioned[Payment]:
    p = msgspec.convert(valid_payment(transaction_id=txn), Payment)
    return Positioned(p, 0, 0)


def test_card_step_skips_a_redelivered_transaction_and_resumes_from_its_snapshot() -> None:
    build = keyed_history(CardHistory, idle_seconds=60, remember=4, mark_key=MARK_KEY)
    step = build(None)
    out, _ = step.on_batch([payment("a"), payment("b"), payment("a")])
    assert [p.event.transaction_id for p in out] == ["a", "b"]
    resumed = build(copy.deepcopy(step.snapshot()))
    out, _ = resumed.on_batch([payment("b"), payment("c")])
    assert [p.event.transaction_id for p in out] == ["c"]
    assert out[0].features["card_count_24h"] == 2.0
    original, _ = step.on_batch([payment("c")])
    assert original[0].features == out[0].features
    assert isinstance(pickle.loads(step.snapshot()), tuple)


def test_idle_keys_are_discarded() -> None:
    before = datetime.now(UTC).timestamp()
    step = keyed_history(CardHistory, idle_seconds=60)(None)
    after = datetime.now(UTC).timestamp()
    assert before + 60 - 1e-3 <= step.notify_at().timestamp() <= after + 60 + 1e-3
    assert step.on_notify() == ([], step.DISCARD)


def test_card_step_makes_a_reused_id_with_other_content_a_rejection_and_folds_it_not() -> None:
    step = keyed_history(CardHistory, idle_seconds=60, remember=4, mark_key=MARK_KEY)(None)
    first = payment("a")
    changed = Positioned(msgspec.structs.replace(first.event, amount_minor=99_999), 0, 1)
    out, _ = step.on_batch([first, payment("a"), changed, payment("b")])
    assert [(p.event.transaction_id, p.rejected != "") for p in out] == [
        ("a", False),
        ("a", True),
        ("b", False),
    ]
    assert "reused" in out[1].rejected
    assert out[2].features["card_count_24h"] == 1.0  # the rejected copy was not folded in
    resumed = keyed_history(CardHistory, idle_seconds=60, remember=4, mark_key=MARK_KEY)(
        step.snapshot()
    )
    again, _ = resumed.on_batch([changed])
    assert again[0].rejected


feature_values = st.floats(allow_nan=False) | st.sampled_from([0.0, -0.0, 1e300, 5e-324])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, len(FEATURE_NAMES)),
    values=st.lists(feature_values, min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
    shuffled=st.booleans(),
    rejected=st.sampled_from(["", "transaction id 'x' reused"]),
    appended_at=st.none() | st.floats(0, 4e9),
    offset_minutes=st.integers(-720, 840),
)
def test_positioned_pickles_compactly_and_exactly(
    n: int,
    values: list[float],
    shuffled: bool,
    rejected: str,
    appended_at: float | None,
    offset_minutes: int,
) -> None:
    """Payments cross between the flow's processes pickled: what arrives equals what left, the
    event's UTC offset, every bit of every feature and the features' order included."""
    event = msgspec.structs.replace(
        payment("t").event,
        event_time=datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(minutes=offset_minutes))),
    )
    names = list(FEATURE_NAMES[:n])
    if shuffled:
        names.reverse()  # not the catalogue's order: travels as a dict
    features = dict(zip(names, values, strict=False))
    sent = Positioned(event, 3, 12345, features, rejected, appended_at)
    got = pickle.loads(pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL))
    assert got == sent
    assert list(got.features) == list(sent.features)
    assert [math.copysign(1, v) for v in got.features.values()] == [
        math.copysign(1, v) for v in sent.features.values()
    ]
    assert got.event.event_time.utcoffset() == sent.event.event_time.utcoffset()
    if n > 20 and not shuffled:
        assert len(pickle.dumps(sent)) < len(pickle.dumps(msgspec.structs.asdict(sent))) / 2


def test_a_labelled_payment_pickles_compactly_and_exactly() -> None:
    features = {name: i / 7 for i, name in enumerate(FEATURE_NAMES)}
    sent = LabelledPayment(
        transaction_id="t",
        card_id="c",
        merchant_id="m",
        terminal_id="p",
        payment_time=1.7e9,
        reported_at=1.7e9 + 5,
        is_fraud=True,
        features=features,
        scored_by="v00001",
        label_partition=2,
        label_offset=99,
    )
    assert pickle.loads(pickle.dumps(sent)) == sent
    other = msgspec.structs.replace(sent, features={"old_feature": 1.0}, learned_version="v1.2")
    assert pickle.loads(pickle.dumps(other)) == other
    # MySQL 8's JSON type returns the names sorted: still packed, and equal.
    as_mysql8 = msgspec.structs.replace(sent, features=dict(sorted(features.items())))
    assert pickle.loads(pickle.dumps(as_mysql8)) == as_mysql8
    assert len(pickle.dumps(as_mysql8)) == len(pickle.dumps(sent)) < 600


def test_a_card_snapshot_from_before_ids_were_hashed_still_skips_repeats() -> None:
    """Recovery snapshots taken by the previous release hold the ids themselves."""
    build = keyed_history(CardHistory, idle_seconds=60, remember=4, mark_key=MARK_KEY)
    step = build(None)
    step.on_batch([payment("a"), payment("b")])
    history, last_touch, _ = pickle.loads(step.snapshot())
    crc = zlib.crc32(msgspec.json.encode(payment("a").event))  # that release's fingerprint
    old_format = pickle.dumps((history, last_touch, (("a", crc),)))
    resumed = build(old_format)
    out, _ = resumed.on_batch([payment("a"), payment("c")])
    assert [p.event.transaction_id for p in out] == ["c"]


def twin(which: int) -> Positioned[Payment]:
    """The corpus's two payments of one id and card whose JSON share a CRC-32."""
    case = next(c for c in PAYMENT_CASES if c.name == f"crc32_twin_{which}")
    assert case.raw is not None
    return Positioned(PaymentDecoder().decode(case.raw), 0, which)


def test_a_payment_whose_json_shares_a_crc32_with_its_id_s_first_is_refused_not_skipped() -> None:
    """The card step took a payment whose fingerprint (then a CRC-32) matched the first one of
    its id for a redelivery, and dropped it: another amount, without a trace."""
    first, second = twin(1), twin(2)
    assert first.event.amount_minor != second.event.amount_minor
    assert zlib.crc32(msgspec.json.encode(first.event)) == zlib.crc32(
        msgspec.json.encode(second.event)
    )
    step = keyed_history(CardHistory, idle_seconds=60, remember=4, mark_key=MARK_KEY)(None)
    out, _ = step.on_batch([first, second])
    assert [(p.event.amount_minor, bool(p.rejected)) for p in out] == [
        (first.event.amount_minor, False),
        (second.event.amount_minor, True),
    ]


def test_a_card_snapshot_of_crc32_fingerprints_still_skips_repeats() -> None:
    """Recovery snapshots of the release before hold CRC-32 fingerprints (4 bytes each)."""
    build = keyed_history(CardHistory, idle_seconds=60, remember=4, mark_key=MARK_KEY)
    step = build(None)
    step.on_batch([payment("a")])
    history, last_touch, _ = pickle.loads(step.snapshot())
    encoded = msgspec.json.encode(payment("a").event)
    old = (array("Q", [id_hash("a")]).tobytes(), array("I", [zlib.crc32(encoded)]).tobytes())
    resumed = build(pickle.dumps((history, last_touch, old)))
    out, _ = resumed.on_batch([payment("a"), payment("b")])
    assert [p.event.transaction_id for p in out] == ["b"]
    again = build(resumed.snapshot())  # and its own snapshot, of both kinds of fingerprint
    out, _ = again.on_batch([payment("a"), payment("b"), payment("c")])
    assert [p.event.transaction_id for p in out] == ["c"]


def blake128(p: Positioned[Payment]) -> int:
    """The release before's mark of a payment: 128 bits of unkeyed BLAKE2b of its JSON."""
    digest = hashlib.blake2b(msgspec.json.encode(p.event), digest_size=16).digest()
    return int.from_bytes(digest, "little")


def test_a_card_snapshot_of_128_bit_marks_still_skips_repeats_and_refuses_reuses() -> None:
    """Recovery snapshots of the release before hold 16-byte BLAKE2b marks; a card resumed from
    one keeps them (its own snapshot wide) until newer payments push them out (narrow again)."""
    build = keyed_history(CardHistory, idle_seconds=60, remember=4, mark_key=MARK_KEY)
    step = build(None)
    step.on_batch([payment("a"), payment("b")])
    history, last_touch, _ = pickle.loads(step.snapshot())
    ids = array("Q", [id_hash("a"), id_hash("b")]).tobytes()
    marks = b"".join(blake128(payment(t)).to_bytes(16, "little") for t in "ab")
    resumed = build(pickle.dumps((history, last_touch, (ids, marks))))
    changed = Positioned(msgspec.structs.replace(payment("a").event, amount_minor=1), 0, 1)
    out, _ = resumed.on_batch([payment("a"), changed, payment("c")])
    assert [(p.event.transaction_id, bool(p.rejected)) for p in out] == [("a", True), ("c", False)]
    wide = pickle.loads(resumed.snapshot())[2]
    assert wide[2] == 16 and len(wide[1]) == 3 * 16  # a, b (old marks) and c (a new one)
    again = build(resumed.snapshot())
    out, _ = again.on_batch([payment(t) for t in "abcdef"])
    assert [p.event.transaction_id for p in out] == ["d", "e", "f"]
    narrow = pickle.loads(again.snapshot())[2]  # c, d, e, f: all marked by this release
    assert isinstance(narrow, bytes) and len(narrow) == 4 * (6 + 4)  # 48-bit hashes, 32-bit marks
    out, _ = build(again.snapshot()).on_batch([payment(t) for t in "cdefg"])
    assert [p.event.transaction_id for p in out] == ["g"]


def test_after_a_key_rotation_a_payment_marked_before_is_a_reused_id_never_lost() -> None:
    """Marks are keyed; a card resumed under another key sees its old marks as other content:
    a redelivered payment becomes a visible dead letter, not a silent skip nor a second count."""
    old = keyed_history(CardHistory, idle_seconds=60, remember=4, mark_key=MARK_KEY)(None)
    old.on_batch([payment("a")])
    rotated = keyed_history(
        CardHistory, idle_seconds=60, remember=4, mark_key=mark_key(b"the next signing key..")
    )
    step = rotated(old.snapshot())
    out, _ = step.on_batch([payment("a"), payment("b"), payment("b")])
    assert [(p.event.transaction_id, bool(p.rejected)) for p in out] == [
        ("a", True),
        ("b", False),
    ]
    assert "reused" in out[0].rejected
    assert out[1].features["card_count_24h"] == 1.0  # "a" counted once, before the rotation


def test_content_marks_are_keyed_32_bit_and_the_key_is_derived_per_use() -> None:
    p = payment("a").event
    first, other = mark_key(b"s" * 32), mark_key(b"t" * 32)
    assert first != other and len(first) == 32 and first != b"s" * 32
    assert content_mark(p, first) == content_mark(p, first) < 2**32
    assert content_mark(p, first) != content_mark(p, other)
    with pytest.raises(ValueError, match="needs mark_key"):
        keyed_history(CardHistory, idle_seconds=60, remember=4)
    with pytest.raises(ValueError, match="16 to 64 bytes"):
        mark_key(b"short")


@settings(max_examples=100, deadline=None)
@given(
    marks=st.lists(
        st.tuples(
            st.integers(0, 2**48 - 1),
            st.integers(0, 2**32 - 1)
            | st.integers(0, 2**32 - 1).map(lambda c: 2**32 + c)
            | st.integers(2**33, 2**128 - 1),
        ),
        max_size=70,
        unique_by=lambda pair: pair[0],
    )
)
def test_recent_ids_round_trip_through_a_snapshot(marks: list[tuple[int, int]]) -> None:
    """Whatever mix of this release's and earlier releases' marks a card holds."""
    low = array("I", (key & 0xFFFF_FFFF for key, _ in marks))
    high = array("H", (key >> 32 for key, _ in marks))
    column = array("I", (m for _, m in marks)) if all(m < 2**32 for _, m in marks) else None
    assert unpack_recent(pack_recent(low, high, column or [m for _, m in marks])) == marks


def test_the_keyed_history_module_reads_no_file_and_connects_nowhere_at_import(
    tmp_path: Path,
) -> None:
    """The mark key is passed in by the flow's builder; importing the step reads no key file
    (nor anything outside the interpreter's and the libraries' own files) and opens no socket."""
    key_file = tmp_path / "model.key"
    key_file.write_text("00" * 32 + "\n")
    probe = (
        "import sys\n"
        "seen = []\n"
        "def hook(event, args):\n"
        "    if event == 'open' or event.startswith('socket.'):\n"
        "        seen.append((event, str(args[0])))\n"
        "sys.addaudithook(hook)\n"
        "import dataflows.keyed_history\n"
        "roots = (sys.prefix, sys.base_prefix, '/proc/')\n"
        "print([s for s in seen if s[0] != 'open' or not (s[1].startswith(roots)"
        " or s[1].endswith(('.py', '.pyc', '.so')))])\n"
    )
    env = os.environ | {"PAYSCORE_MODEL_KEY_FILE": str(key_file)}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


# Settings of seconds the flow turns into timers (a datetime, a timedelta, a thread's wait).
TIMER_SETTINGS = (
    "model_refresh_seconds",
    "rules_refresh_seconds",
    "publish_seconds",
    "label_retry_seconds",
)


@pytest.mark.parametrize("field", TIMER_SETTINGS)
@pytest.mark.parametrize("value", ["inf", "1e12", "2147484"])
def test_a_timer_setting_past_what_a_timer_takes_is_refused_naming_the_variable(
    field: str, value: str
) -> None:
    """``inf`` or 1e12 (an operator's "never") passed the start and stopped the flow later, at
    its first label or timer, with OverflowError "cannot convert float infinity to integer" or
    ValueError "year 33715 is out of range" (datetime.fromtimestamp in the learner's
    notify_at), naming no variable."""
    variable = f"PAYSCORE_{field.upper()}"
    with pytest.raises(ValueError, match=f"invalid configuration: {variable}='{value}'"):
        Config.from_env({variable: value})


@pytest.mark.parametrize("field", TIMER_SETTINGS)
def test_the_largest_timer_setting_accepted_makes_every_timer_the_flow_makes(field: str) -> None:
    import threading
    import time

    largest = Config.from_env({f"PAYSCORE_{field.upper()}": "2147483"})
    seconds = getattr(largest, field)
    assert datetime.now(UTC) + timedelta(seconds=seconds) > datetime.now(UTC)
    assert datetime.fromtimestamp(time.time() + seconds, UTC).year < 9999
    assert seconds <= threading.TIMEOUT_MAX


def test_a_kafka_batch_larger_than_the_client_reads_is_refused_at_start() -> None:
    """librdkafka reads at most 1,000,000 messages a poll: a larger PAYSCORE_KAFKA_BATCH_SIZE
    passed the start and stopped the flow at its first read (ValueError "num_messages must be
    between 0 and 1000000", naming no variable). The largest accepted one is read by the real
    client."""
    from confluent_kafka import Consumer

    with pytest.raises(ValueError, match="PAYSCORE_KAFKA_BATCH_SIZE='1000001'"):
        Config.from_env({"PAYSCORE_KAFKA_BATCH_SIZE": "1000001"})
    largest = Config.from_env({"PAYSCORE_KAFKA_BATCH_SIZE": "1000000"}).kafka_batch_size
    from test_data.ports import free_ports

    nobody = f"127.0.0.1:{free_ports(1)}"  # no broker: the client checks the count itself
    consumer = Consumer({"bootstrap.servers": nobody, "group.id": "batch-size-test"})
    try:
        assert consumer.consume(largest, 0.001) == []
    finally:
        consumer.close()


@pytest.mark.parametrize(
    "env",
    [
        {"PAYSCORE_mysql_url": "mysql+pymysql://a:b@h/x"},
        {"PAYSCORE_MYSQL_URL": "mysql+pymysql://a:b@h/x", "PAYSCORE_Mysql_Url": "mysql://c@h/y"},
        # The Kelvin sign is upper case and lower-cases to "k": the name's other spelling.
        {"PAYSCORE_KAFKA_BATCH_SIZE": "9", "PAYSCORE_\u212aAFKA_BATCH_SIZE": "7"},
    ],
    ids=["lower_case_alone", "two_spellings", "unicode_upper_case"],
)
def test_a_variable_spelled_in_another_case_is_refused_naming_the_right_one(
    env: dict[str, str],
) -> None:
    """Only the upper-case name is the variable: another spelling was taken as the same field,
    and with both set one of them won without a word (whichever the environment listed last)."""
    odd = next(name for name in env if not name.isascii() or name != name.upper())
    right = (
        next(name for name in env if name.isascii() and name == name.upper())
        if len(env) > 1
        else "PAYSCORE_MYSQL_URL"
    )
    says = f"unknown variable {odd}; did you mean {right}"
    with pytest.raises(ValueError, match=says):
        Config.from_env(env)


def test_a_misspelt_variable_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(ValueError, match="did you mean PAYSCORE_MYSQL_OUTAGE_SECONDS"):
        Config.from_env({"PAYSCORE_MYSQL_OUTAGE_SECOND": "5"})
