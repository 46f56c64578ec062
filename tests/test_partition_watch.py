"""The partition watch's logic, with a fake client and clock (``dataflows/partition_watch.py``);
on the real broker and flow in ``tests/test_partition_watch_integration.py``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from dataflows.partition_watch import PartitionsGrewError, PartitionWatch


def inline(question: Callable[[], None]) -> None:
    """A watch's question asked on the caller's thread, so that a check sees its answer."""
    question()


class Broker:
    def __init__(self, count: int) -> None:
        self.count, self.asked, self.fails = count, 0, False

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        self.asked += 1
        if self.fails:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        found = SimpleNamespace(error=None, partitions=dict.fromkeys(range(self.count)))
        return SimpleNamespace(topics={topic: found})


def test_the_watch_asks_at_most_every_interval_and_stops_the_flow_once_partitions_grew() -> None:
    broker, now = Broker(4), [0.0]
    watch = PartitionWatch(
        broker.list_topics, "payments", 4, every=30, clock=lambda: now[0], run=inline
    )
    watch.check()
    assert broker.asked == 0  # not due yet
    now[0] = 31
    watch.check()
    assert broker.asked == 1
    broker.fails = True  # a broker that does not answer: asked again later, nothing stops
    now[0] = 62
    watch.check()
    broker.fails, broker.count = False, 8
    now[0] = 70
    watch.check()  # not due
    now[0] = 93
    with pytest.raises(PartitionsGrewError, match=r"'payments' has 8 partitions now, 4 when"):
        watch.check()


class Answers:
    """A Kafka client whose metadata answers are given in turn (the last one repeats)."""

    def __init__(self, *answers: SimpleNamespace) -> None:
        self.answers = list(answers)

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return SimpleNamespace(topics={topic: answer})

    def consume(self, count: int, timeout: float) -> list:
        return []


def partitions(count: int) -> SimpleNamespace:
    return SimpleNamespace(error=None, partitions=dict.fromkeys(range(count)))


# What confluent-kafka answers for a topic unknown or leaderless for a moment: no partitions.
ERRORED = SimpleNamespace(error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), partitions={})


def built_watch(
    monkeypatch: pytest.MonkeyPatch, listed: SimpleNamespace, asked: Answers
) -> PartitionWatch:
    """The watch of partition 0 of ``payments`` as FlowKafkaSource builds it, after list_parts
    found ``listed``; ``asked`` answers the watch's own client, never the reader's consumer."""
    import threading

    from bytewax.connectors.kafka import KafkaSource

    from dataflows import sources

    clients = iter([Answers(listed), asked])  # list_parts' client, then the watch's
    monkeypatch.setattr(sources, "AdminClient", lambda config: next(clients))
    monkeypatch.setattr(sources.thread_states, "pin", lambda: True)
    inner = SimpleNamespace(_consumer=Answers(ERRORED))  # the reader's: never asked
    monkeypatch.setattr(KafkaSource, "build_part", lambda self, step, part, resume: inner)
    source = sources.FlowKafkaSource(["kafka:9092"], ["payments"], stop=threading.Event())
    assert source.list_parts() == [f"{i}-payments" for i in listed.partitions]
    watch = source.build_part("payments_in", "0-payments", None)._watch
    assert watch is not None
    watch._due = 0.0  # due now
    watch._run = inline
    return watch


def test_an_errored_metadata_answer_at_build_is_no_baseline_of_0_and_stops_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The answer at build carried a topic error (0 partitions); the healthy answers after it
    # say 2, as list_parts found. It was taken as the baseline 0: a false stop at the check.
    watch = built_watch(monkeypatch, partitions(2), Answers(ERRORED, partitions(2)))
    watch.check()
    watch._due = 0.0
    watch.check()


def test_a_partition_added_between_listing_and_building_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Bytewax reads the 2 partitions list_parts found; the third came before partition 0 was
    # built. It was the baseline: never caught, and partition 2 never read until a restart.
    watch = built_watch(monkeypatch, partitions(2), Answers(partitions(3)))
    with pytest.raises(PartitionsGrewError, match=r"'payments' has 3 partitions now, 2 when"):
        watch.check()


def test_a_watch_without_a_baseline_takes_the_first_answer_without_an_error() -> None:
    now = [0.0]
    answers = Answers(ERRORED, partitions(2), partitions(2), partitions(3))
    watch = PartitionWatch(
        answers.list_topics, "payments", None, every=30, clock=lambda: now[0], run=inline
    )
    for step in range(1, 4):  # errored (no count), 2 (the baseline), 2
        now[0] = 31.0 * step
        watch.check()
    now[0] = 31.0 * 4
    with pytest.raises(PartitionsGrewError, match=r"has 3 partitions now, 2 when"):
        watch.check()


def test_a_broker_slow_to_answer_never_holds_the_reader() -> None:
    """The question runs on a thread of its own: check() returns at once while the broker takes
    its time (it held every payment of the reader's worker for up to 362 ms each 30 s), the
    count that grew stops the flow at the first check after the answer, and close() waits for
    the question in flight."""
    answered, asked = threading.Event(), threading.Event()
    now = [0.0]

    class SlowBroker(Broker):
        def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
            asked.set()
            assert answered.wait(10)
            return super().list_topics(topic, timeout)

    broker = SlowBroker(8)
    watch = PartitionWatch(broker.list_topics, "payments", 4, every=30, clock=lambda: now[0])
    now[0] = 31
    watch.check()  # asks, and returns without the answer
    assert asked.wait(10)
    now[0] = 62
    watch.check()  # due again, but one question is in flight: no second one
    assert broker.asked == 0  # the first question has not come back yet
    answered.set()
    watch.close()  # waits for it
    assert broker.asked == 1
    with pytest.raises(PartitionsGrewError, match=r"'payments' has 8 partitions now, 4 when"):
        watch.check()
