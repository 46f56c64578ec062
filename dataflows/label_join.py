"""The step that joins each fraud label with its scored payment, keyed by a group of cards.

A label is claimed in MySQL (:func:`storage.labels.claim_labels`): joined with the features its
payment was scored with, and recorded in ``fraud_labels`` by where it was read, so that every
label message ends claimed or rejected with a reason. In production a label arrives days after
its payment, which is long stored. A label whose payment is not stored *yet* (a replay that reads
both topics at once, or a sink still writing) waits: it is tried again every ``retry_seconds``
for up to ``wait_seconds`` of the flow's running time, then rejected as ``not_found``. The
snapshot keeps how long each label has waited, not when it came: time the flow spends stopped
or crashed does not count, so a label is not given up right after a restart while its payment
is still in the backlog. The step keeps
state only for groups with held or waiting labels, and only those labels.

**Bounded waiting.** Labels for ids no payment has (forged, or a broken producer's) would all
wait their full ``wait_seconds``, retried with every claim of their group: the state, the
snapshot and each claim statement would grow with their rate times the wait. A claim leaves at
most ``PAYSCORE_LABEL_WAITING_MAX`` (``label_waiting_max``) labels of a group waiting; past it
the oldest are rejected at once as ``waiting_full``, in the claim's own transaction
(:func:`storage.labels.resolve`), so each still ends once, with its ``fraud_labels`` row.

**Keys.** Cards are hashed into a fixed number of groups (``dataflows.scoring.LABEL_GROUPS``):
every label of a card goes to one key, so a card's labels are claimed one batch after another
(never concurrently), and each batch claims the labels of many cards in one transaction of three
statements, however many labels it holds (the batch goes as one JSON document a statement).
Keyed by card, every label cost a transaction, and every card with a waiting label a retry of
its own.

**Gathering (issue 23).** A claim costs much less a label in a large batch than in a small one
(client / MariaDB µs a label, ``bench_mysql_cpu.py --extra`` and ``bench_claim_cpu.py``: about
151 / 103 at 20 labels, 80 / 79 at 60, 65 / 60 at 500, no less at 2,000), and one activation
brings a group only what one read of the topic held for it: about 60 labels when draining a
backlog (1,000 messages over 16 groups), a few when tailing. So new labels are *held* in the
step's state, untried, until the group holds ``GATHER_LABELS`` (500) or its oldest has been held
``PAYSCORE_LABEL_GATHER_SECONDS`` (``label_gather_seconds``; 0: claim at once, as before); then
the waiting labels and the held ones are claimed in one transaction, in the order they were
read. A label comes days after its payment: two seconds more before it is claimed change nothing
that matters (a claimed fraud reaches the fraud rates that much later). Waiting labels are tried
again with every claim and at their ``retry_seconds`` timer; a label's ``wait_seconds`` start at
its first try, so its outcome is the one it had when nothing was held.

*Why not fewer groups* (the other way to larger claims, with no added latency): Bytewax routes a
key to worker ``SipHash13(key) mod W`` (``benchmarks/BYTEWAX-INTERNALS.md`` section 1), and the
keys ``"0"`` to ``"3"`` all go to worker 1 of 2 (``benchmarks/cpu_meter.py``,
``bytewax_worker``): with 1, 2 or 4 groups one process of two would make every claim. Keys
chosen per worker depend on the worker count of the run, and a change of the group count leaves
a snapshot's waiting labels under keys that no longer receive labels. Holding labels needs
neither: the keys, and where they run, stay as they are.

**Exactly once.** A held label has touched nothing outside the step: the snapshot keeps it with
the seconds it has been held, and the labels topic's offsets in the same snapshot are past it, so
after a crash it comes back from the snapshot, never twice; a label held after the last snapshot
is read again from Kafka. A resumed step tries every label it comes back with at its first
batch, which every run brings it at once (:func:`join_labels`: one wake-up a group),
and sets no timer before: one claimed after the snapshot is handed on again then.

*Why a batch and not a timer* (:mod:`dataflows.wake_ups`): Bytewax 0.21.1 stamps what a step
hands on from a timer due at once after loading its state before the resume epoch, and the
terminals', merchants' and learner's steps would take it into a state their own load then
replaces (the crash drill's fraud rates missed claimed frauds, and their labels reached no
model version). The claim
is written before the epoch's snapshot, so a crash replays labels that MySQL already shows
claimed. A label claimed by *this same message* (same partition and
offset) is handed on again: the fraud rates and the learner downstream resume from the same
snapshot, which has not seen it. The learner skips it if the model version it resumed from
learned it already (:mod:`dataflows.learning`). Claims retry while MySQL is unavailable
(:mod:`storage.engine`).

**End of input.** Bytewax fires no timer after the end of its input. In a drain run
(``PAYSCORE_TAIL=false``) the labels input ends only once every label is resolved or timed out
(:mod:`dataflows.sources`; a held label has no ``fraud_labels`` row yet, so its partition waits
for the gather timer's claim). At the end of input every held label is claimed, and a label is
rejected only if its own wait has run out; any other stays waiting, in the snapshot (with
recovery) and as a ``waiting`` row, and the next run goes on with it: a graceful stop
(:mod:`dataflows.stopping`) of one process, or the bound of a drain run, never gives up a label
early.

Every outcome is counted in ``payscore_labels_total{outcome=...}``: ``claimed``, ``replayed``,
``waiting`` (each time a label starts waiting), and ``rejected_<reason>``. Rejections are logged
at WARNING (:class:`RejectionLog`): the first of each reason in a minute with its transaction id
and position, the others of that minute as a count in the next line of that reason. A claimed
label is also counted by kind (``explicit`` or ``correction``: a fraud for a payment learned as
an implicit negative) and whether the learner gets it or negative downsampling leaves it out, in
``payscore_labels_claimed_total{kind, learner}``. The labels each claim tries (held and waiting)
are ``payscore_label_claim_size``.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from dataflows.messages import Positioned
from dataflows.metrics import CLAIM_SIZE, CLAIMED_KINDS, LABELS, SINK_RETRIES, snapshot_timer
from dataflows.wake_ups import WakeUp, with_wake_ups
from features.bounded import bounded
from features.contract import FraudLabel
from settings.config import Config
from storage.engine import retry_transient, shared_engine
from storage.labels import Claimed, LabelledPayment, ReadLabel, Rejected, claim_labels
from storage.tables import fraud_labels

log = logging.getLogger(__name__)


# Claims a batch; the predicate says which not-yet-found labels have waited long enough.
Claim = Callable[[list[ReadLabel], Callable[[ReadLabel], bool]], Claimed]
Waiting = list[tuple[ReadLabel, float]]  # label, the clock's time it started waiting
Snapshot = list[tuple[ReadLabel, float]]  # label, seconds it has waited so far
# A claim is due once this many labels are held (or the oldest has been held gather_seconds):
# benchmarks/bench_claim_cpu.py, a label costs about as little at 500 as at 2,000.
GATHER_LABELS = 500

_TIMED = snapshot_timer("join_labels_with_scored_payments")


class LabelJoin(StatefulBatchLogic[Positioned[FraudLabel] | WakeUp, LabelledPayment, bytes]):
    def __init__(
        self,
        claim: Claim,
        waiting: Waiting,
        *,
        retry_seconds: float,
        wait_seconds: float,
        gather_seconds: float = 0.0,
        gather_labels: int = GATHER_LABELS,
        held: Waiting | None = None,
        clock: Callable[[], float] = time.monotonic,
        rejections: RejectionLog | None = None,
    ) -> None:
        self._claim = claim
        self._rejections = rejections or REJECTIONS
        self._waiting = waiting  # tried, their payment not stored yet; in the order read
        self._held = held or []  # read since the last claim, not tried yet; in the order read
        self._retry_seconds = retry_seconds
        self._wait_seconds = wait_seconds
        self._gather_seconds = gather_seconds
        self._gather_labels = gather_labels
        self._clock = clock
        self._last_try = clock()
        # Resumed with labels: try them all at the first batch (the run's wake-up, or labels),
        # and not by a timer before it (module docstring: a label claimed after the snapshot is
        # handed on again then; the state downstream has not seen it).
        self._resumed = bool(self._waiting or self._held)

    def on_batch(self, values: list[Positioned[FraudLabel] | WakeUp]) -> tuple[list, bool]:
        now = self._clock()
        known = {read.position for read, _ in self._waiting}
        known.update(read.position for read, _ in self._held)
        self._held += [
            (ReadLabel(v.event, v.partition, v.offset), now)
            for v in values
            if isinstance(v, Positioned) and (v.partition, v.offset) not in known
        ]
        if self._resumed or self.due_in() == 0.0:
            return self._try()
        return [], self.RETAIN if self._held or self._waiting else self.DISCARD

    def on_notify(self) -> tuple[list[LabelledPayment], bool]:
        return self._try()

    def on_eof(self) -> tuple[list[LabelledPayment], bool]:
        return self._try()

    def due_in(self) -> float | None:
        """Seconds of the clock until the next claim is due by the timer (0: now); None: no
        timer (nothing to claim, or resumed with labels: the run's first batch claims them).
        Due when ``gather_labels`` labels are held, when the oldest held label has been held
        ``gather_seconds``, or when the waiting labels' retry is due."""
        if self._resumed:
            return None
        if len(self._held) >= self._gather_labels:
            return 0.0
        now = self._clock()
        dues = []
        if self._held:
            dues.append(self._gather_seconds - (now - self._held[0][1]))
        if self._waiting:
            dues.append(self._retry_seconds - (now - self._last_try))
        return max(min(dues), 0.0) if dues else None

    def notify_at(self) -> datetime | None:
        due = self.due_in()
        if due is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=due)

    def snapshot(self) -> bytes:
        started = time.perf_counter()
        now = self._clock()
        waited: Snapshot = [(read, now - since) for read, since in self._waiting]
        held: Snapshot = [(read, now - since) for read, since in self._held]
        state = pickle.dumps((waited, held), protocol=pickle.HIGHEST_PROTOCOL)
        _TIMED(time.perf_counter() - started)
        return state

    def _try(self) -> tuple[list[LabelledPayment], bool]:
        """Claims every waiting and held label in one batch, in the order they were read (the
        waiting ones were read before any held one; the first label of a payment claims it)."""
        labels = self._waiting + self._held
        self._resumed = False
        if not labels:
            return [], self.DISCARD
        self._last_try = now = self._clock()
        # A label's wait for its payment starts at its first try, as when nothing was held.
        first_seen = {read.position: seen for read, seen in self._waiting}
        first_seen.update((read.position, now) for read, _ in self._held)

        def expired(read: ReadLabel) -> bool:
            return now - first_seen[read.position] >= self._wait_seconds

        was_waiting = {read.position for read, _ in self._waiting}
        CLAIM_SIZE.observe(len(labels))
        outcome = self._claim([read for read, _ in labels], expired)
        self._waiting = [(read, first_seen[read.position]) for read in outcome.waiting]
        self._held = []
        started = sum(1 for r in outcome.waiting if r.position not in was_waiting)
        _count(outcome, started, self._rejections)
        return outcome.learnable, self.RETAIN if self._waiting else self.DISCARD


