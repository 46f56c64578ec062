"""Write traffic into Kafka: a simulated stream or the messages of JSON Lines files, at a set rate.

    python -m test_data.produce --simulate --days 1 --cards 10000 --rate 2000
    python -m test_data.produce --file test_data/samples/payments.jsonl \\
        --file test_data/samples/labels.jsonl

Payments go to the payments topic and labels to the labels topic (``PAYSCORE_PAYMENTS_TOPIC``,
``PAYSCORE_LABELS_TOPIC``, or ``--payments-topic``/``--labels-topic``), both keyed by card id,
so one card's messages keep their order within a partition. A record's timestamp is the
payment's event time or the label's report time (``--timestamps now`` leaves it to the
producer's clock; a file's malformed messages always get that). Files are sent byte for byte, in
file order. Messages are paced by a token bucket at ``--rate`` messages per second, or sent as
fast as the broker takes them. A progress bar runs on stderr and a summary line ends the run.

The producer is idempotent (no duplicates from its own retries). Exit status: 0 when every
message was acknowledged, 1 when some were not (each error is reported), 2 when it could not
start (bad options, broker unreachable, topic missing).

Mind the broker's clock. A Kafka 4 broker refuses records stamped more than an hour ahead of it
(``log.message.timestamp.after.max.ms``), so a simulation whose payments or labels lie in the
future is refused before anything is sent. And with time-based retention (Kafka's default,
7 days) it deletes a segment, the active one included, once the segment's newest record
timestamp is older than ``retention.ms``: a history replayed with timestamps from months ago is
gone at the next retention check (every 5 minutes) unless a flow has read it by then. The local
broker keeps data by size (``ops/kafka/server.properties``); elsewhere use topics with
``retention.ms=-1`` or ``--timestamps now`` for replays that must wait for their reader.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from features.contract import FraudLabel, Payment
from settings.config import Config
from test_data.cli import add_spec_arguments, spec_from_arguments
from test_data.delivery import (
    BROKER_MAX_AHEAD_MS,
    Outgoing,
    ProduceReport,
    check_topics,
    send,
)
from test_data.generator import simulate
from test_data.samples import SampleMessage, iter_samples

__all__ = [
    "Outgoing",
    "ProduceReport",
    "from_samples",
    "from_simulation",
    "main",
    "record_timestamp",
    "send",
]

Timestamps = Literal["event", "now"]
_PRODUCER_SETTINGS: dict[str, Any] = {
    "client.id": "payscore-produce",
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
}


# -- sources ---------------------------------------------------------------------------------


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def from_simulation(
    events: Iterable[Payment | FraudLabel],
    payments_topic: str,
    labels_topic: str,
    timestamps: Timestamps = "event",
) -> Iterator[Outgoing]:
    """Records for generated events, in the order given."""
    encode = msgspec.json.Encoder().encode
    for event in events:
        key = event.card_id.encode()
        if isinstance(event, Payment):
            at = _ms(event.event_time) if timestamps == "event" else None
            yield Outgoing(payments_topic, key, encode(event), at, "payment")
        else:
            at = _ms(event.reported_at) if timestamps == "event" else None
            yield Outgoing(labels_topic, key, encode(event), at, "label")


class _Times(msgspec.Struct):
    event_time: datetime | None = None
    reported_at: datetime | None = None


_times = msgspec.json.Decoder(_Times)


def record_timestamp(message: SampleMessage) -> int | None:
    """The event time (payment) or report time (label) of a valid message, in ms; else None."""
    if message.kind != "valid" or message.value is None:
        return None
    try:
        times = _times.decode(message.value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    when = times.event_time if message.event == "payment" else times.reported_at
    if when is None or when.tzinfo is None:
        return None
    ms = _ms(when)
    return ms if ms > 0 else None


def from_samples(
    messages: Iterable[SampleMessage],
    payments_topic: str,
    labels_topic: str,
    timestamps: Timestamps = "event",
) -> Iterator[Outgoing]:
    """Records for the messages of envelope files, byte for byte."""
    for m in messages:
        topic = payments_topic if m.event == "payment" else labels_topic
        at = record_timestamp(m) if timestamps == "event" else None
        yield Outgoing(topic, m.key_bytes, m.value, at, m.event)


# -- sending ---------------------------------------------------------------------------------


# -- command line ----------------------------------------------------------------------------


def _count_lines(paths: Sequence[str]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            total += sum(1 for line in f if line.strip())
    return total


def messages_held(client: dict[str, str], topic: str) -> int:
    """How many messages ``topic`` holds (high minus low watermark, summed over partitions);
    ``client`` is the librdkafka configuration (``Config.kafka_client()``)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client, "group.id": "payscore-produce-check"})
    try:
        partitions = consumer.list_topics(topic, timeout=15).topics[topic].partitions
        total = 0
        for index in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, index), timeout=15)
            total += high - low
        return total
    finally:
        consumer.close()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m test_data.produce",
        description="Write payments and fraud labels into Kafka at a target rate.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--simulate", action="store_true", help="generate the stream (see below)")
    source.add_argument(
        "--file",
        action="append",
        metavar="PATH",
        help="a JSON Lines envelope file (samples, history); repeat to send several in turn",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="messages per second (default: as fast as possible)",
    )
    parser.add_argument("--limit", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--no-labels", action="store_true", help="send payments only")
    parser.add_argument("--payments-topic", help="default: PAYSCORE_PAYMENTS_TOPIC or 'payments'")
    parser.add_argument("--labels-topic", help="default: PAYSCORE_LABELS_TOPIC or 'fraud-labels'")
    parser.add_argument(
        "--timestamps",
        choices=["event", "now"],
        default="event",
        help="record timestamps: event/report time (default) or the producer's clock",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--if-empty",
        action="store_true",
        help="send nothing if a target topic already holds messages (makes a set-up re-runnable)",
    )
    parser.add_argument(
        "-X",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka producer setting, e.g. -X message.max.bytes=3000000",
    )
    add_spec_arguments(parser)
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
    make_producer: Callable[[dict[str, Any]], Any] | None = None,
) -> int:
    """Run the command; returns the exit status."""
    args = parse_arguments(argv)
    try:
        config = Config.from_env(os.environ if environ is None else environ)
        spec = spec_from_arguments(args) if args.simulate else None
        settings = dict(s.split("=", 1) for s in args.settings)
    except ValueError as exc:
        print(f"produce: {exc}", file=sys.stderr)
        return 2
    payments_topic = args.payments_topic or config.payments_topic
    labels_topic = args.labels_topic or config.labels_topic

    if make_producer is None:
        from confluent_kafka import Producer

        make_producer = Producer
    producer = make_producer(config.kafka_client(**(_PRODUCER_SETTINGS | settings)))
    topics = [payments_topic] if args.no_labels else [payments_topic, labels_topic]
    problem = check_topics(producer, sorted(set(topics)), config.kafka_brokers)
    if problem:
        print(f"produce: {problem}", file=sys.stderr)
        return 2
    if args.if_empty:
        if args.file:  # only the topics this file's messages go to
            kinds = {m.event for path in args.file for m in iter_samples(path)}
            topics = [payments_topic if kind == "payment" else labels_topic for kind in kinds]
        held = {t: messages_held(config.kafka_client(), t) for t in sorted(set(topics))}
        if any(held.values()):
            print(f"produce: topics already hold messages {held}; sending nothing (--if-empty)")
            return 0

    timestamps: Timestamps = args.timestamps
    if spec is not None:
        started = time.perf_counter()
        sim = simulate(spec)
        print(
            f"produce: simulated {sim.n_payments:,} payments ({sim.n_fraud:,} fraudulent) and "
            f"{sim.n_labels:,} labels in {time.perf_counter() - started:.2f} s",
            file=sys.stderr,
        )
        last_ms = int(sim.table.at_ms.max(initial=0))
        if not args.no_labels:
            last_ms = max(last_ms, int(sim.label_table.reported_ms.max(initial=0)))
        if timestamps == "event" and last_ms > now_ms() + BROKER_MAX_AHEAD_MS:
            print(
                f"produce: the stream's record timestamps run to "
                f"{datetime.fromtimestamp(last_ms / 1000, UTC):%Y-%m-%d %H:%M} UTC, and the broker "
                "refuses records over an hour ahead of its clock: choose an earlier --start, "
                "fewer --days, --label-horizon-days, --no-labels, or --timestamps now",
                file=sys.stderr,
            )
            return 2
        records = from_simulation(sim.stream, payments_topic, labels_topic, timestamps)
        total = sim.n_payments + (0 if args.no_labels else sim.n_labels)
    else:
        try:
            total = _count_lines(args.file)
        except OSError as exc:
            print(f"produce: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 2
        messages = itertools.chain.from_iterable(iter_samples(p) for p in args.file)
        records = from_samples(messages, payments_topic, labels_topic, timestamps)
    if args.no_labels:
        records = (r for r in records if r.event == "payment")
    if args.limit is not None:
        records = itertools.islice(records, args.limit)
        total = min(total, args.limit)

    try:
        report = send(records, producer, rate=args.rate, total=total, progress=not args.no_progress)
    except ValueError as exc:  # a line of a file that is not an envelope
        producer.flush(30)
        print(f"produce: stopped: {exc}", file=sys.stderr)
        return 2
    for error in report.errors:
        print(f"produce: delivery failed: {error}", file=sys.stderr)
    if report.failed > len(report.errors):
        print(f"produce: ... and {report.failed - len(report.errors)} more", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
