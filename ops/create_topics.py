"""Creates the payments, labels, dead-letter and decisions topics with PAYSCORE_TOPIC_PARTITIONS
partitions (the decisions topic compacted: the last decision of each transaction id is kept).

Run by ``ops/services.sh up``; an existing topic counts as success (its partition count is kept and
reported when it differs).
"""

from __future__ import annotations

import os
import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from settings.config import DECISIONS_TOPIC_SETTINGS, Config


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
        config.payments_topic: {"message.timestamp.type": "LogAppendTime"},
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
                raise RuntimeError(f"creating Kafka topic {name!r} failed: {exc}") from None
            have = len(admin.list_topics(name, timeout=10).topics[name].partitions)
            note = "" if have == config.topic_partitions else f" (not {config.topic_partitions})"
            print(f"[topics] {name} exists with {have} partitions{note}", file=sys.stderr)


if __name__ == "__main__":
    create_topics(Config.from_env(os.environ))
