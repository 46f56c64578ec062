"""A topic's configuration as the broker describes it, for the flow's start checks.

The start checks (``dataflows/payments_topic.py``, ``dataflows/output_topics.py``) describe a
topic and refuse to start on what they find. Describing a topic never creates it. A topic the
broker does not know yet is asked for again for ``settle`` seconds (``SETTLE_SECONDS``): a topic
created just before the flow starts takes a moment to reach the broker's metadata. Every wait is
bounded: a broker that does not answer is an error after the request's ``timeout`` (and five
seconds more for the answer to come back), never a start that hangs.

The start's first Kafka client is made here (:func:`admin_client`): librdkafka refuses a
setting it does not know (a typo in ``PAYSCORE_KAFKA_CONFIG_FILE``, ``securty.protocol``) when
the client is made, and the flow stopped with a bare ``KafkaException`` naming neither the file
nor the variable; it now says both.
"""

from __future__ import annotations

import concurrent.futures
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigEntry, ConfigResource

from features.bounded import bounded
from settings.config import PREFIX, Config

SETTLE_SECONDS = 10.0
RETRY_SECONDS = 0.5


def kafka_error_text(exc: Exception) -> str:
    """What a client error says, bounded: a ``KafkaException``'s ``KafkaError`` text (its
    ``str()`` method; the exception's own ``str`` is the error's repr), else the exception's
    text, else its class name (an exception without arguments says nothing).

    >>> kafka_error_text(KafkaException("plain text"))
    'plain text'
    """
    first = exc.args[0] if exc.args else None
    text = first.str() if isinstance(first, KafkaError) else str(exc)
    return bounded(text or type(exc).__name__)


class KafkaSettingsError(ValueError):
    """librdkafka refused the Kafka client's settings."""


def admin_client(config: Config) -> AdminClient:
    """An admin client with the flow's Kafka settings, or :class:`KafkaSettingsError` naming
    the settings file and what librdkafka refused in it (see the module)."""
    try:
        return AdminClient(config.kafka_client())
    except KafkaException as exc:
        where = (
            f"{PREFIX}KAFKA_CONFIG_FILE={config.kafka_config_file!r}"
            if config.kafka_config_file
            else f"{PREFIX}KAFKA_BROKERS={config.kafka_brokers!r}"
        )
        raise KafkaSettingsError(
            bounded(
                f"invalid configuration: librdkafka refuses the Kafka client settings of {where}: "
                f"{kafka_error_text(exc)}; expected librdkafka properties, one name=value a "
                "line (see "
                "https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)"
            )
        ) from None


class TopicDescribeError(RuntimeError):
    """The broker did not describe the topic; the text is its last answer."""


def describe_topic(
    admin: AdminClient, topic: str, *, timeout: float = 30.0, settle: float = SETTLE_SECONDS
) -> dict[str, ConfigEntry]:
    """``topic``'s configuration entries by name, or :class:`TopicDescribeError` with the
    broker's last answer (see the module). One request a topic: a topic unknown to the broker
    fails every topic of its request."""
    resource = ConfigResource("topic", topic)
    deadline = time.monotonic() + settle
    while True:
        try:
            # the future's wait outlasts the request's, so the broker's own timeout answers
            future = admin.describe_configs([resource], request_timeout=timeout)[resource]
            return dict(future.result(timeout=timeout + 5))
        except concurrent.futures.TimeoutError:
            raise TopicDescribeError(f"no answer within {timeout + 5:g} s") from None
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not isinstance(error, KafkaError):
                raise TopicDescribeError(str(exc)) from None
            if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                raise TopicDescribeError(error.str()) from None
        time.sleep(RETRY_SECONDS)
