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

**The decisions topic must be compacted** (``cleanup.policy`` holding ``compact``, as
``ops/create_topics.py`` makes it; ``compact,delete`` is accepted). Its guarantee is that the last
record of every transaction id is the stored decision, for as long as the topic lives
(``dataflows/decisions_topic.py``); on a topic made by hand with the broker's default ``delete``
the retention (7 days by default) deletes decisions a consumer keeps by key, and one rebuilding
its state from the topic misses them without a sign. The flow ran on such a topic without a
word; it now refuses to start, naming the topic, its policy and the remedy (refuse rather than
warn: a warning at start is read by nobody once a supervisor restarts the flow, and the loss
comes days later; the remedy is one command, and nothing is lost while the flow waits for it).

**The payments and labels topics must not be compacted** (the decisions topic's setting copied
by hand): compaction keeps the last message of each key (a card) and deletes a card's earlier
payments or labels, read or not, between offsets, where the deleted-unread check (the oldest
offset left, ``dataflows/sources.py``) sees no gap. The flow ran on such topics without a word;
it refuses them at start too (the payments topic's policy is read with its timestamp type,
``dataflows/payments_topic.py``).
"""

from __future__ import annotations

from dataflows.topic_configs import SETTLE_SECONDS, TopicDescribeError, admin_client, describe_topic
from settings.config import DECISIONS_TOPIC_SETTINGS, PREFIX, Config

# The topics described here, by their Config field (the payments topic: payments_topic.py).
CHECKED = ("labels_topic", "dead_letters_topic", "decisions_topic")
CLEANUP_POLICY = "cleanup.policy"
COMPACT = DECISIONS_TOPIC_SETTINGS[CLEANUP_POLICY]
READ = ("payments_topic", "labels_topic")  # the topics the flow reads: never compacted


class OutputTopicError(RuntimeError):
    """A topic the flow uses is missing or cannot be described."""


def require_topics(
    config: Config,
    timeout: float = 30.0,
    settle: float = SETTLE_SECONDS,
    fields: tuple[str, ...] = CHECKED,
) -> None:
    """The flow's start: each topic of ``fields`` exists (see the module)."""
    admin = admin_client(config)
    for field in fields:
        topic, variable = getattr(config, field), f"{PREFIX}{field.upper()}"
        try:
            entries = describe_topic(admin, topic, timeout=timeout, settle=settle)
        except TopicDescribeError as error:
            raise OutputTopicError(
                f"Kafka topic {topic!r} ({variable}) cannot be described on "
                f"{config.kafka_brokers}: {error}; expected an existing topic the flow reads or "
                "writes: create it with ops/create_topics.py (or correct the variable)"
            ) from None
        entry = entries.get(CLEANUP_POLICY)
        if entry is None:
            raise OutputTopicError(
                f"Kafka topic {topic!r} ({variable}): the broker on {config.kafka_brokers} did "
                f"not say its {CLEANUP_POLICY}; expected it among the topic's settings (every "
                "Kafka broker describes it): check that the flow's account may describe the "
                "topic's configuration (DescribeConfigs)"
            )
        check_cleanup_policy(field, topic, str(entry.value))


def check_cleanup_policy(field: str, topic: str, policy: str) -> None:
    """Refuse a decisions topic whose ``cleanup.policy`` does not compact, and a payments or
    labels topic whose policy does (see the module).

    >>> check_cleanup_policy("decisions_topic", "decisions", "compact,delete")
    >>> check_cleanup_policy("payments_topic", "payments", "delete")
    >>> try:
    ...     check_cleanup_policy("decisions_topic", "decisions", "delete")
    ... except OutputTopicError as exc:
    ...     print(str(exc)[:73])
    Kafka topic 'decisions' (PAYSCORE_DECISIONS_TOPIC) has cleanup.policy=del
    """
    compacts = COMPACT in (part.strip() for part in policy.split(","))
    variable = f"{PREFIX}{field.upper()}"
    if field == "decisions_topic" and not compacts:
        raise OutputTopicError(
            f"Kafka topic {topic!r} ({variable}) has {CLEANUP_POLICY}={policy}; expected "
            f"{COMPACT} (or {COMPACT},delete): the last decision of every transaction id must "
            "stay on it, and retention would delete decisions a consumer keeps by key. Alter it "
            "with ops/create_topics.py (it compacts an existing decisions topic), or "
            f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config "
            f"{CLEANUP_POLICY}={COMPACT}"
        )
    if field in READ and compacts:
        raise OutputTopicError(
            f"Kafka topic {topic!r} ({variable}) has {CLEANUP_POLICY}={policy}; expected delete: "
            "compaction keeps only the last message of each key (a card) and deletes the earlier "
            "ones, read or not, between offsets where no check sees the gap. Alter it with "
            f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config "
            f"{CLEANUP_POLICY}=delete (what compaction deleted already is lost to the flow)"
        )
