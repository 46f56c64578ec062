"""The flow's Kafka source's configuration, with fake clients (``dataflows/sources.py``): the
consumer-only ``auto.offset.reset`` reaches the readers' consumers, never the AdminClient that
lists partitions (librdkafka printed a CONFWARN line for it there, per worker, at every start)."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import bytewax.connectors.kafka
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from dataflows import scoring, sources
from features.bounded import TEXT_CHARS
from settings.config import Config


def test_auto_offset_reset_reaches_the_consumers_and_not_the_admin_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin: list[dict] = []
    consumer: list[dict] = []

    def admin_client(config: dict) -> SimpleNamespace:
        admin.append(config)
        found = SimpleNamespace(error=None, partitions={0: None})
        return SimpleNamespace(
            list_topics=lambda topic, timeout: SimpleNamespace(topics={topic: found})
        )

    def partition(step: str, config: dict, *args: object) -> SimpleNamespace:
        consumer.append(config)
        return SimpleNamespace(_consumer=SimpleNamespace(consume=list), close=lambda: None)

    monkeypatch.setattr(sources, "AdminClient", admin_client)
    monkeypatch.setattr(bytewax.connectors.kafka, "_KafkaSourcePartition", partition)
    monkeypatch.setattr(sources.thread_states, "pin", lambda: True)
    config = Config.from_env({})
    source = scoring.kafka_source(config, "payments", threading.Event())
    assert source.list_parts() == ["0-payments"]
    source.build_part("payments_in", "1-payments", None)  # partition 1: no watch, no metadata
    assert len(admin) == 1 and "auto.offset.reset" not in admin[0], admin
    assert len(consumer) == 1 and consumer[0]["auto.offset.reset"] == "earliest", consumer


def test_a_broker_that_gives_no_offsets_skips_the_deleted_unread_check_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_answer(partition: TopicPartition, timeout: float) -> tuple[int, int]:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get watermark offsets"))

    consumer = SimpleNamespace(get_watermark_offsets=no_answer)
    with caplog.at_level(logging.WARNING, logger=sources.__name__):
        sources.deleted_unread(consumer, "payments", 3, 120)  # type: ignore[arg-type]
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1, said
    assert said[0].startswith("payments[3]: deleted-unread check skipped: the broker gave no")
    assert "Failed to get watermark offsets" in said[0]


@pytest.mark.parametrize(
    "error",
    [
        KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused")),
        KafkaException("Connection refused"),  # a plain text argument (no KafkaError)
        KafkaException(),  # no argument at all
    ],
    ids=["kafka_error", "plain_text", "no_argument"],
)
def test_a_broker_that_cannot_list_partitions_is_named_whatever_the_exception_holds(
    monkeypatch: pytest.MonkeyPatch, error: KafkaException
) -> None:
    """The listing's error says what failed, whatever the KafkaException carries (a plain
    text argument made the handler itself raise AttributeError: 'str' has no 'str')."""

    def admin_client(config: dict) -> SimpleNamespace:
        def refuse(topic: str, timeout: float) -> None:
            raise error

        return SimpleNamespace(list_topics=refuse)

    monkeypatch.setattr(sources, "AdminClient", admin_client)
    source = scoring.kafka_source(Config.from_env({}), "payments", threading.Event())
    with pytest.raises(RuntimeError, match="cannot list the partitions of Kafka topic 'payments'"):
        source.list_parts()


def test_kafka_error_text_is_bounded_and_reads_any_exception() -> None:
    long = sources.kafka_error_text(KafkaException(KafkaError(1, "x" * 100_000)))
    assert len(long) <= TEXT_CHARS and "characters cut]" in long
    assert sources.kafka_error_text(KafkaException("plain")) == "plain"
    assert sources.kafka_error_text(ValueError()) == "ValueError"
