"""The Kafka broker's CPU per message: to take a payment or label in, and to hand it to the flow.

    python benchmarks/bench_broker_cpu.py [--messages 200000] [--repeats 5]

The broker is shared and other developers' clients keep it busy, so every phase is measured
against the broker's own background just before it, over the same number of seconds:

1. **produce**: ``--messages`` messages of the payments' size (a generated payment's JSON,
   about 350 bytes, keyed by card) into a fresh topic of 4 partitions, with the project's
   producer settings (``linger.ms`` 20, idempotence on), as the bank's systems would send them;
2. **consume**: one consumer assigned every partition from the beginning, reading batches of up
   to 1,000 (``consume(1000, 0.001)``, as Bytewax's Kafka partition reader does), to the end.

Figure per phase: (broker CPU during the phase - broker CPU during the idle window before it) /
messages, in µs; ``/proc/<broker pid>/stat`` (10 ms ticks). Median and spread of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable, Iterable

import cpu_meter
import msgspec
import stream_items
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from settings.config import Config

PARTITIONS = 4


def broker_pid() -> int:
    import subprocess

    out = subprocess.run(["pgrep", "-f", r"kafka\.Kafka"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    if not pids:
        raise RuntimeError("no Kafka broker process (kafka.Kafka) found; expected the shared one")
    return min(pids)


def against_background(pid: int, work: Callable[[], None]) -> tuple[float, float]:
    """(broker CPU seconds during ``work``, broker CPU seconds in as long just before it)."""
    started = time.perf_counter()
    c0 = cpu_meter.pid_cpu(pid)
    work()
    seconds = time.perf_counter() - started
    busy = cpu_meter.pid_cpu(pid) - c0
    c0 = cpu_meter.pid_cpu(pid)
    time.sleep(seconds)
    idle = cpu_meter.pid_cpu(pid) - c0
    return busy, idle


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(list(argv) if argv is not None else None)
    config = Config.from_env(os.environ)
    client = config.kafka_client()
    admin = AdminClient(client)
    plain = stream_items.load_plain(60_000)["card"]
    payloads = [(json, msgspec.json.decode(json)["card_id"].encode()) for json, *_ in plain]
    pid = broker_pid()
    produce_us: list[float] = []
    consume_us: list[float] = []
    n = args.messages
    size = sum(len(p) for p, _ in payloads) / len(payloads)
    print(
        f"bench_broker_cpu: {n:,} messages of {size:.0f} B, {args.repeats} repeats; broker pid "
        f"{pid}; load average {os.getloadavg()[0]:.1f}"
    )
    for _ in range(args.repeats):
        topic = f"broker-cpu-{uuid.uuid4().hex[:8]}"
        for f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)]).values():
            f.result(timeout=60)
        try:
            producer = Producer(
                {**client, "linger.ms": 20, "enable.idempotence": True,
                 "queue.buffering.max.messages": 500_000}
            )  # fmt: skip

            def produce(producer: Producer = producer, topic: str = topic) -> None:
                for i in range(n):
                    value, key = payloads[i % len(payloads)]
                    while True:
                        try:
                            producer.produce(topic, value, key)
                            break
                        except BufferError:
                            producer.poll(0.01)
                    producer.poll(0)
                if producer.flush(120) != 0:
                    raise RuntimeError("messages left unsent after 120 s")

            busy, idle = against_background(pid, produce)
            produce_us.append((busy - idle) * 1e6 / n)

            def consume(topic: str = topic) -> None:
                consumer = Consumer(
                    {**client, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "enable.partition.eof": True}
                )  # fmt: skip
                consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in
                                 range(PARTITIONS)])  # fmt: skip
                ended: set[int] = set()
                read = 0
                while len(ended) < PARTITIONS:
                    for m in consumer.consume(1000, 0.001):
                        if m.error():
                            ended.add(m.partition())
                        else:
                            read += 1
                consumer.close()
                if read != n:
                    raise RuntimeError(f"read {read:,} messages; expected {n:,}")

            busy, idle = against_background(pid, consume)
            consume_us.append((busy - idle) * 1e6 / n)
        finally:
            for f in admin.delete_topics([topic]).values():
                f.result(timeout=60)
        print(f"  produce {produce_us[-1]:.2f} µs, consume {consume_us[-1]:.2f} µs per message")
    for name, values in (("produce", produce_us), ("consume", consume_us)):
        print(f"{name}: {cpu_meter.fmt_spread(cpu_meter.spread(values))} µs of broker CPU per "
              "message (less its background)")  # fmt: skip


if __name__ == "__main__":
    main()
