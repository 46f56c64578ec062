"""Sending records to Kafka and accounting for every one of them.

:func:`send` paces records with a :class:`~test_data.rate.TokenBucket`, waits out a full local
queue, and ends with a :class:`ProduceReport`: what was sent, and how many the broker
acknowledged, refused or never answered for. It takes any object with ``produce``, ``poll`` and
``flush`` (a ``confluent_kafka.Producer``, or a fake in tests), and connects to nothing itself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from tqdm import tqdm

from test_data.rate import TokenBucket

MAX_REPORTED_ERRORS = 20
# Kafka 4 brokers refuse records stamped more than this far ahead of their clock
# (log.message.timestamp.after.max.ms, default one hour).
BROKER_MAX_AHEAD_MS = 3_600_000
_AHEAD_HINT = (
    " (a record timestamp over an hour ahead of the broker's clock? "
    "try --timestamps now or an earlier --start)"
)


class Outgoing(NamedTuple):
    """One record to send."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None  # None: the producer's clock
    event: Literal["payment", "label"]


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` this module uses (a fake in tests)."""

    def produce(self, topic: str, value: Any = ..., key: Any = ..., **kwargs: Any) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...


@dataclass
class ProduceReport:
    """What a run sent and what came of it."""

    messages: int = 0
    payments: int = 0
    labels: int = 0
    bytes: int = 0
    seconds: float = 0.0  # from the first send to the last acknowledgement
    flush_seconds: float = 0.0  # of which waiting for acknowledgements after the last send
    delivered: int = 0
    failed: int = 0
    undelivered: int = 0  # still queued when flush gave up
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.undelivered == 0 and self.delivered == self.messages

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        mb = self.bytes / 1e6
        mb_s = mb / self.seconds if self.seconds > 0 else 0.0
        line = (
            f"produced {self.messages:,} messages ({self.payments:,} payments, "
            f"{self.labels:,} labels), {self.bytes:,} bytes ({mb:.1f} MB) in "
            f"{self.seconds:.2f} s (last {self.flush_seconds:.2f} s waiting for acks): "
            f"{self.rate:,.0f} msg/s, {mb_s:.1f} MB/s; "
            f"{self.delivered:,} acknowledged"
        )
        if self.failed or self.undelivered:
            line += f", {self.failed:,} failed, {self.undelivered:,} not delivered"
        return line


def send(
    records: Iterable[Outgoing],
    producer: ProducerLike,
    *,
    rate: float | None = None,
    total: int | None = None,
    progress: bool = True,
    flush_timeout: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProduceReport:
    """Send ``records`` through ``producer`` at ``rate`` messages/s (None: as fast as possible),
    wait for every acknowledgement, and report."""
    report = ProduceReport()

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            report.delivered += 1
            return
        report.failed += 1
        if len(report.errors) < MAX_REPORTED_ERRORS:
            hint = _AHEAD_HINT if "INVALID_RECORD" in repr(err) else ""
            report.errors.append(f"{msg.topic()} key={msg.key()!r}: {err}{hint}")

    bucket = TokenBucket(rate, clock=clock) if rate else None
    start = clock()
    with tqdm(
        total=total, unit="msg", unit_scale=True, disable=not progress, file=sys.stderr
    ) as bar:
        pending = 0
        for record in records:
            if bucket is not None:
                wait = bucket.take()
                if wait > 0.001:
                    sleep(wait)
            extra: dict[str, Any] = {}
            if record.timestamp_ms is not None:
                extra["timestamp"] = record.timestamp_ms
            while True:
                try:
                    producer.produce(
                        record.topic,
                        value=record.value,
                        key=record.key,
                        on_delivery=on_delivery,
                        **extra,
                    )
                    break
                except BufferError:  # local queue full: let the broker catch up
                    producer.poll(0.05)
                except Exception as exc:  # KafkaException: e.g. a message above message.max.bytes
                    report.failed += 1
                    if len(report.errors) < MAX_REPORTED_ERRORS:
                        report.errors.append(f"{record.topic} key={record.key!r}: {exc}")
                    break
            producer.poll(0)
            report.messages += 1
            report.payments += record.event == "payment"
            report.labels += record.event == "label"
            report.bytes += len(record.value or b"") + len(record.key or b"")
            pending += 1
            if pending == 1000:
                bar.update(pending)
                pending = 0
        bar.update(pending)
    flushing = clock()
    report.undelivered = producer.flush(flush_timeout)
    report.seconds = clock() - start
    report.flush_seconds = clock() - flushing
    return report


def check_topics(producer: Any, topics: Sequence[str], brokers: str, timeout: float = 15.0) -> str:
    """An error message if the broker cannot be reached or a topic is missing; else ''."""
    try:
        metadata = producer.list_topics(timeout=timeout)
    except Exception as exc:  # KafkaException: broker unreachable
        return f"cannot reach Kafka at {brokers} within {timeout:.0f} s: {exc}"
    missing = [t for t in topics if t not in metadata.topics or metadata.topics[t].error]
    if missing:
        return (
            f"topic(s) {', '.join(repr(t) for t in missing)} do not exist on {brokers} and the "
            "broker does not create topics: run `bash ops/services.sh up`, create them, or "
            "name others with --payments-topic/--labels-topic"
        )
    return ""
