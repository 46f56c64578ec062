"""The topics the flow writes must exist when it starts, not when it first writes to them.

The dead-letter topic is written at the first bad message, which may come hours after a start;
a topic that was never created (a typo in ``PAYSCORE_DEAD_LETTERS_TOPIC``, a broker that does
not create topics on first use) then stopped the flow only after librdkafka's
``message.timeout.ms`` (five minutes), and again at every restart. The flow therefore describes
both topics it writes (dead letters, decisions) at start and refuses to run without them, with
the variable, the topic and the broker's answer in the message. Describing a topic never
creates it.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from settings.config import PREFIX, Config


class OutputTopicError(RuntimeError):
    """A topic the flow writes is missing or cannot be described."""


def require_output_topics(config: Config, timeout: float = 30.0) -> None:
    """The flow's start: the dead-letter and decisions topics exist (see the module)."""
    wanted = {
        f"{PREFIX}DEAD_LETTERS_TOPIC": ConfigResource("topic", config.dead_letters_topic),
        f"{PREFIX}DECISIONS_TOPIC": ConfigResource("topic", config.decisions_topic),
    }
    admin = AdminClient(config.kafka_client())
    described = admin.describe_configs(list(wanted.values()), request_timeout=timeout)
    for variable, resource in wanted.items():
        try:
            described[resource].result(timeout=timeout)
        except KafkaException as exc:
            why = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
            raise OutputTopicError(
                f"Kafka topic {resource.name!r} ({variable}) cannot be described on "
                f"{config.kafka_brokers}: {why}; expected an existing topic the flow writes "
                "to: create it with ops/create_topics.py (or correct the variable)"
            ) from None
