"""The payments topic must carry the broker's append times (``LogAppendTime``).

A transaction id carried by two messages belongs to the first in Kafka order, and across
partitions that order is the record timestamp (``storage/payments.py``). On a ``CreateTime``
topic the producer sets that timestamp: a forged payment for another card, produced after the
genuine one with a back-dated timestamp, would take the transaction id (review of issue 20,
finding 5). The flow therefore reads the topic's ``message.timestamp.type`` at start and refuses
``CreateTime``, unless ``PAYSCORE_TRUST_PRODUCER_TIMESTAMPS=true`` says every producer of the
topic is trusted with its clock (a mirrored topic that keeps its source's times, a test).
``ops/create_topics.py`` sets ``LogAppendTime`` on a new or an existing payments topic.

>>> check_timestamp_type("payments", "LogAppendTime", trust_producers=False)
>>> try:
...     check_timestamp_type("payments", "CreateTime", trust_producers=False)
... except PaymentsTopicError as exc:
...     print(str(exc)[:68])
payments topic 'payments' has message.timestamp.type=CreateTime: its
"""

from __future__ import annotations

import logging

from confluent_kafka.admin import ConfigEntry

from dataflows.output_topics import CLEANUP_POLICY, check_cleanup_policy
from dataflows.topic_configs import SETTLE_SECONDS, TopicDescribeError, admin_client, describe_topic
from settings.config import PAYMENTS_TOPIC_SETTINGS, PREFIX, Config

log = logging.getLogger(__name__)

((TIMESTAMP_TYPE, APPEND_TIME),) = PAYMENTS_TOPIC_SETTINGS.items()


class PaymentsTopicError(RuntimeError):
    """The payments topic is not as the flow needs it."""


def check_timestamp_type(topic: str, timestamp_type: str, *, trust_producers: bool) -> None:
    """Refuse a payments topic whose record times are not the broker's (see the module)."""
    if timestamp_type == APPEND_TIME:
        return
    if trust_producers:
        log.warning(
            "payments topic %r has %s=%s: reused transaction ids are settled by the producers' "
            "clocks (PAYSCORE_TRUST_PRODUCER_TIMESTAMPS=true)",
            topic,
            TIMESTAMP_TYPE,
            timestamp_type,
            extra={"event": "producer_timestamps_trusted"},
        )
        return
    raise PaymentsTopicError(
        f"payments topic {topic!r} has {TIMESTAMP_TYPE}={timestamp_type}: its record times are "
        "the producers' clocks, and the first payment of a transaction id in Kafka order is "
        f"chosen by them; expected {APPEND_TIME}: run ops/create_topics.py (it alters the "
        "topic), or PAYSCORE_TRUST_PRODUCER_TIMESTAMPS=true if every producer of it is trusted"
    )


def topic_entries(
    config: Config, topic: str, timeout: float = 30.0, settle: float = SETTLE_SECONDS
) -> dict[str, ConfigEntry]:
    """``topic``'s settings as the broker describes them (a topic it does not know yet asked for
    again for ``settle`` seconds, ``dataflows/topic_configs.py``)."""
    admin = admin_client(config)
    try:
        return describe_topic(admin, topic, timeout=timeout, settle=settle)
    except TopicDescribeError as exc:
        raise _undescribed(config, topic, exc) from None


def _undescribed(
    config: Config, topic: str, exc: Exception, setting: str = TIMESTAMP_TYPE
) -> PaymentsTopicError:
    return PaymentsTopicError(
        f"cannot read {setting} of the payments topic {topic!r} "
        f"({PREFIX}PAYMENTS_TOPIC) on {config.kafka_brokers}: {exc}; expected an existing "
        "topic the flow's account may describe: create it with ops/create_topics.py (or "
        f"correct the variable, or the credentials in {PREFIX}KAFKA_CONFIG_FILE)"
    )


def _value(entries: dict[str, ConfigEntry], name: str, config: Config) -> str:
    if name not in entries:
        raise _undescribed(config, config.payments_topic, KeyError(name), name)
    return str(entries[name].value)


def timestamp_type(
    config: Config, topic: str, timeout: float = 30.0, settle: float = SETTLE_SECONDS
) -> str:
    """``topic``'s ``message.timestamp.type`` as the broker describes it."""
    entries = topic_entries(config, topic, timeout, settle)
    if TIMESTAMP_TYPE not in entries:
        raise _undescribed(config, topic, KeyError(TIMESTAMP_TYPE))
    return str(entries[TIMESTAMP_TYPE].value)


def require_append_time(config: Config) -> None:
    """The flow's start: the configured payments topic carries the broker's append times, and
    is not compacted (``dataflows/output_topics.py``)."""
    entries = topic_entries(config, config.payments_topic)
    check_timestamp_type(
        config.payments_topic,
        _value(entries, TIMESTAMP_TYPE, config),
        trust_producers=config.trust_producer_timestamps,
    )
    check_cleanup_policy(
        "payments_topic", config.payments_topic, _value(entries, CLEANUP_POLICY, config)
    )
