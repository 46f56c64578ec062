"""Creates the payments, labels, dead-letter and decisions topics with PAYSCORE_TOPIC_PARTITIONS
partitions (the decisions topic compacted: the last decision of each transaction id is kept).

Run by ``ops/services.sh up``; an existing topic counts as success (its partition count is kept and
reported when it differs). An existing payments topic whose ``message.timestamp.type`` is not
``LogAppendTime`` is altered to it, and that is said (``dataflows/payments_topic.py``: the flow
refuses a ``CreateTime`` payments topic); an existing decisions topic that does not compact is
altered to ``cleanup.policy=compact`` (``dataflows/output_topics.py``: the flow refuses it).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from features.bounded import bounded
from settings.arguments import Parser
from settings.config import DECISIONS_TOPIC_SETTINGS, PAYMENTS_TOPIC_SETTINGS, Config

((TIMESTAMP_TYPE, APPEND_TIME),) = PAYMENTS_TOPIC_SETTINGS.items()
CLEANUP_POLICY = "cleanup.policy"
COMPACT = DECISIONS_TOPIC_SETTINGS[CLEANUP_POLICY]


APPLIED_WITHIN_SECONDS = 30.0
BROKERS_VARIABLE = "PAYSCORE_KAFKA_BROKERS"


def topic_setting(admin: AdminClient, topic: str, name: str = TIMESTAMP_TYPE) -> str:
    """The value of setting ``name`` the broker reports for ``topic`` now."""
    resource = ConfigResource("topic", topic)
    return str(admin.describe_configs([resource])[resource].result(timeout=30)[name].value)


def timestamp_type(admin: AdminClient, topic: str) -> str:
    """The ``message.timestamp.type`` the broker reports for ``topic`` now."""
    return topic_setting(admin, topic)


def setting_on(
    admin: AdminClient,
    topic: str,
    name: str,
    value: str,
    why: str,
    *,
    kept: Callable[[str], bool] | None = None,
    within: float = APPLIED_WITHIN_SECONDS,
    poll: float = 0.2,
) -> None:
    """Set ``name`` of the existing ``topic`` to ``value`` unless it is ``value`` (or ``kept``
    accepts it), saying so when it changes. Returns only once the broker reports the change: it
    applies an altered setting a moment after answering, and a flow started in between would see
    the old value and refuse to start."""
    accepted = kept or value.__eq__
    found = topic_setting(admin, topic, name)
    if accepted(found):
        return
    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    altered = ConfigResource("topic", topic, incremental_configs=[entry])
    try:
        admin.incremental_alter_configs([altered])[altered].result(timeout=30)
    except KafkaException as exc:
        raise RuntimeError(
            f"altering {name} of Kafka topic {topic!r} from {found} to {value} failed: {exc}"
        ) from None
    deadline = time.monotonic() + within
    while not accepted(now := topic_setting(admin, topic, name)):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"Kafka topic {topic!r} still reports {name}={now} {within:.0f} s after "
                f"it was altered to {value}"
            )
        time.sleep(poll)
    print(f"[topics] {topic}: {name} altered from {found} to {value} ({why})", file=sys.stderr)


def append_time_on(
    admin: AdminClient, topic: str, *, within: float = APPLIED_WITHIN_SECONDS, poll: float = 0.2
) -> None:
    """Make the existing ``topic`` carry the broker's append times (``dataflows/payments_topic.py``:
    the flow refuses ``CreateTime``)."""
    why = "the flow refuses producers' times on the payments topic"
    setting_on(admin, topic, TIMESTAMP_TYPE, APPEND_TIME, why, within=within, poll=poll)


def compaction_on(
    admin: AdminClient, topic: str, *, within: float = APPLIED_WITHIN_SECONDS, poll: float = 0.2
) -> None:
    """Make the existing decisions ``topic`` compacted (``compact,delete`` is kept as it is:
    ``dataflows/output_topics.py``, the flow refuses a topic that does not compact)."""
    why = "the flow refuses a decisions topic that does not compact"
    setting_on(
        admin,
        topic,
        CLEANUP_POLICY,
        COMPACT,
        why,
        kept=lambda policy: COMPACT in (part.strip() for part in policy.split(",")),
        within=within,
        poll=poll,
    )


def create_topics(config: Config) -> None:
    admin = AdminClient(config.kafka_client())
    names = [
        config.payments_topic,
        config.labels_topic,
        config.dead_letters_topic,
        config.decisions_topic,
    ]
    # Payments carry the broker's append time, from which the flow measures append-to-commit;
    # decisions too (append-to-decision), and compaction keeps each transaction's last one.
    settings = {
        config.payments_topic: PAYMENTS_TOPIC_SETTINGS,
        config.decisions_topic: DECISIONS_TOPIC_SETTINGS,
    }
    wanted = [
        NewTopic(name, num_partitions=config.topic_partitions, config=settings.get(name, {}))
        for name in names
    ]
    for name, future in admin.create_topics(wanted, request_timeout=30).items():
        try:
            future.result()
            print(
                f"[topics] created {name} with {config.topic_partitions} partitions",
                file=sys.stderr,
            )
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(
                    f"creating Kafka topic {name!r} on {bounded(config.kafka_brokers, 200)} "
                    f"({BROKERS_VARIABLE}) failed: {bounded(str(exc), 300)}; expected a broker "
                    "that answers there (bash ops/services.sh status shows the local one)"
                ) from None
            have = len(admin.list_topics(name, timeout=10).topics[name].partitions)
            note = "" if have == config.topic_partitions else f" (not {config.topic_partitions})"
            print(f"[topics] {name} exists with {have} partitions{note}", file=sys.stderr)
            if name == config.payments_topic:
                append_time_on(admin, name)
            if name == config.decisions_topic:
                compaction_on(admin, name)


def main() -> int:
    """Create the topics; a setting refused (status 2) or a broker that does not answer or
    refuses (status 1) is one line, ``[topics] refused: ...`` or ``[topics] failed: ...``: a
    traceback before, whose last line named no broker."""
    try:
        config = Config.from_env(os.environ)
    except ValueError as exc:
        print(f"[topics] refused: {bounded(str(exc), 600)}", file=sys.stderr)
        return 2
    try:
        create_topics(config)
    except (RuntimeError, KafkaException) as exc:
        print(f"[topics] failed: {bounded(str(exc), 600)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # It takes no argument: each was ignored (`python ops/create_topics.py --help` ran it).
    Parser(prog="python ops/create_topics.py", description=__doc__).parse_args()
    sys.exit(main())
