"""A Bytewax stateful step that keeps one feature history per key (card, terminal or merchant).

For each payment of its key the step asks the history for the payment's point-in-time features
(which then folds the payment in) and adds them to the payment's feature dict. Fraud labels routed
to the key are folded in too.

Snapshots: Bytewax calls ``snapshot`` on every key touched in an epoch, deep-copies nothing
itself, and pickles what it gets. The step hands over ``pickle.dumps`` of its history: one
compact, immutable bytes object per key, whose own pickling is a copy.

Expiry: a key untouched for ``idle_seconds`` of wall-clock time is discarded (its windows are
empty by then in a live system, where event time follows wall time).

Duplicates: with ``remember > 0`` the step remembers the last ``remember`` transaction ids of its
key (as 64-bit hashes, :func:`id_hash`), each with a fingerprint of the payment (128 bits of
BLAKE2b of its JSON: a producer cannot make two payments share one; with the CRC-32 of before,
two payments of one id found among 100,000 variants did, and the second vanished as a
"repeat", ``test_data/hostile.py``). A payment whose id is among
them with the same fingerprint (a producer's retry, a redelivery) is a harmless repeat: not
folded in again, not passed on, counted in ``payscore_duplicate_payments_total``; its first copy
was scored already, and a scored payment is stored once. One whose id is among them with *other*
content is not folded in either, but passed on with ``rejected`` set: the flow makes it a dead
letter. The card step uses this, since a card's payments arrive together on one partition.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import zlib
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Protocol

import msgspec
from bytewax.operators import StatefulBatchLogic

from dataflows.messages import Positioned
from dataflows.metrics import DUPLICATES, snapshot_timer
from features.bounded import bounded
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
log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
Recent = dict[int, int]  # hash of a transaction id -> fingerprint, oldest first


def id_hash(transaction_id: str) -> int:
    """A stable 64-bit hash of a transaction id (BLAKE2b). A card remembers its recent ids by
    it: 12 bytes an id with the fingerprint, where the ids themselves took about 17 each. Two
    ids of one card's last ``remember`` share a hash with odds about ``remember / 2**64`` per
    payment; the new one would then be a dead letter (a reused id), never lost."""
    return int.from_bytes(blake2b(transaction_id.encode(), digest_size=8).digest(), "little")


FINGERPRINT_BYTES = 16
# Fingerprints below this are the CRC-32 of a recovery snapshot taken before (a 128-bit one is
# below it with odds of 2**-96): compared as such, so that a replay after an upgrade is still
# skipped as a repeat.
_CRC_MARKS = 1 << 32


def fingerprint(payment: Payment) -> int:
    """A stable digest of everything the payment says (the same in every process and run), one
    that no producer can make two payments share (BLAKE2b, 128 bits)."""
    return _fingerprint(_encode(payment))


def _fingerprint(encoded: bytes) -> int:
    return int.from_bytes(blake2b(encoded, digest_size=FINGERPRINT_BYTES).digest(), "little")


def _same(seen: int, encoded: bytes, mark: int) -> bool:
    return seen == mark or (seen < _CRC_MARKS and seen == zlib.crc32(encoded))


class KeyedHistory(StatefulBatchLogic[Positioned | LabelNote, Positioned, Snapshot]):
    def __init__(
        self,
        history: History,
        last_touch: float,
        idle_seconds: float,
        recent_ids: Recent | None = None,
        remember: int = 0,
        timed: Callable[[float], None] | None = None,
    ) -> None:
        self._timed = timed  # given the seconds each snapshot() took
        self._history = history
        self._last_touch = last_touch
        self._idle_seconds = idle_seconds
        self._recent_ids = recent_ids
        self._remember = remember

    def on_batch(self, values: list[Positioned | LabelNote]) -> tuple[list[Positioned], bool]:
        out = []
        observe = self._history.observe
        recent = self._recent_ids
        for value in values:
            if isinstance(value, Positioned):
                if recent is not None:
                    txn, encoded = value.event.transaction_id, _encode(value.event)
                    mark = _fingerprint(encoded)
                    key = id_hash(txn)
                    seen = recent.get(key)
                    if seen is not None and _same(seen, encoded, mark):
                        DUPLICATES.inc()
                        continue
                    if seen is not None:
                        value.rejected = bounded(
                            f"transaction id {txn!r} reused: this card sent another payment "
                            "with this id and other content (kept: the first one)"
                        )
                        out.append(value)
                        continue
                    recent[key] = mark
                    if len(recent) > self._remember:
                        del recent[next(iter(recent))]
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
        started = time.perf_counter()
        recent = None
        if self._recent_ids is not None:  # packed: 8 bytes of id hash, 16 of fingerprint each
            ids = self._recent_ids
            recent = (
                array("Q", ids.keys()).tobytes(),
                b"".join(m.to_bytes(FINGERPRINT_BYTES, "little") for m in ids.values()),
            )
        state = pickle.dumps(
            (self._history, self._last_touch, recent), protocol=pickle.HIGHEST_PROTOCOL
        )
        if self._timed is not None:
            self._timed(time.perf_counter() - started)
        return state


def keyed_history(
    new_history: Callable[[], History], idle_seconds: float, remember: int = 0, name: str = ""
) -> Callable[[Snapshot | None], KeyedHistory]:
    """The builder ``op.stateful_batch`` calls for a new key or a key resumed from a snapshot;
    the first key of step ``name`` resumed in a process is logged (event ``resumed``); the time
    its snapshots take is counted in ``payscore_snapshot_seconds_total{step=name}``."""
    logged = threading.Event()
    timed = snapshot_timer(name or "history")

    def recent_ids(ids: object = ()) -> Recent | None:
        if remember <= 0:
            return None
        if isinstance(ids, tuple) and len(ids) == 2 and isinstance(ids[0], bytes):
            keys = array("Q")
            keys.frombytes(ids[0])
            packed: bytes = ids[1]
            if len(packed) == FINGERPRINT_BYTES * len(keys):
                step = FINGERPRINT_BYTES
                marks: list[int] = [
                    int.from_bytes(packed[i : i + step], "little")
                    for i in range(0, len(packed), step)
                ]
            else:  # a snapshot of the release before: CRC-32 fingerprints, 4 bytes each
                crcs = array("I")
                crcs.frombytes(packed)
                marks = list(crcs)
            pairs = list(zip(keys, marks, strict=True))
        else:  # a snapshot taken before ids were hashed: (transaction id, fingerprint) pairs
            pairs = [(id_hash(txn), mark) for txn, mark in ids]  # type: ignore[attr-defined]
        return dict(pairs[-remember:])

    def build(resume: Snapshot | None) -> KeyedHistory:
        if resume is None:
            return KeyedHistory(
                new_history(), time.time(), idle_seconds, recent_ids(), remember, timed
            )
        history, last_touch, recent = pickle.loads(resume)
        if not logged.is_set():
            logged.set()
            log.info(
                "%s: keys resumed from a recovery snapshot",
                name or "feature histories",
                extra={"event": "resumed", "reason": name},
            )
        return KeyedHistory(
            history, last_touch, idle_seconds, recent_ids(recent or ()), remember, timed
        )

    return build
