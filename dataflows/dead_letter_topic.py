"""Dead letters out: every one to the ``dead_letters`` table and to the dead-letter topic.

Every dead letter, whoever makes it (the decoders, the card step, the payments sink for a row
MySQL refused or a transaction id reused), is a ``dead_letters`` row (:mod:`storage.rows`) and
goes to both places: :class:`DeadLetterSink` for the letters that flow as a stream, and the
payments sink (``Writing.letters_out``) for its own, each through a :class:`DeadLetterTopic`.

**The topic.** A letter is a message keyed ``topic/partition/offset`` (the same for every
replay of one message, so a consumer drops repeats: the topic is at-least-once) whose value is
the original value and whose headers say why and where from (:func:`to_kafka`). Bytewax's own
``KafkaSink`` never looks at delivery reports, so a letter the broker refused was lost without
a word; here every delivery is checked. A letter the topic refuses for its size (larger than
its ``max.message.bytes``, whatever ``PAYSCORE_DEAD_LETTER_MAX_BYTES`` says) goes again
without its key and value (sizes in headers), then with its position alone. Any other failure
(no such topic, no right to write it, the broker unreachable past librdkafka's
``message.timeout.ms``) raises :class:`DeadLetterTopicError`: the flow stops, and the letter
is in MySQL already and is published again on the replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Producer

from features.bounded import TEXT_CHARS, bounded
from storage.sink import MySQLSink, MySQLSinkPartition
from storage.tables import dead_letters

log = logging.getLogger(__name__)
Row = Mapping[str, Any]
Headers = list[tuple[str, bytes]]
Message = tuple[bytes, bytes | None, Headers]  # key, value, headers
# The broker (or the client) refuses the message for its size.
TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
SMALL_ERROR_CHARS = 200  # the reason in a letter that the topic refused at full size


class DeadLetterTopicError(RuntimeError):
    """Dead letters could not be published, for another reason than their size."""


def dead_letter_key(row: Row) -> bytes:
    """``topic/partition/offset``: the same for every replay of one message."""
    return f"{row['topic']}/{row['kafka_partition']}/{row['kafka_offset']}".encode()


def _where(row: Row) -> Headers:
    return [
        ("source_topic", str(row["topic"]).encode()),
        ("source_partition", str(row["kafka_partition"]).encode()),
        ("source_offset", str(row["kafka_offset"]).encode()),
    ]


def to_kafka(row: Row, max_bytes: int) -> Message:
    """The dead letter as a message for the dead-letter topic, keyed by where it was read.

    The original key and value travel whole when they fit in ``max_bytes`` together; otherwise
    the value is cut to what fits and the header ``truncated`` gives its original size (the
    whole bytes are in MySQL's ``dead_letters``). Headers say why (``error``, bounded to a
    sixteenth of ``max_bytes`` in characters) and where from."""
    key, value = row["message_key"], row["raw_value"]
    error = bounded(row["error"], max(64, min(TEXT_CHARS, max_bytes // 16)))
    headers = [("error", error.encode()), *_where(row)]
    room = max(max_bytes - sum(len(n) + len(v) for n, v in headers) - 64, 0)
    if key is not None and len(key) > room // 2:
        headers.append(("source_key_truncated", str(len(key)).encode()))
        key = key[: room // 2]
    if key is not None:
        headers.append(("source_key", bytes(key)))
        room -= len(key)
    if value is not None and len(value) > room:
        headers.append(("truncated", str(len(value)).encode()))
        value = value[:room]
    return dead_letter_key(row), bytes(value) if value is not None else None, headers


def _without_bytes(row: Row, _: int) -> Message:
    sizes = [
        (f"{name}_bytes", str(len(row[column])).encode())
        for name, column in (("key", "message_key"), ("value", "raw_value"))
        if row[column] is not None
    ]
    cut = b"key and value left out: the topic refused the letter as too large (see MySQL)"
    error = bounded(row["error"], SMALL_ERROR_CHARS).encode()
    return dead_letter_key(row), None, [("error", error), *_where(row), *sizes, ("cut", cut)]


def _position_only(row: Row, _: int) -> Message:
    cut = b"only the position: the topic refused every larger form (see MySQL)"
    return dead_letter_key(row), None, [*_where(row), ("cut", cut)]


FORMS: tuple[Callable[[Row, int], Message], ...] = (to_kafka, _without_bytes, _position_only)


class DeadLetterTopic:
    """One worker's publisher of dead-letter rows (see the module docstring)."""

    def __init__(self, kafka: Mapping[str, str], topic: str, max_bytes: int) -> None:
        self._topic = topic
        self._max_bytes = max_bytes
        self._producer = Producer(
            {
                **kafka,
                "linger.ms": "5",
                # The client's own bound: room for the letter and its headers.
                "message.max.bytes": str(max(1_000_000, max_bytes + 100_000)),
            }
        )

    def publish(self, rows: Sequence[Row]) -> None:
        """Every row on the topic, each in the largest form it takes; waits for the broker."""
        pending = list(rows)
        for form in FORMS:
            if not pending:
                return
            failed = self._send([(row, form(row, self._max_bytes)) for row in pending])
            other = [(row, error) for row, error in failed if error.code() not in TOO_LARGE]
            if other:
                row, error = other[0]
                raise DeadLetterTopicError(
                    bounded(
                        f"{len(other)} dead letters not published to Kafka topic "
                        f"{self._topic!r} (the first: {dead_letter_key(row).decode()}): "
                        f"{error.str()}; they are stored in MySQL's dead_letters"
                    )
                )
            pending = [row for row, _ in failed]
            if pending:
                log.warning(
                    "%d dead letters too large for Kafka topic %r (the first: %s); sent again "
                    "smaller",
                    len(pending),
                    self._topic,
                    dead_letter_key(pending[0]).decode(),
                    extra={"event": "dead_letter", "reason": "too large for the topic"},
                )
        if pending:
            raise DeadLetterTopicError(
                f"Kafka topic {self._topic!r} refuses even a dead letter's position as too "
                f"large ({dead_letter_key(pending[0]).decode()}); raise its max.message.bytes"
            )

    def _send(self, messages: list[tuple[Row, Message]]) -> list[tuple[Row, KafkaError]]:
        """Produce and wait; the messages that failed, with why."""
        errors: dict[int, KafkaError] = {}
        producer = self._producer
        for index, (_, (key, value, headers)) in enumerate(messages):

            def report(error: KafkaError | None, _: object, index: int = index) -> None:
                if error is not None:
                    errors[index] = error

            while True:
                try:
                    producer.produce(
                        self._topic, value=value, key=key, headers=headers, on_delivery=report
                    )
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(0.5)
                except KafkaException as exc:  # refused at once (e.g. larger than the client's)
                    errors[index] = exc.args[0]
                    break
            producer.poll(0)
        while producer.flush(10.0):
            pass  # librdkafka reports every message by message.timeout.ms at the latest
        return [(messages[i][0], error) for i, error in sorted(errors.items())]

    def close(self) -> None:
        self._producer.flush(30.0)


