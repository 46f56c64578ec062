"""The topics the flow reads and writes must exist when it starts, not when it first uses them.

The dead-letter topic is written at the first bad message, which may come hours after a start;
a topic that was never created (a typo in ``PAYSCORE_DEAD_LETTERS_TOPIC``, a broker that does
not create topics on first use) then stopped the flow only after librdkafka's
``message.timeout.ms`` (five minutes), and again at every restart. A missing decisions topic
stopped it at the first batch of payments (a dead letter stored before it), with no word of the
variable or the remedy; a missing labels topic as Bytewax built its input, naming the topic
alone. The flow therefore describes the labels, dead-letter and decisions topics at start (the
payments topic is described for its timestamp type, ``dataflows/payments_topic.py``) and
refuses to run without any of them, with the variable, the topic and the broker's answer in the
message. Describing a topic never creates it; a topic the broker does not know yet is asked for
again for a while (``dataflows/topic_configs.py``).
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from dataflows.topic_configs import SETTLE_SECONDS, TopicDescribeError, describe_topic
from settings.config import PREFIX, Config

# The topics described here, by their Config field (the payments topic: payments_topic.py).
CHECKED = ("labels_topic", "dead_letters_topic", "decisions_topic")


class OutputTopicError(RuntimeError):
    """A topic the flow uses is missing or cannot be described."""


def require_topics(
    config: Config,
    timeout: float = 30.0,
    settle: float = SETTLE_SECONDS,
    fields: tuple[str, ...] = CHECKED,
) -> None:
    """The flow's start: each topic of ``fields`` exists (see the module)."""
    admin = AdminClient(config.kafka_client())
    for field in fields:
        topic, variable = getattr(config, field), f"{PREFIX}{field.upper()}"
        try:
            describe_topic(admin, topic, timeout=timeout, settle=settle)
        except TopicDescribeError as error:
            raise OutputTopicError(
                f"Kafka topic {topic!r} ({variable}) cannot be described on "
                f"{config.kafka_brokers}: {error}; expected an existing topic the flow reads or "
                "writes: create it with ops/create_topics.py (or correct the variable)"
            ) from None
