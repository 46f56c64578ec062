"""The step that joins each fraud label with its scored payment, keyed by card.

A label is claimed in MySQL (:func:`storage.labels.claim_labels`): joined with the features its
payment was scored with, and marked so that it is learned at most once. In production a label
arrives days after its payment, which is long stored. A label whose payment is not stored *yet*
(a replay that reads both topics at once, or a sink still writing) waits: it is tried again every
``retry_seconds`` for up to ``wait_seconds`` of wall-clock time, then counted as not found and
dropped. The step keeps state only for cards with waiting labels, and only those labels.

Bytewax fires no timers after the end of its input: when the flow runs to the end of its topics
(``PAYSCORE_TAIL=false``) waiting labels get one last try at the end and are otherwise dropped
(and counted).

Every outcome is counted in the Prometheus counter ``payscore_labels_total{outcome=...}``:
``learnable``, ``already_labelled``, ``card_mismatch``, ``not_found``.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar

from bytewax.operators import StatefulBatchLogic
from prometheus_client import Counter
from sqlalchemy import Engine

from dataflows.messages import Positioned
from features.contract import FraudLabel
from storage.engine import make_engine, retry_transient
from storage.labels import Claimed, LabelledPayment, claim_labels

log = logging.getLogger(__name__)

LABELS = Counter("payscore_labels", "Fraud labels by what became of them", ["outcome"])

Claim = Callable[[list[FraudLabel]], Claimed]
Waiting = list[tuple[FraudLabel, float]]  # label, wall time first seen


class LabelJoin(StatefulBatchLogic[Positioned[FraudLabel], LabelledPayment, bytes]):
    def __init__(
        self,
        claim: Claim,
        waiting: Waiting,
        *,
        retry_seconds: float,
        wait_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._claim = claim
        self._waiting = waiting
        self._retry_seconds = retry_seconds
        self._wait_seconds = wait_seconds
        self._clock = clock
        self._last_try = clock()

    def on_batch(self, values: list[Positioned[FraudLabel]]) -> tuple[list, bool]:
        now = self._clock()
        return self._try(self._waiting + [(v.event, now) for v in values], give_up=False)

    def on_notify(self) -> tuple[list[LabelledPayment], bool]:
        return self._try(self._waiting, give_up=False)

    def on_eof(self) -> tuple[list[LabelledPayment], bool]:
        return self._try(self._waiting, give_up=True)

    def notify_at(self) -> datetime | None:
        if not self._waiting:
            return None
        return datetime.fromtimestamp(self._last_try + self._retry_seconds, UTC)

    def snapshot(self) -> bytes:
        return pickle.dumps(self._waiting, protocol=pickle.HIGHEST_PROTOCOL)

    def _try(self, labels: Waiting, *, give_up: bool) -> tuple[list[LabelledPayment], bool]:
        if not labels:
            return [], self.DISCARD
        self._last_try = now = self._clock()
        outcome = self._claim([label for label, _ in labels])
        first_seen = {id(label): seen for label, seen in labels}
        waiting: Waiting = []
        lost = 0
        for label in outcome.not_found:
            seen = first_seen[id(label)]
            if give_up or now - seen >= self._wait_seconds:
                lost += 1
            else:
                waiting.append((label, seen))
        self._waiting = waiting
        _count(outcome, lost)
        return outcome.learnable, self.RETAIN if waiting else self.DISCARD


def _count(outcome: Claimed, lost: int) -> None:
    LABELS.labels("learnable").inc(len(outcome.learnable))
    LABELS.labels("already_labelled").inc(len(outcome.already_labelled))
    LABELS.labels("card_mismatch").inc(len(outcome.card_mismatch))
    LABELS.labels("not_found").inc(lost)
    for kind, labels in (
        ("already labelled", outcome.already_labelled),
        ("card mismatch", outcome.card_mismatch),
    ):
        for label in labels:
            log.info("label for %s skipped: %s", label.transaction_id, kind)
    if lost:
        log.warning("%d label(s) dropped: no scored payment found for them", lost)


class MySQLLabelClaims:
    """``claim_labels`` against one database; one engine per process, made at first use."""

    _engines: ClassVar[dict[str, Engine]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str) -> None:
        self._url = url

    def __call__(self, labels: list[FraudLabel]) -> Claimed:
        def claim() -> Claimed:
            with self._engine().begin() as connection:
                return claim_labels(connection, labels)

        return retry_transient(claim)

    def _engine(self) -> Engine:
        with self._lock:
            engine = self._engines.get(self._url)
            if engine is None:
                engine = self._engines[self._url] = make_engine(
                    self._url, pool_size=4, isolation_level="READ COMMITTED"
                )
            return engine


def label_join(
    claim: Claim, *, retry_seconds: float, wait_seconds: float
) -> Callable[[bytes | None], LabelJoin]:
    """The builder ``op.stateful_batch`` calls for a card, new or resumed."""

    def build(resume: bytes | None) -> LabelJoin:
        waiting: Waiting = pickle.loads(resume) if resume is not None else []
        return LabelJoin(claim, waiting, retry_seconds=retry_seconds, wait_seconds=wait_seconds)

    return build
