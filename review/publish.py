"""Writing a verdict's label message to the labels topic, and learning where it landed.

One idempotent ``confluent_kafka.Producer`` per application, made at the first verdict with the
flow's Kafka settings (``PAYSCORE_KAFKA_BROKERS``, ``PAYSCORE_KAFKA_CONFIG_FILE``). A message is
keyed by card id, as every label is (so a card's labels keep their order), and
:meth:`KafkaLabels.publish` waits for the broker's acknowledgement: it returns the partition and
offset, or raises :class:`DeliveryError` saying why not.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from confluent_kafka import Producer


class DeliveryError(RuntimeError):
    """The label message was not acknowledged by the broker."""


class LabelPublisher(Protocol):
    topic: str

    def publish(self, key: bytes, value: bytes) -> tuple[int, int]: ...


class KafkaLabels:
    def __init__(self, client: dict[str, str], topic: str, *, timeout: float = 30.0) -> None:
        self.topic = topic
        self._client = client
        self._timeout = timeout
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Make the producer now: settings the Kafka client refuses (a property it does not know,
        a value it cannot take) raise ``KafkaException`` at start, not at the first verdict."""
        with self._lock:
            self._make()

    def _make(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                self._client
                | {"client.id": "payscore-review", "enable.idempotence": "true", "acks": "all"}
            )
        return self._producer

    def publish(self, key: bytes, value: bytes) -> tuple[int, int]:
        outcome: dict[str, Any] = {}

        def delivered(error: Any, message: Any) -> None:
            outcome["error"], outcome["message"] = error, message

        with self._lock:  # a verdict at a time: rare, and each waits for its acknowledgement
            producer = self._make()
            producer.produce(self.topic, value=value, key=key, on_delivery=delivered)
            left = producer.flush(self._timeout)
        if outcome.get("error") is not None:
            raise DeliveryError(f"label for topic {self.topic!r} refused: {outcome['error']}")
        if left or "message" not in outcome:
            raise DeliveryError(
                f"label for topic {self.topic!r} not acknowledged within {self._timeout:.0f} s"
            )
        message = outcome["message"]
        return int(message.partition()), int(message.offset())

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self._timeout)