def _count(outcome: Claimed, started_waiting: int, rejections: RejectionLog) -> None:
    claimed = len(outcome.learnable) - outcome.replayed
    LABELS.labels("claimed").inc(claimed + outcome.sampled_out)
    CLAIMED_KINDS.labels("explicit", "yes").inc(claimed - outcome.corrections)
    CLAIMED_KINDS.labels("correction", "yes").inc(outcome.corrections)
    CLAIMED_KINDS.labels("explicit", "sampled_out").inc(outcome.sampled_out)
    LABELS.labels("replayed").inc(outcome.replayed)
    LABELS.labels("waiting").inc(started_waiting)
    for rejected in outcome.rejected:
        LABELS.labels(f"rejected_{_kind(rejected)}").inc()
        rejections.rejected(rejected)
    rejections.flush()


def _kind(rejected: Rejected) -> str:
    """A rejection's reason class (``not_found``, ``waiting_full``...): the reason up to its
    colon, which :func:`storage.labels.resolve` writes from a fixed set."""
    return rejected.reason.partition(":")[0]


class RejectionLog:
    """Rejected labels logged at WARNING, at most one line for each reason class every
    ``every_seconds`` in a process: the first rejection of a class is logged whole (transaction
    id, position, reason), those of the same class in the next ``every_seconds`` only counted,
    and the count is said by the next line of that class (or by :meth:`flush`, at a claim once
    the time has passed). A flood of labels (forged ids, a broken producer) costs a few lines a
    minute, not one a label; each rejected label has its ``fraud_labels`` row and is in
    ``payscore_labels_total`` either way."""

    def __init__(
        self, every_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every = every_seconds
        self._clock = clock
        self._lock = threading.Lock()  # the flow's workers in one process are threads
        self._logged: dict[str, float] = {}  # reason class -> when its last line was logged
        self._unlogged: dict[str, int] = {}  # reason class -> rejections since, not logged

    def rejected(self, rejected: Rejected) -> None:
        kind = _kind(rejected)
        now = self._clock()
        with self._lock:
            last = self._logged.get(kind)
            if last is not None and now - last < self._every:
                self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
                return
            self._logged[kind] = now
            unlogged = self._unlogged.pop(kind, 0)
        read = rejected.read
        log.warning(
            "label for transaction %r (labels partition %d, offset %d) rejected: %s%s",
            bounded(read.label.transaction_id, 100),
            read.partition,
            read.offset,
            rejected.reason,
            self._since(kind, unlogged),
            extra={
                "event": "label_rejected",
                "transaction_id": bounded(read.label.transaction_id, 100),
                "partition": read.partition,
                "offset": read.offset,
                "reason": kind,
                "unlogged": unlogged,
            },
        )

    def flush(self) -> None:
        """Logs the count of each class whose last line is ``every_seconds`` old or older."""
        now = self._clock()
        with self._lock:
            due = [
                k for k, n in self._unlogged.items() if n and now - self._logged[k] >= self._every
            ]
            counts = {k: self._unlogged.pop(k) for k in due}
            self._logged.update(dict.fromkeys(due, now))
        for kind, unlogged in counts.items():
            log.warning(
                "%d labels rejected as %s since the last such line, %s",
                unlogged,
                kind,
                _NOT_LOGGED,
                extra={"event": "label_rejected", "reason": kind, "unlogged": unlogged},
            )

    @staticmethod
    def _since(kind: str, unlogged: int) -> str:
        if not unlogged:
            return ""
        return f"; and {unlogged} more rejected as {kind} since the last such line, {_NOT_LOGGED}"


_NOT_LOGGED = (
    "not logged one by one (each has its fraud_labels row; payscore_labels_total counts it)"
)

# The process's rejection lines: every group's join shares them (a group's join is discarded
# when it has nothing left to wait for, and comes back with its next label).
REJECTIONS = RejectionLog()


class MySQLLabelClaims:
    """``claim_labels`` against one database; one engine per process, made at first use."""

    def __init__(
        self,
        url: str,
        topic: str,
        *,
        patience: float,
        sample_rate: float = 1.0,
        waiting_max: int | None = None,
    ) -> None:
        self._url = url
        self._topic = topic
        self._patience = patience
        self._sample_rate = sample_rate
        self._waiting_max = waiting_max

    def __call__(self, reads: list[ReadLabel], expired: Callable[[ReadLabel], bool]) -> Claimed:
        def claim() -> Claimed:
            engine = shared_engine(self._url, pool_size=4, isolation_level="READ COMMITTED")
            with engine.begin() as connection:
                return claim_labels(
                    connection,
                    self._topic,
                    reads,
                    expired=expired,
                    sample_rate=self._sample_rate,
                    waiting_max=self._waiting_max,
                )

        return retry_transient(
            claim,
            patience=self._patience,
            what=f"claiming {len(reads)} fraud labels",
            on_retry=SINK_RETRIES.labels(fraud_labels.name).inc,
        )


def label_join(
    claim: Claim,
    *,
    retry_seconds: float,
    wait_seconds: float,
    gather_seconds: float = 0.0,
    gather_labels: int = GATHER_LABELS,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[bytes | None], LabelJoin]:
    """The builder ``op.stateful_batch`` calls for a group of cards, new or resumed (from a
    snapshot of this step, or of the step before the gather phase: a list of waiting labels)."""

    def build(resume: bytes | None) -> LabelJoin:
        now = clock()
        state = pickle.loads(resume) if resume is not None else ([], [])
        waited, held = (state, []) if isinstance(state, list) else state
        return LabelJoin(
            claim,
            [(read, now - seconds) for read, seconds in waited],
            held=[(read, now - seconds) for read, seconds in held],
            retry_seconds=retry_seconds,
            wait_seconds=wait_seconds,
            gather_seconds=gather_seconds,
            gather_labels=gather_labels,
            clock=clock,
        )

    return build


def join_labels(
    step_id: str,
    keyed: Stream[tuple[str, Positioned[FraudLabel]]],
    build: Callable[[bytes | None], LabelJoin],
    groups: Sequence[str],
) -> Stream[tuple[str, LabelledPayment]]:
    """The label join as a step of ``keyed``'s flow (labels keyed by card group, one of
    ``groups``), with one wake-up for each group at the start of every run: a group
    resumed with labels hands on what it claims from that batch, at the resume epoch, not from
    a timer (module docstring)."""
    return op.stateful_batch(step_id, with_wake_ups(step_id, keyed, groups), build)


def configured_label_join(config: Config) -> Callable[[bytes | None], LabelJoin]:
    """:func:`label_join` as ``config`` sets it up: the flow's and the reference loop's."""
    return label_join(
        MySQLLabelClaims(
            config.mysql_dsn,
            config.labels_topic,
            patience=config.mysql_outage_seconds,
            sample_rate=config.legit_sample_rate,
            waiting_max=config.label_waiting_max,
        ),
        retry_seconds=config.label_retry_seconds,
        wait_seconds=config.label_wait_seconds,
        gather_seconds=config.label_gather_seconds,
    )
