"""Every stored payment's final decision out on Kafka, for the systems that act on it (the
gateway, case management, alerting): the decisions topic (``PAYSCORE_DECISIONS_TOPIC``,
``payscore-decisions``), compacted, keyed by transaction id, the value a JSON
:class:`storage.decision_records.DecisionRecord` (decision, model decision, probability, the
rule that decided, rules fired, shadow hits, reasons, reason codes, model and ruleset versions,
event time, Kafka position, appended and stored times).

**Guarantee: at least once, and the last record of every key is the stored decision.** The
payments sink publishes *inside* its MySQL transaction (``storage/sink.py``, ``before_commit``),
after the batch's rows are loaded and checked and before the commit, and waits for the broker
to acknowledge every record (``acks=all``, an idempotent producer, so one producer's records of a
key keep their order); what it publishes is **read back** from ``scored_payments`` in that
transaction, the rows locked until the commit. Hence:

- a row MySQL refused is never published: a refusal fails the load before anything is
  published, and the row becomes a dead letter;
- a row skipped as stored already (a replay after a crash, possibly re-scored by a newer model
  or ruleset) publishes the *stored* decision, never the new one;
- a payment replaced by the earlier message of its transaction id
  (:func:`storage.payments.settle_reused_ids`) is published again in the transaction that
  replaces it, after the one it replaces: that transaction waits on the row lock of the one that
  stored the first, which published before it committed;
- a crash (or a failed publish) between publish and commit rolls the batch back; Bytewax
  replays it, and the replay publishes what it stores, last.

So a consumer that keeps the last value per key (what compaction keeps) sees exactly the stored
decisions; a consumer of the whole log may see a key more than once (drop repeats by key). A
publish the broker does not acknowledge within ``PAYSCORE_MYSQL_OUTAGE_SECONDS`` (librdkafka's
``message.timeout.ms``) is an outage like MySQL's: the batch rolls back and the flow stops
non-zero, nothing lost (``tests/test_decisions_topic_integration.py``, and the chaos test's
accounting, ``test_data/chaos.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from features.bounded import bounded
from storage.decision_records import DecisionRecord, encode, stored_decisions
from storage.sink import Read

log = logging.getLogger(__name__)


class DecisionsTopicError(RuntimeError):
    """Decisions could not be published; the batch that made them is rolled back."""


class DecisionsTopic:
    """One worker's publisher of stored decisions (see the module)."""

    def __init__(self, kafka: Mapping[str, str], topic: str, *, patience: float) -> None:
        self.topic = topic
        self._producer = Producer(
            {
                **kafka,
                "enable.idempotence": "true",
                "acks": "all",
                "linger.ms": "5",
                "message.timeout.ms": str(max(int(patience * 1000), 5000)),
            }
        )

    def __call__(self, read: Read, rows: Sequence[Mapping[str, Any]]) -> None:
        """The sink's ``before_commit``: the stored decisions of ``rows``' payments, published."""
        self.publish(stored_decisions(read, [row["transaction_id"] for row in rows]))

    def publish(self, records: Sequence[DecisionRecord]) -> None:
        """Every record on the topic, keyed by transaction id; waits for every acknowledgement
        and raises :class:`DecisionsTopicError` if any failed."""
        errors: list[tuple[str, KafkaError]] = []
        producer = self._producer
        for record in records:
            key = record.transaction_id

            def report(error: KafkaError | None, _: object, key: str = key) -> None:
                if error is not None:
                    errors.append((key, error))

            while True:
                try:
                    producer.produce(
                        self.topic, value=encode(record), key=key.encode(), on_delivery=report
                    )
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(0.5)
                except KafkaException as exc:
                    errors.append((key, exc.args[0]))
                    break
            producer.poll(0)
        while producer.flush(10.0):
            pass  # librdkafka reports every record by message.timeout.ms at the latest
        if errors:
            key, error = errors[0]
            raise DecisionsTopicError(
                bounded(
                    f"{len(errors)} of {len(records)} decisions not published to Kafka topic "
                    f"{self.topic!r} (the first: transaction {key!r}): {error.str()}; the batch "
                    "is rolled back and will be stored and published again"
                )
            )

    def close(self) -> None:
        self._producer.flush(30.0)
