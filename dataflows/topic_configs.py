"""A topic's configuration as the broker describes it, for the flow's start checks.

The start checks (``dataflows/payments_topic.py``, ``dataflows/output_topics.py``) describe a
topic and refuse to start on what they find. Describing a topic never creates it. A topic the
broker does not know yet is asked for again for ``settle`` seconds (``SETTLE_SECONDS``): a topic
created just before the flow starts takes a moment to reach the broker's metadata. Every wait is
bounded: a broker that does not answer is an error after the request's ``timeout`` (and five
seconds more for the answer to come back), never a start that hangs.
"""

from __future__ import annotations

import concurrent.futures
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigEntry, ConfigResource

SETTLE_SECONDS = 10.0
RETRY_SECONDS = 0.5


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
