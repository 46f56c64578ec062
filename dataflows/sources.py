"""The flow's Kafka inputs: Bytewax's Kafka source, made to stop gracefully and, for labels in a
drain run, to end only when every label read is accounted for.

Each Kafka partition is read by Bytewax's own partition reader (offsets resume from the recovery
snapshot). This module wraps it in two ways:

**Stop.** Once the stop event is set (:mod:`dataflows.stopping`) a partition reports its end
before reading more, so the flow drains what it holds and exits.

**Drain (``PAYSCORE_TAIL=false``), labels only.** Bytewax calls no timer after the end of an
input, so a label whose payment was not stored yet when its topic ended would be given up,
although the payment may be scored a moment later in the same run. So at the end of its
partition a label reader does not end: it waits, checking MySQL every ``poll_seconds``, until
every label it read in this run has its row in ``fraud_labels`` (or is a dead letter) and none
of its partition's labels is ``waiting`` any more (claimed, or rejected as ``not_found`` once
``PAYSCORE_LABEL_WAIT_SECONDS`` passed). A bound (``give_up_seconds``) keeps a broken database
from holding the run forever: at the end of input a label that has waited its full time is
rejected; any other stays waiting for the next run.

**Headers that cannot be read.** Bytewax's reader reads every message's headers; one whose
header names are not UTF-8 made the client raise, and stopped the flow at every restart. Each
reader's consumer is wrapped so that such a message goes on with a header that says so
(:mod:`dataflows.readable_headers`).

**Partitions added while it runs** stop the flow, for a restart to read them
(:mod:`dataflows.partition_watch`).

**Messages deleted unread.** A reader resumed from a recovery snapshot whose next offset the
broker deleted already (the topic's retention passed while the flow was down) goes on from the
oldest message left, and logs at ERROR (event ``deleted_unread``) which offsets were lost: the
consumer's ``auto.offset.reset`` was librdkafka's default, ``latest``, and every message still
in the partition was skipped without a word. One resumed *past* the partition's end (the topic
re-created or truncated since the snapshot) refuses the start: librdkafka would read the
partition again from its beginning, as new.

**Epochs on a shared grid.** Given an :class:`~dataflows.epochs.EpochGrid`, a reader closes its
epochs on the grid's boundaries, as every other process's readers do, so that no process waits
for another at each epoch's close (:mod:`dataflows.epochs`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import func, select

from dataflows import thread_states
from dataflows.busy_reads import BusyReads
from dataflows.epochs import EpochGrid
from dataflows.metrics import EPOCH_CLOSE_OFF_GRID, EPOCH_CLOSE_WAIT, EPOCHS_CLOSED
from dataflows.partition_watch import PartitionWatch
from dataflows.readable_headers import ReadableHeaders
from dataflows.topic_configs import kafka_error_text
from features.bounded import bounded
from storage.engine import retry_transient, shared_engine
from storage.tables import dead_letters, fraud_labels

log = logging.getLogger(__name__)

# (topic, partition, lowest and highest offset read, messages read) -> all accounted for?
DrainCheck = Callable[[str, int, int, int, int], bool]


class _Reader(StatefulSourcePartition):
    def __init__(
        self,
        inner: StatefulSourcePartition,
        topic: str,
        partition: int,
        stop: threading.Event,
        drained: DrainCheck | None,
        poll_seconds: float,
        give_up_seconds: float,
        grid: EpochGrid | None = None,
        watch: PartitionWatch | None = None,
    ) -> None:
        self._inner = inner
        self._watch = watch
        self._topic = topic
        self._partition = partition
        self._stop = stop
        self._drained = drained
        self._poll = poll_seconds
        self._give_up = give_up_seconds
        self._low: int | None = None
        self._high = -1
        self._read = 0
        self._ended_at: float | None = None  # wall time the partition's end was reached
        self._awake: datetime | None = None
        self._grid = grid
        self._began = time.time()  # when this epoch began (Bytewax: when built, or last closed)
        self._closed = EPOCHS_CLOSED.labels(topic, str(partition)).inc
        self._waited = EPOCH_CLOSE_WAIT.labels(topic).observe
        self._off_grid = EPOCH_CLOSE_OFF_GRID.labels(topic).observe
        self._closed_at: float | None = None  # the last epoch close not followed by a read
        self._closes = 0  # epochs this partition closed since it was built (or resumed)
        self._last_read: float | None = None  # the last read; None after a close or a hold
        self._gaps: deque[float] = deque(maxlen=32)  # between reads: how busy the worker is

    def next_batch(self) -> list:
        now = time.time()
        if self._closed_at is not None:
            self._waited(now - self._closed_at)
            self._closed_at = None
        elif self._last_read is not None:
            self._gaps.append(now - self._last_read)
        self._last_read = now
        if self._stop.is_set():
            raise StopIteration
        if self._ended_at is not None:
            return self._wait_for_labels()
        if self._watch is not None:
            self._watch.check()
        try:
            batch = self._inner.next_batch()
        except StopIteration:
            if self._drained is None:
                raise
            self._ended_at = time.monotonic()
            return []
        if self._drained is not None:  # only a drain run's labels need what was read
            for message in batch:
                offset = getattr(message, "offset", None)
                if offset is not None:
                    self._low = offset if self._low is None else min(self._low, offset)
                    self._high = max(self._high, offset)
                    self._read += 1
        return batch

    def _wait_for_labels(self) -> list:
        assert self._drained is not None and self._ended_at is not None
        low = self._low if self._low is not None else 0
        if self._drained(self._topic, self._partition, low, self._high, self._read):
            raise StopIteration
        if time.monotonic() - self._ended_at > self._give_up:
            log.warning(
                "labels of %s[%d] still unresolved %.0f s after the end of the topic; ending "
                "the input anyway (labels that waited their full time are rejected as not_found)",
                self._topic,
                self._partition,
                self._give_up,
            )
            raise StopIteration
        self._awake = datetime.now(UTC) + timedelta(seconds=self._poll)
        return []

    def next_awake(self) -> datetime | None:
        """When Bytewax should call :meth:`next_batch` again (None: at once). With a grid, a
        hold to its boundary; asking one also ends the current run of gaps between reads (the
        time held is no gap of a busy worker)."""
        if self._ended_at is not None:
            return self._awake
        if self._grid is None:
            return None
        until = self._grid.hold_until(
            self._began, time.time(), max(self._gaps, default=0.0), first=not self._closes
        )
        if until is None:
            return None
        self._last_read = None
        return datetime.fromtimestamp(until, UTC)

    def snapshot(self) -> object:
        """Called by Bytewax as the partition closes an epoch (and at its end). ``_began`` is
        a little later than Bytewax's own start of the next epoch (the time its activation
        began): by the work done earlier in that activation, a few milliseconds."""
        self._began = self._closed_at = time.time()
        self._closes += 1
        self._closed()
        if self._grid is not None and self._ended_at is None and not self._stop.is_set():
            self._off_grid(abs(self._grid.off_grid(self._began)))  # not the end's snapshot
        return self._inner.snapshot()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()  # no question of it outlives the reader
        self._inner.close()


LIST_TIMEOUT_SECONDS = 30.0


class FlowKafkaSource(KafkaSource):
    """Bytewax's :class:`KafkaSource` with a graceful stop, (labels) a drain wait and (with
    ``grid``) epochs closed on a shared grid; finding the partitions gives up after 30 s with a
    clear error (Bytewax's own waits forever, for example on a wrong SASL password)."""

    def __init__(
        self,
        *args: object,
        stop: threading.Event,
        drained: DrainCheck | None = None,
        poll_seconds: float = 1.0,
        give_up_seconds: float = 900.0,
        grid: EpochGrid | None = None,
        consumer_config: dict[str, str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Consumer-only settings (auto.offset.reset) reach the readers' consumers, never the
        # AdminClient that lists partitions: librdkafka printed a CONFWARN line for each there.
        self._admin_config = dict(self._add_config)
        self._add_config = {**self._add_config, **(consumer_config or {})}
        self._grid = grid
        self._stop = stop
        self._drained = drained
        self._poll = poll_seconds
        self._give_up_seconds = give_up_seconds
        # topic -> partitions listed on this process (the partition watch's baseline: what
        # Bytewax reads, never a second, later answer of the broker)
        self._listed: dict[str, int] = {}
        self._listed_lock = threading.Lock()

    def list_parts(self) -> list[str]:
        config = {"bootstrap.servers": ",".join(self._brokers), **self._admin_config}
        client = AdminClient(config)
        parts = []
        for topic in self._topics:
            try:
                metadata = client.list_topics(topic, timeout=LIST_TIMEOUT_SECONDS)
            except KafkaException as exc:
                raise RuntimeError(
                    f"cannot list the partitions of Kafka topic {topic!r} at "
                    f"{config['bootstrap.servers']} within {LIST_TIMEOUT_SECONDS:.0f} s: "
                    f"{kafka_error_text(exc)} (check PAYSCORE_KAFKA_BROKERS and "
                    "the credentials in PAYSCORE_KAFKA_CONFIG_FILE)"
                ) from None
            found = metadata.topics[topic]
            if found.error is not None:
                raise RuntimeError(
                    f"cannot list the partitions of Kafka topic {topic!r}: {found.error.str()}"
                )
            parts += [f"{index}-{topic}" for index in found.partitions]
            with self._listed_lock:  # every worker of the process lists; Bytewax reads them all
                self._listed[topic] = max(self._listed.get(topic, 0), len(found.partitions))
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Reader:
        # Bytewax builds a partition on the worker thread that reads it: that thread keeps a
        # Python thread state from now on (dataflows/thread_states.py).
        thread_states.pin()
        inner = super().build_part(step_id, for_part, resume_state)
        # Bytewax's reader reads every message's headers: it must never fail on them.
        if not hasattr(inner, "_consumer"):
            raise RuntimeError(
                f"Bytewax's Kafka partition reader {type(inner).__name__} has no _consumer: "
                "expected bytewax 0.21 (dataflows/readable_headers.py wraps its consumer)"
            )
        # ... and a tailing reader must not wait a millisecond at every read (busy_reads.py).
        inner._consumer = BusyReads(ReadableHeaders(inner._consumer))
        idx, topic = for_part.split("-", 1)
        if resume_state is not None and resume_state >= 0:
            try:
                deleted_unread(inner._consumer, topic, int(idx), resume_state)
            except SnapshotPastEndError:
                inner.close()
                raise
        watch = None
        if int(idx) == 0:  # one reader a topic watches its partition count
            # The count list_parts found is what Bytewax reads (Bytewax builds only partitions
            # this worker listed). A second query could answer with an error (no partitions:
            # a false stop later) or with a partition added since (never caught).
            with self._listed_lock:
                count = self._listed.get(topic)
            if count is None:
                log.warning(
                    "partitions of %s not listed before its partition 0 was built: the partition "
                    "watch takes the count of its first answer as the baseline",
                    topic,
                )
            # Asked through a client of its own: through the reader's consumer, each question
            # held that consumer's reads until the broker answered (README, *The partition
            # watch held every payment of its worker*).
            admin = AdminClient(
                {"bootstrap.servers": ",".join(self._brokers), **self._admin_config}
            )
            watch = PartitionWatch(admin.list_topics, topic, count)
        return _Reader(
            inner,
            topic,
            int(idx),
            self._stop,
            self._drained,
            self._poll,
            self._give_up_seconds,
            self._grid,
            watch,
        )


class SnapshotPastEndError(RuntimeError):
    """A recovery snapshot resumes a partition past its end: the topic was re-created or
    truncated since the snapshot, or the snapshot belongs to another cluster."""


def deleted_unread(consumer: Consumer, topic: str, partition: int, resume: int) -> None:
    """Log, at ERROR, the messages of ``topic[partition]`` the broker deleted before this flow
    read them: from ``resume`` (where the recovery snapshot resumes) to the oldest one it still
    holds. They are lost to the flow; the reader goes on from the oldest one left
    (``auto.offset.reset=earliest``, ``dataflows/scoring.py``). A ``resume`` past the
    partition's end refuses the start (:class:`SnapshotPastEndError`): librdkafka would read the
    partition again from its beginning, as new. A broker that does not answer is not asked
    again (a WARNING says the check was skipped): the reader's own errors follow."""
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=LIST_TIMEOUT_SECONDS
        )
    except KafkaException as exc:
        log.warning(
            "%s[%d]: deleted-unread check skipped: the broker gave no offsets (waited up to "
            "%.0f s: %s); messages it deleted before the flow read them, if any, are not logged",
            topic,
            partition,
            LIST_TIMEOUT_SECONDS,
            kafka_error_text(exc),
        )
        return
    if resume > high:
        raise SnapshotPastEndError(
            f"Kafka topic {bounded(topic, 300)!r} partition {partition}: the recovery snapshot "
            f"resumes at offset {resume}, but the partition ends at offset {high} (expected "
            f"at most {high}): the topic was re-created or truncated since the snapshot (or "
            "the recovery folder is another cluster's); reading on would read the partition "
            f"again from offset {low} as if new. Refusing to start: move the recovery folder "
            "(bytewax.run -r, ops/run_flow.sh -r) away to start from no snapshot (README "
            "*Delivery and recovery*)"
        )
    if resume < low:
        log.error(
            "%s[%d]: offsets %d to %d were deleted (retention) before the flow read them: %d "
            "messages lost to it; reading goes on from offset %d",
            topic,
            partition,
            resume,
            low - 1,
            low - resume,
            low,
            extra={"event": "deleted_unread"},
        )


class LabelsAccountedFor:
    """The drain check against MySQL: every label read from ``[low, high]`` of a partition has
    a ``fraud_labels`` row or is a dead letter, and none of the partition's labels waits."""

    def __init__(self, url: str, patience: float) -> None:
        self._url = url
        self._patience = patience

    def __call__(self, topic: str, partition: int, low: int, high: int, read: int) -> bool:
        fl, dl = fraud_labels, dead_letters

        def count() -> tuple[int, int, int]:
            with shared_engine(self._url, pool_size=1).connect() as c:
                waiting = c.execute(
                    select(func.count())
                    .select_from(fl)
                    .where(fl.c.status == "waiting", fl.c.topic == topic)
                    .where(fl.c.kafka_partition == partition)
                ).scalar_one()
                if read == 0:
                    return waiting, 0, 0
                recorded, letters = (
                    c.execute(
                        select(func.count())
                        .select_from(table)
                        .where(
                            table.c.topic == topic,
                            table.c.kafka_partition == partition,
                            table.c.kafka_offset.between(low, high),
                        )
                    ).scalar_one()
                    for table in (fl, dl)
                )
                return waiting, recorded, letters

        waiting, recorded, letters = retry_transient(
            count, patience=self._patience, what=f"checking the labels of {topic}[{partition}]"
        )
        return waiting == 0 and recorded + letters >= read
