"""The topics the flow writes are checked at start, on the real broker
(``dataflows/output_topics.py``)."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from confluent_kafka.admin import AdminClient

from dataflows.output_topics import OutputTopicError, require_output_topics
from settings.config import Config
from tests.flowrun import BROKERS

pytestmark = pytest.mark.integration


def config_on(topics: dict[str, str]) -> Config:
    return msgspec.structs.replace(Config.from_env({}), kafka_brokers=BROKERS, **topics)


def test_existing_output_topics_pass(topics: dict[str, str]) -> None:
    require_output_topics(config_on(topics))


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("dead_letters_topic", "PAYSCORE_DEAD_LETTERS_TOPIC"),
        ("decisions_topic", "PAYSCORE_DECISIONS_TOPIC"),
    ],
)
def test_a_missing_output_topic_stops_the_start_and_is_not_created(
    topics: dict[str, str], field: str, variable: str
) -> None:
    missing = f"test-{uuid.uuid4().hex[:8]}-never-created"
    with pytest.raises(OutputTopicError) as caught:
        require_output_topics(config_on(topics | {field: missing}), settle=2.0)
    said = str(caught.value)
    assert f"Kafka topic {missing!r} ({variable}) cannot be described on {BROKERS}" in said
    assert "Unknown topic or partition" in said and "create it with ops/create_topics.py" in said
    listed = AdminClient({"bootstrap.servers": BROKERS}).list_topics(timeout=30).topics
    assert missing not in listed  # describing it did not create it
