"""Partitions added to a topic while the flow runs stop it, so that a restart reads them.

Bytewax lists a topic's partitions once, as the flow starts. Partitions added later (an
operator scaling the topic with ``kafka-topics --alter --partitions``) were never read: the
producers wrote payments and labels into them at once, and the flow went on without them, and
without a word, until some restart. So the reader of each topic's partition 0 asks the broker
for the topic's partition count every ``CHECK_SECONDS`` and, once it grew, stops the process
with :class:`PartitionsGrewError`, naming the topic and both counts: a supervised flow
(``FLOW_SUPERVISE=1``, systemd) starts again and reads every partition, the new ones from their
beginning (nothing was lost: the messages wait in them). A broker that does not answer the
check is asked again at the next one; it never stops the flow.

**The question is asked off the worker thread.** The reader that owns the watch shares its
worker thread with every other partition and step of that worker, and a metadata request waits
for the broker: 70 to 362 ms a question in a tailing flow at 1,220 payments/s, growing through
the run (``bench_throughput.py --call-trace``, README *The partition watch held every payment
of its worker*), which held every payment of that worker each 30 s and set the flow's p99.
:meth:`PartitionWatch.check` only starts the question on a thread of its own, at most one at a
time, and raises at the first check after an answer said the count grew; the question goes
through a client of its own (``dataflows/sources.py``), as one through the reader's consumer
held that consumer's reads until the broker answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException

log = logging.getLogger(__name__)

CHECK_SECONDS = 30.0
ANSWER_SECONDS = 5.0


class PartitionsGrewError(RuntimeError):
    """A topic the flow reads has more partitions than when the flow started."""


def in_background(question: Callable[[], None]) -> threading.Thread:
    """``question`` run on a daemon thread of its own, started now."""
    thread = threading.Thread(target=question, name="payscore-partition-watch", daemon=True)
    thread.start()
    return thread


class PartitionWatch:
    """Checks, at most every ``every`` seconds, that ``topic`` still has ``count`` partitions
    (``None``: the count of the first answer without an error); ``list_topics`` is a Kafka
    client's (``confluent_kafka.admin.AdminClient.list_topics``). An answer with an error (the topic
    unknown or leaderless for a moment: no partitions in it) is not a count. ``run`` starts a
    question (:func:`in_background`; the tests run it in line) and returns its thread, or
    None when it has already run."""

    def __init__(
        self,
        list_topics: Callable[..., object],
        topic: str,
        count: int | None,
        every: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        run: Callable[[Callable[[], None]], threading.Thread | None] = in_background,
    ) -> None:
        self._list_topics = list_topics
        self._topic = topic
        self._count = count
        self._every = every
        self._clock = clock
        self._due = clock() + every
        self._run = run
        self._asking: threading.Thread | None = None  # the question in flight
        self._grew: PartitionsGrewError | None = None  # what the last answer found

    def check(self) -> None:
        """On the reader's thread: raise if an answer found more partitions; start the next
        question when it is due and none is in flight. Never waits for the broker."""
        if self._grew is None:
            now = self._clock()
            asking = self._asking
            if now >= self._due and (asking is None or not asking.is_alive()):
                self._due = now + self._every
                self._asking = self._run(self._ask)
        if self._grew is not None:
            raise self._grew

    def close(self) -> None:
        """Wait for a question in flight (at most its answer's timeout), so that none outlives
        the reader that owns the watch."""
        asking = self._asking
        if asking is not None:
            asking.join(ANSWER_SECONDS + 1)

    def _ask(self) -> None:
        try:
            found = self._list_topics(self._topic, timeout=ANSWER_SECONDS).topics[self._topic]  # type: ignore[attr-defined]
        except (KafkaException, KeyError, RuntimeError) as exc:  # RuntimeError: client closed
            log.warning("partitions of %s not checked: %s", self._topic, exc)
            return
        if found.error is not None:
            log.warning("partitions of %s not checked: %s", self._topic, found.error)
            return
        count = len(found.partitions)
        if self._count is None:
            self._count = count
            return
        if count > self._count:
            self._grew = PartitionsGrewError(
                f"Kafka topic {self._topic!r} has {count} partitions now, {self._count} when the "
                f"flow started: the {count - self._count} new ones are not read until the flow "
                "starts again; it stops so that its supervisor starts it (FLOW_SUPERVISE=1, "
                "systemd), and it then reads them from their beginning"
            )
