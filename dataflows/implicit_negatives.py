"""The step that claims implicit negatives: payments nobody reported within the label delay.

**The clock.** The flow's event-time clock is the newest event time among the payments it has
read (:func:`newest_event_time`, one tick per batch of payments, from every worker). A payment
is due as an implicit negative when its event time plus ``PAYSCORE_LABEL_DELAY_DAYS`` is at or
before the clock: then nobody reported it as fraud in the delay a bank gives itself (a fraud
reported later is a correction, :mod:`storage.labels`). Event time, not the wall clock: a
replay of last month's topics claims what the live flow claimed, and a flow that stood still
for a day does not claim a day of payments the moment it starts. A payment's event time is at
most ``PAYSCORE_MAX_FUTURE_SKEW_SECONDS`` past the moment its record reached Kafka (the
contract), so a producer cannot push the clock ahead.

**One key.** All ticks go to one key, so one worker claims (as one worker learns): at most
every second while ticks come, at once again while a claim was full (``limit`` payments), and
every ``retry_seconds`` when nothing new comes (payments stored after the last tick are then
claimed too). Each claim is one transaction (:func:`storage.implicit.claim_implicit`); the
claimed negatives that negative downsampling keeps go to the learner.

**Exactly once.** The snapshot holds the number of the last claim handed on and the clock. A
claim is written in MySQL before the epoch's snapshot; after a crash the step, and the learner
downstream, resume from a snapshot that has not seen the claims made since. So the step's first
work after it is built, at its first batch (every run brings it one wake-up,
:mod:`dataflows.wake_ups`: never from a timer due at once, whose output Bytewax 0.21.1 stamps
before the resume epoch, where the learner would lose it), is to hand on every claim numbered
above its snapshot's (:func:`storage.implicit.claims_after`), a few claims per activation, with the
``learned_version`` the version sink recorded: the learner skips the ones the version it
resumed from learned, and learns the others. Only then does it claim anew, numbering on. A step
built without a snapshot (no recovery) hands on the unlearned ones of every claim, as the label
join meets every label message again when the labels topic is read from its beginning.

Counted in ``payscore_labels_claimed_total{kind="implicit", learner=...}`` and
``payscore_implicit_labels_replayed_total``.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bytewax.operators import StatefulBatchLogic

from dataflows.messages import Positioned
from dataflows.metrics import CLAIMED_KINDS, IMPLICIT_REPLAYED, SINK_RETRIES, snapshot_timer
from dataflows.wake_ups import WakeUp
from features.contract import Payment
from settings.config import Config
from storage.engine import retry_transient, shared_engine
from storage.implicit import ImplicitClaim, claim_implicit, claims_after
from storage.labels import LabelledPayment
from storage.tables import implicit_labels

log = logging.getLogger(__name__)

CLAIMER_KEY = "implicit"
CLAIM_LIMIT = 2000  # payments claimed in one transaction
MIN_CLAIM_SECONDS = 1.0  # at most one claim a second while ticks come (and none is full)
NO_CLOCK = float("-inf")
_TIMED = snapshot_timer("claim_implicit_negatives")


def newest_event_time(batch: list[Positioned[Payment]]) -> list[float]:
    """One tick for a batch of payments: its newest event time (POSIX seconds)."""
    return [max(p.event.event_time.timestamp() for p in batch)] if batch else []


class ImplicitClaims(Protocol):
    def claim(self, number: int, cutoff: datetime) -> ImplicitClaim: ...

    def after(
        self, number: int, *, unlearned_only: bool
    ) -> tuple[list[LabelledPayment], int | None]: ...


class ImplicitNegatives(StatefulBatchLogic[float | WakeUp, LabelledPayment, bytes]):
    def __init__(
        self,
        claims: ImplicitClaims,
        *,
        handed: int,
        event_clock: float,
        resumed: bool,
        delay: timedelta,
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._claims = claims
        self._handed = handed  # every claim numbered up to it was handed on
        self._event_clock = event_clock  # the newest event time seen (POSIX seconds)
        self._resumed = resumed
        self._delay = delay.total_seconds()
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._caught_up = False  # the claims after the snapshot are handed on again
        self._full = False  # the last claim was full: more may be due
        self._claimed_clock = NO_CLOCK  # the event clock of the last claim
        self._last_try = NO_CLOCK
        self._woken = False  # a first batch came (a wake-up or ticks): a timer may hand on

    def on_batch(self, values: list[float | WakeUp]) -> tuple[list[LabelledPayment], bool]:
        self._woken = True
        ticks = [v for v in values if not isinstance(v, WakeUp)]
        self._event_clock = max([self._event_clock, *ticks])
        if self._clock() - self._last_try < MIN_CLAIM_SECONDS and self._caught_up:
            return [], self.RETAIN
        return self._work(), self.RETAIN

    def on_notify(self) -> tuple[list[LabelledPayment], bool]:
        return self._work(), self.RETAIN

    def on_eof(self) -> tuple[list[LabelledPayment], bool]:
        """At the end of the input: everything due now (a drain run's last claims)."""
        out = self._work()
        while self._full or not self._caught_up:
            out += self._work()
        return out, self.RETAIN

    def notify_at(self) -> datetime | None:
        if not self._woken:
            return None  # the run's first batch comes first (module docstring)
        if self._full or not self._caught_up:
            return datetime.now(UTC)
        if self._event_clock == NO_CLOCK:
            return None
        wait = MIN_CLAIM_SECONDS if self._event_clock > self._claimed_clock else self._retry_seconds
        due = wait - (self._clock() - self._last_try)
        return datetime.now(UTC) + timedelta(seconds=max(due, 0.0))

    def snapshot(self) -> bytes:
        started = time.perf_counter()
        state = pickle.dumps((self._handed, self._event_clock), protocol=pickle.HIGHEST_PROTOCOL)
        _TIMED(time.perf_counter() - started)
        return state

    def _work(self) -> list[LabelledPayment]:
        self._last_try = self._clock()
        if not self._caught_up:
            again, last = self._claims.after(self._handed, unlearned_only=not self._resumed)
            if last is None:
                self._caught_up = True
            else:
                log.info(
                    "implicit negatives of claims %d to %d handed on again (%d, claimed after "
                    "the snapshot the flow resumed from)",
                    self._handed + 1,
                    last,
                    len(again),
                    extra={"event": "resumed", "reason": "implicit_negatives"},
                )
                self._handed = last
                IMPLICIT_REPLAYED.inc(len(again))
                return again
        if self._event_clock == NO_CLOCK:
            return []
        self._claimed_clock = self._event_clock
        cutoff = datetime.fromtimestamp(self._event_clock - self._delay, UTC)
        outcome = self._claims.claim(self._handed + 1, cutoff)
        self._full = outcome.full
        if outcome.claimed:
            self._handed += 1
            CLAIMED_KINDS.labels("implicit", "yes").inc(len(outcome.learnable))
            CLAIMED_KINDS.labels("implicit", "sampled_out").inc(outcome.sampled_out)
        return outcome.learnable


class MySQLImplicitClaims:
    """:mod:`storage.implicit` against one database; one engine per process, made at first use;
    every transaction retried while MySQL is unavailable (:mod:`storage.engine`)."""

    def __init__(
        self,
        url: str,
        *,
        delay: timedelta,
        sample_rate: float,
        patience: float,
        limit: int = CLAIM_LIMIT,
    ) -> None:
        self._url = url
        self._delay = delay
        self._sample_rate = sample_rate
        self._patience = patience
        self._limit = limit

    def _engine(self):  # noqa: ANN202 (an Engine)
        return shared_engine(self._url, pool_size=4, isolation_level="READ COMMITTED")

    def claim(self, number: int, cutoff: datetime) -> ImplicitClaim:
        def work() -> ImplicitClaim:
            with self._engine().begin() as connection:
                return claim_implicit(
                    connection,
                    claim=number,
                    cutoff=cutoff,
                    delay=self._delay,
                    sample_rate=self._sample_rate,
                    limit=self._limit,
                    now=datetime.now(UTC),
                )

        return retry_transient(
            work,
            patience=self._patience,
            what=f"claiming implicit negatives through {cutoff.isoformat()}",
            on_retry=SINK_RETRIES.labels(implicit_labels.name).inc,
        )

    def after(
        self, number: int, *, unlearned_only: bool
    ) -> tuple[list[LabelledPayment], int | None]:
        def work() -> tuple[list[LabelledPayment], int | None]:
            with self._engine().begin() as connection:
                return claims_after(
                    connection,
                    number,
                    delay=self._delay,
                    sample_rate=self._sample_rate,
                    unlearned_only=unlearned_only,
                )

        return retry_transient(
            work,
            patience=self._patience,
            what=f"reading the implicit negatives claimed after claim {number}",
            on_retry=SINK_RETRIES.labels(implicit_labels.name).inc,
        )


def implicit_negatives(
    claims: ImplicitClaims, *, delay: timedelta, retry_seconds: float
) -> Callable[[bytes | None], ImplicitNegatives]:
    """The builder ``op.stateful_batch`` calls for the claimer's key, new or resumed."""

    def build(resume: bytes | None) -> ImplicitNegatives:
        handed, event_clock = pickle.loads(resume) if resume is not None else (0, NO_CLOCK)
        return ImplicitNegatives(
            claims,
            handed=handed,
            event_clock=event_clock,
            resumed=resume is not None,
            delay=delay,
            retry_seconds=retry_seconds,
        )

    return build


def configured_implicit_negatives(config: Config) -> Callable[[bytes | None], ImplicitNegatives]:
    """:func:`implicit_negatives` as ``config`` sets it up: the flow's claimer and the reference
    loop's."""
    delay = timedelta(days=config.label_delay_days)
    return implicit_negatives(
        MySQLImplicitClaims(
            config.mysql_dsn,
            delay=delay,
            sample_rate=config.legit_sample_rate,
            patience=config.mysql_outage_seconds,
        ),
        delay=delay,
        retry_seconds=config.label_retry_seconds,
    )
