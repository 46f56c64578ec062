"""A Bytewax stateful step that keeps one feature history per key (card, terminal or merchant).

For each payment of its key the step asks the history for the payment's point-in-time features
(which then folds the payment in) and adds them to the payment's feature dict. Fraud labels routed
to the key are folded in too.

Snapshots: Bytewax calls ``snapshot`` on every key touched in an epoch, deep-copies nothing
itself, and pickles what it gets. The step hands over ``pickle.dumps`` of its history: one
compact, immutable bytes object per key, whose own pickling is a copy.

Expiry: a key untouched for ``idle_seconds`` of wall-clock time is discarded (its windows are
empty by then in a live system, where event time follows wall time).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from bytewax.operators import StatefulBatchLogic

from dataflows.messages import Positioned
from features.contract import Payment


class History(Protocol):
    def observe(self, payment: Payment) -> dict[str, float]: ...


class LabelledHistory(History, Protocol):
    def learn_label(self, payment_time: float, reported_at: float, is_fraud: bool) -> None: ...


class LabelNote(Protocol):
    """A fraud label joined with its payment's event time (see dataflows.labels)."""

    payment_time: float
    reported_at: float
    is_fraud: bool


Snapshot = bytes


class KeyedHistory(StatefulBatchLogic[Positioned | LabelNote, Positioned, Snapshot]):
    def __init__(self, history: History, last_touch: float, idle_seconds: float) -> None:
        self._history = history
        self._last_touch = last_touch
        self._idle_seconds = idle_seconds

    def on_batch(self, values: list[Positioned | LabelNote]) -> tuple[list[Positioned], bool]:
        out = []
        observe = self._history.observe
        for value in values:
            if isinstance(value, Positioned):
                value.features.update(observe(value.event))
                out.append(value)
            else:
                self._history.learn_label(value.payment_time, value.reported_at, value.is_fraud)  # type: ignore[attr-defined]
        self._last_touch = time.time()
        return out, self.RETAIN

    def on_notify(self) -> tuple[list[Positioned], bool]:
        return [], self.DISCARD

    def notify_at(self) -> datetime:
        return datetime.fromtimestamp(self._last_touch + self._idle_seconds, UTC)

    def snapshot(self) -> Snapshot:
        return pickle.dumps((self._history, self._last_touch), protocol=pickle.HIGHEST_PROTOCOL)


def keyed_history(
    new_history: Callable[[], History], idle_seconds: float
) -> Callable[[Snapshot | None], KeyedHistory]:
    """The builder ``op.stateful_batch`` calls for a new key or a key resumed from a snapshot."""

    def build(resume: Snapshot | None) -> KeyedHistory:
        if resume is None:
            return KeyedHistory(new_history(), time.time(), idle_seconds)
        history, last_touch = pickle.loads(resume)
        return KeyedHistory(history, last_touch, idle_seconds)

    return build
