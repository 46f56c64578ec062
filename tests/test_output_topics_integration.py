"""The dead-letter topic is checked at start, on the real broker
(``dataflows/output_topics.py``)."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from confluent_kafka.admin import AdminClient

from dataflows.output_topics import OutputTopicError, require_dead_letter_topic
from settings.config import Config
from tests.flowrun import BROKERS

pytestmark = pytest.mark.integration


def config_on(topics: dict[str, str]) -> Config:
    return msgspec.structs.replace(Config.from_env({}), kafka_brokers=BROKERS, **topics)


def test_an_existing_dead_letter_topic_passes_even_just_created(topics: dict[str, str]) -> None:
    require_dead_letter_topic(config_on(topics))


def test_a_missing_dead_letter_topic_stops_the_start_and_is_not_created(
    topics: dict[str, str],
) -> None:
    missing = f"test-{uuid.uuid4().hex[:8]}-never-created"
    with pytest.raises(OutputTopicError) as caught:
        require_dead_letter_topic(config_on(topics | {"dead_letters_topic": missing}), settle=2.0)
    said = str(caught.value)
    assert (
        f"Kafka topic {missing!r} (PAYSCORE_DEAD_LETTERS_TOPIC) cannot be described on {BROKERS}"
    ) in said
    assert "Unknown topic or partition" in said and "create it with ops/create_topics.py" in said
    listed = AdminClient({"bootstrap.servers": BROKERS}).list_topics(timeout=30).topics
    assert missing not in listed  # describing it did not create it