class _DeadLetterPartition(StatelessSinkPartition[Row]):
    def __init__(self, table: MySQLSinkPartition, topic: DeadLetterTopic) -> None:
        self._table = table
        self._topic = topic

    def write_batch(self, items: list[Row]) -> None:
        self._table.write_batch(items)  # first: MySQL holds every letter whole, or as it can
        self._topic.publish(items)

    def close(self) -> None:
        self._topic.close()
        self._table.close()


class DeadLetterSink(DynamicSink[Row]):
    """Dead-letter rows to the ``dead_letters`` table (first write wins, never refused for their
    content) and then to the dead-letter topic. At-least-once: a replay stores nothing new and
    publishes the letters again, under the same keys."""

    def __init__(
        self,
        url: str,
        kafka: Mapping[str, str],
        topic: str,
        max_bytes: int,
        *,
        patience: float,
        on_retry: Callable[[], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._table = MySQLSink.for_dead_letters(
            url, dead_letters, patience=patience, on_retry=on_retry, on_failure=on_failure
        )
        self._kafka = dict(kafka)
        self._topic = topic
        self._max_bytes = max_bytes

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        return _DeadLetterPartition(
            self._table.build(step_id, worker_index, worker_count), self.topic()
        )

    def topic(self) -> DeadLetterTopic:
        """A publisher to the dead-letter topic (one per worker; the payments sink's too)."""
        return DeadLetterTopic(self._kafka, self._topic, self._max_bytes)
