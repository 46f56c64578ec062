"""The dead-letter topic must exist when the flow starts, not when it first writes to it.

The dead-letter topic is written at the first bad message, which may come hours after a start;
a topic that was never created (a typo in ``PAYSCORE_DEAD_LETTERS_TOPIC``, a broker that does
not create topics on first use) then stopped the flow only after librdkafka's
``message.timeout.ms`` (five minutes), and again at every restart. The flow therefore describes
it at start and refuses to run without it, with the variable, the topic and the broker's answer
in the message. Describing a topic never creates it. A topic the broker does not know yet is
asked for again for ``SETTLE_SECONDS``: a topic created just before the flow starts takes a
moment to reach the broker's metadata.

The decisions topic is not checked here: every batch publishes to it before it commits, so a
missing one stops the flow at its first batch, nothing stored (``dataflows/decisions_topic.py``,
``tests/test_decisions_topic_integration.py``).
"""

from __future__ import annotations

import concurrent.futures
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from settings.config import PREFIX, Config

SETTLE_SECONDS = 10.0


class OutputTopicError(RuntimeError):
    """The dead-letter topic is missing or cannot be described."""


def require_dead_letter_topic(
    config: Config, timeout: float = 30.0, settle: float = SETTLE_SECONDS
) -> None:
    """The flow's start: the dead-letter topic exists (see the module)."""
    admin = AdminClient(config.kafka_client())
    topic, variable = config.dead_letters_topic, f"{PREFIX}DEAD_LETTERS_TOPIC"
    error = _described(admin, topic, timeout, settle)
    if error is not None:
        raise OutputTopicError(
            f"Kafka topic {topic!r} ({variable}) cannot be described on "
            f"{config.kafka_brokers}: {error}; expected an existing topic the flow writes "
            "to: create it with ops/create_topics.py (or correct the variable)"
        )


def _described(admin: AdminClient, topic: str, timeout: float, settle: float) -> str | None:
    """None once ``topic`` is described; else the broker's last answer. One request a topic:
    a topic unknown to the broker fails every topic of its request."""
    resource = ConfigResource("topic", topic)
    deadline = time.monotonic() + settle
    while True:
        try:
            # the future's wait outlasts the request's, so the broker's own timeout answers
            admin.describe_configs([resource], request_timeout=timeout)[resource].result(
                timeout=timeout + 5
            )
            return None
        except concurrent.futures.TimeoutError:
            return f"no answer within {timeout + 5:g} s"
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not isinstance(error, KafkaError):
                return str(exc)
            if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                return error.str()
        time.sleep(0.5)
