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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaException

log = logging.getLogger(__name__)

CHECK_SECONDS = 30.0
ANSWER_SECONDS = 5.0


class PartitionsGrewError(RuntimeError):
    """A topic the flow reads has more partitions than when the flow started."""


class PartitionWatch:
    """Checks, at most every ``every`` seconds, that ``topic`` still has ``count`` partitions
    (``None``: the count of the first answer without an error); ``list_topics`` is a Kafka
    client's (``confluent_kafka.Consumer.list_topics``). An answer with an error (the topic
    unknown or leaderless for a moment: no partitions in it) is not a count."""

    def __init__(
        self,
        list_topics: Callable[..., object],
        topic: str,
        count: int | None,
        every: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_topics = list_topics
        self._topic = topic
        self._count = count
        self._every = every
        self._clock = clock
        self._due = clock() + every

    def check(self) -> None:
        now = self._clock()
        if now < self._due:
            return
        self._due = now + self._every
        try:
            found = self._list_topics(self._topic, timeout=ANSWER_SECONDS).topics[self._topic]  # type: ignore[attr-defined]
        except (KafkaException, KeyError) as exc:
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
            raise PartitionsGrewError(
                f"Kafka topic {self._topic!r} has {count} partitions now, {self._count} when the "
                f"flow started: the {count - self._count} new ones are not read until the flow "
                "starts again; it stops so that its supervisor starts it (FLOW_SUPERVISE=1, "
                "systemd), and it then reads them from their beginning"
            )
