"""The dead-letter topic must exist when the flow starts, not when it first writes to it.

The dead-letter topic is written at the first bad message, which may come hours after a start;
a topic that was never created (a typo in ``PAYSCORE_DEAD_LETTERS_TOPIC``, a broker that does
not create topics on first use) then stopped the flow only after librdkafka's
``message.timeout.ms`` (five minutes), and again at every restart. The flow therefore describes
it at start and refuses to run without it, with the variable, the topic and the broker's answer
in the message. Describing a topic never creates it; a topic the broker does not know yet is
asked for again for a while (``dataflows/topic_configs.py``).

The decisions topic is not checked here: every batch publishes to it before it commits, so a
missing one stops the flow at its first batch, nothing stored (``dataflows/decisions_topic.py``,
``tests/test_decisions_topic_integration.py``).
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from dataflows.topic_configs import SETTLE_SECONDS, TopicDescribeError, describe_topic
from settings.config import PREFIX, Config


class OutputTopicError(RuntimeError):
    """The dead-letter topic is missing or cannot be described."""


def require_dead_letter_topic(
    config: Config, timeout: float = 30.0, settle: float = SETTLE_SECONDS
) -> None:
    """The flow's start: the dead-letter topic exists (see the module)."""
    admin = AdminClient(config.kafka_client())
    topic, variable = config.dead_letters_topic, f"{PREFIX}DEAD_LETTERS_TOPIC"
    try:
        describe_topic(admin, topic, timeout=timeout, settle=settle)
    except TopicDescribeError as error:
        raise OutputTopicError(
            f"Kafka topic {topic!r} ({variable}) cannot be described on "
            f"{config.kafka_brokers}: {error}; expected an existing topic the flow writes "
            "to: create it with ops/create_topics.py (or correct the variable)"
        ) from None
