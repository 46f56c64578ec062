"""A Bytewax stateful step that keeps one feature history per key (card, terminal or merchant).

For each payment of its key the step asks the history for the payment's point-in-time features
(which then folds the payment in) and adds them to the payment's feature dict. Fraud labels routed
to the key are folded in too.

Snapshots: Bytewax calls ``snapshot`` on every key touched in an epoch, deep-copies nothing
itself, and pickles what it gets. The step hands over ``pickle.dumps`` of its history's state
tuple (the builder knows the history's class, so the snapshot does not name it; snapshots of
earlier releases, which pickled the history object, still resume), its last touch and its
recent ids: one compact, immutable bytes object per key, whose own pickling is a copy.

Expiry: a key untouched for ``idle_seconds`` of wall-clock time is discarded (its windows are
empty by then in a live system, where event time follows wall time).

Duplicates: with ``remember > 0`` the step remembers the last ``remember`` transaction ids of its
key, each as a 48-bit hash of the id (:func:`id_hash`) and a 32-bit *mark* of the payment's
content (:func:`content_mark`, see there for why these sizes and why keyed). A payment whose id
is among them with the same mark (a producer's retry, a redelivery) is a harmless repeat: not
folded in again, not passed on, counted in ``payscore_duplicate_payments_total``; its first copy
was scored already, and a scored payment is stored once. One whose id is among them with *other*
content is not folded in either, but passed on with ``rejected`` set: the flow makes it a dead
letter. The card step uses this, since a card's payments arrive together on one partition.
Marks of earlier releases in a recovery snapshot (the CRC-32 of the JSON, then its 128-bit
BLAKE2b) are still recognised for what they are, until newer payments push them out.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable
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
# hash of a transaction id -> its payment's mark, oldest first. A mark below 2**32 is a keyed
# content mark (content_mark); one of the earlier releases, restored from a snapshot, is kept
# above: a CRC-32 as _CRC_TAG + crc, a 128-bit BLAKE2b as itself (below 2**33 with odds 2**-95).
Recent = dict[int, int]


ID_BITS = 48
_ID_MASK = (1 << ID_BITS) - 1
_LOW = 0xFFFF_FFFF  # an id hash is kept as its low 32 bits and its high 16


def id_hash(transaction_id: str) -> int:
    """A stable 48-bit hash of a transaction id: the low 48 bits of an 8-byte unkeyed BLAKE2b
    (the 64-bit hash of earlier releases, so the ids they remembered still match). A card
    remembers its recent ids by it.

    Odds: a new payment's id shares a hash with one of its card's last ``remember`` with odds
    at most ``remember / 2**48`` per honest payment: 2.3e-13 for 64 ids, so at 6,000 payments
    a second all year (4.3e-2 a year) about one payment in 23 years. The 64-bit hashes of
    earlier releases made it 3.5e-18, for 128 bytes more a card of 64 ids. Such a payment is
    not lost: its content mark differs (odds 1 - 2**-32), so it becomes a visible dead letter
    "reused id", which can be sent again under another id. It is skipped silently only if its
    32-bit mark matches too: about 5e-23 a payment.

    A producer who makes two ids share a hash (about 2**24 work offline, since the hash is not
    keyed) gains nothing: the second payment's content mark differs from the first's (unless
    it also guesses the secret mark, below), so it becomes a visible dead letter (a reused
    id), never a silent repeat. Unkeyed on purpose: it does not change when the key does, so
    after a key rotation a redelivered payment is still recognised as one of the card's ids,
    and is refused as a reused id rather than counted twice."""
    digest = blake2b(transaction_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _ID_MASK


MARK_BYTES = 4
MARK_KEY_BYTES = 32
_MARK_PERSON = b"payscore-marks-1"  # BLAKE2b personalisation: 16 bytes, this use only
_CRC_TAG = 1 << 32  # a CRC-32 mark of a snapshot of two releases before: _CRC_TAG + crc
_WIDE = 1 << 33  # a 128-bit BLAKE2b mark of the release before is at or above this
_BLAKE_BYTES = 16  # the release before's marks, and the width of a snapshot that holds one


def mark_key(secret: bytes) -> bytes:
    """The key of the content marks, derived from ``secret`` (the model signing key every
    process of the flow already reads, ``PAYSCORE_MODEL_KEY_FILE``): BLAKE2b keyed with the
    secret, with its own personalisation, so the marks' key reveals nothing of the signing key
    and no other use of that key shares this one. The same in every process and across
    restarts, as the marks in recovery snapshots require. Pure: no I/O (the flow's builder
    reads the key file and passes the secret in)."""
    if not 16 <= len(secret) <= 64:
        raise ValueError(
            f"mark_key: the secret must be 16 to 64 bytes (the model signing key is 32); "
            f"got {len(secret)}"
        )
    return blake2b(
        b"card step: content marks of recent transaction ids",
        key=secret,
        digest_size=MARK_KEY_BYTES,
        person=_MARK_PERSON,
    ).digest()


def content_mark(payment: Payment, key: bytes) -> int:
    """A 32-bit mark of everything the payment says: BLAKE2b of its JSON keyed with ``key``
    (:func:`mark_key`), truncated to 32 bits.

    Why 32 bits suffice: a payment vanishes as a "repeat" only if its id's hash is among its
    card's last ids *and* its mark equals that id's mark. Honest traffic: a redelivery has the
    same JSON, so the same mark; a different payment reusing an id (rare in itself) matches
    with odds 2**-32, then it would be skipped instead of refused. A producer who wants a
    payment to vanish must find content whose mark equals the first one's: without the key
    the mark is a pseudo-random function of the content, so nothing computed offline helps
    (unlike the unkeyed CRC-32 of two releases ago, where two colliding payments were found
    in seconds, or an unkeyed 32-bit hash, where 2**32 offline work would do); each try costs
    a submitted payment on one card, and succeeds with odds 2**-32: about 2**31 payments per
    success, infeasible online and loud long before (every failed try is a dead letter).
    Against the 128-bit marks of the release before this saves 12 bytes an id, 768 bytes a
    card of 64 remembered ids.

    Key rotation: a payment marked before the rotation and delivered again after it has the
    same id hash and (almost surely) another mark, so it becomes a dead letter "reused id":
    visible, never silently dropped, never counted twice."""
    return _mark(_encode(payment), key)


def _mark(encoded: bytes, key: bytes) -> int:
    return int.from_bytes(blake2b(encoded, key=key, digest_size=MARK_BYTES).digest(), "little")


def _same(seen: int, encoded: bytes, mark: int) -> bool:
    """Whether the remembered mark ``seen`` is that of ``encoded`` (whose mark is ``mark``)."""
    if seen == mark:
        return True
    if seen < _CRC_TAG:
        return False
    if seen < _WIDE:  # CRC-32, from a snapshot of two releases before
        return seen - _CRC_TAG == zlib.crc32(encoded)
    return seen == int.from_bytes(blake2b(encoded, digest_size=_BLAKE_BYTES).digest(), "little")


def pack_recent(
    low: array[int], high: array[int], marks: array[int] | list[int]
) -> bytes | tuple[bytes, bytes, int, int]:
    """The recent ids for a snapshot, from the columns a :class:`KeyedHistory` keeps: one
    ``bytes`` of the id hashes' low 32 bits, their high 16 bits and the 4-byte marks (10 bytes
    an id, copies of the columns); while a mark of an earlier release is still among them (the
    marks a list), ``(id hashes as 6 bytes each, marks as 16 bytes each, 16, 6)``."""
    if isinstance(marks, array):
        return b"".join((low, high, marks))
    wide = b"".join(m.to_bytes(_BLAKE_BYTES, "little") for m in marks)
    return low.tobytes() + high.tobytes(), wide, _BLAKE_BYTES, ID_BITS // 8


def _mark_column(marks: Iterable[int]) -> array[int] | list[int]:
    """The marks as a column of 32-bit integers, or a list while one of them is wider."""
    listed = list(marks)
    return array("I", listed) if not listed or max(listed) < _CRC_TAG else listed


def _halves(packed: bytes | memoryview, n: int) -> list[int]:
    """``n`` id hashes from their low 32-bit halves followed by their high 16 bits."""
    low, high = array("I"), array("H")
    low.frombytes(packed[: 4 * n])
    high.frombytes(packed[4 * n : 6 * n])
    return [lo | hi << 32 for lo, hi in zip(low, high, strict=True)]


def unpack_recent(state: object) -> list[tuple[int, int]]:
    """(id hash, mark) pairs, oldest first, from the recent ids of a snapshot of this release
    (:func:`pack_recent`) or of an earlier one (64-bit id hashes, taken to their low 48 bits):
    4-byte keyed marks or 16-byte BLAKE2b marks (with their width), 16-byte BLAKE2b marks or
    4-byte CRC-32 marks (two bytes objects), or (transaction id, CRC-32) pairs from before ids
    were hashed."""
    if isinstance(state, bytes):  # this release: 10 bytes an id
        n = len(state) // 10
        narrow = array("I")
        narrow.frombytes(state[6 * n :])
        return list(zip(_halves(state, n), narrow, strict=True))
    if isinstance(state, tuple) and len(state) == 4:  # this release, earlier marks among them
        packed_keys, wide, width, _ = state
        keys = _halves(packed_keys, len(packed_keys) // 6)
        marks = [int.from_bytes(wide[i : i + width], "little") for i in range(0, len(wide), width)]
        return list(zip(keys, marks, strict=True))
    if isinstance(state, tuple) and len(state) in (2, 3) and isinstance(state[0], bytes):
        keys = array("Q")
        keys.frombytes(state[0])
        packed: bytes = state[1]
        if len(state) == 3:  # this release: marks of the width it says
            width: int = state[2]
            if width == MARK_BYTES:
                narrow = array("I")
                narrow.frombytes(packed)
                marks = list(narrow)
            else:  # wide: the values as they were in memory, earlier releases' tags included
                marks = [
                    int.from_bytes(packed[i : i + width], "little")
                    for i in range(0, len(packed), width)
                ]
        elif len(packed) == _BLAKE_BYTES * len(keys):  # the release before: 128-bit BLAKE2b
            marks = [
                _legacy(int.from_bytes(packed[i : i + _BLAKE_BYTES], "little"))
                for i in range(0, len(packed), _BLAKE_BYTES)
            ]
        else:  # two releases before: CRC-32 marks, 4 bytes each
            crcs = array("I")
            crcs.frombytes(packed)
            marks = [_CRC_TAG + crc for crc in crcs]
        return [(key & _ID_MASK, mark) for key, mark in zip(keys, marks, strict=True)]
    # before ids were hashed: (transaction id, CRC-32) pairs
    return [(id_hash(txn), _legacy(mark)) for txn, mark in state]  # type: ignore[attr-defined]


def _legacy(mark: int) -> int:
    """A mark of an earlier release as this one holds it: a CRC-32 tagged, a BLAKE2b as is."""
    return _CRC_TAG + mark if mark < _CRC_TAG else mark


class KeyedHistory(StatefulBatchLogic[Positioned | LabelNote, Positioned, Snapshot]):
    def __init__(
        self,
        history: History,
        last_touch: float,
        idle_seconds: float,
        recent_ids: Recent | None = None,
        remember: int = 0,
        timed: Callable[[float], None] | None = None,
        mark_key: bytes = b"",
        compact: bool = False,
    ) -> None:
        self._compact = compact  # the history's smallest state rather than its fastest
        self._mark_key = mark_key  # of the content marks (content_mark); needed with recent_ids
        self._timed = timed  # given the seconds each snapshot() took
        self._history = history
        self._last_touch = last_touch
        self._idle_seconds = idle_seconds
        self._recent_ids = recent_ids  # for look-ups; and the same ids packed, oldest first:
        self._low = array("I", (key & _LOW for key in recent_ids or ()))
        self._high = array("H", (key >> 32 for key in recent_ids or ()))
        self._marks = _mark_column((recent_ids or {}).values())
        self._remember = remember

    def on_batch(self, values: list[Positioned | LabelNote]) -> tuple[list[Positioned], bool]:
        out = []
        observe = self._history.observe
        recent = self._recent_ids
        for value in values:
            if isinstance(value, Positioned):
                if recent is not None:
                    txn, encoded = value.event.transaction_id, _encode(value.event)
                    mark = _mark(encoded, self._mark_key)
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
                    low, high, marks = self._low, self._high, self._marks
                    low.append(key & _LOW)
                    high.append(key >> 32)
                    marks.append(mark)
                    if len(low) > self._remember:
                        del recent[low[0] | high[0] << 32], low[0], high[0], marks[0]
                        if type(marks) is list and max(marks) < _CRC_TAG:  # old marks gone
                            self._marks = _mark_column(marks)
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

    def snapshot(self, compact: bool | None = None) -> Snapshot:
        """The key's state, pickled: its history's (the smallest form with ``compact``, else
        the fastest; None: as the step was built), its last touch and its recent ids."""
        started = time.perf_counter()
        recent = None
        if self._recent_ids is not None:
            recent = pack_recent(self._low, self._high, self._marks)
        small = self._compact if compact is None else compact
        state = pickle.dumps(
            (_history_state(self._history, small), self._last_touch, recent),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        if self._timed is not None:
            self._timed(time.perf_counter() - started)
        return state

    def state_parts(self) -> dict[str, int]:
        """Bytes of each part of :meth:`snapshot` in its smallest form, for the benchmarks:
        the history's own parts (its ``state_parts``, when it has one), the history's pickle
        beyond them, the recent ids, and the rest (last touch and framing). They add up to the
        snapshot."""
        whole = len(self.snapshot(compact=True))
        parts: dict[str, int] = {}
        history = self._history
        state_parts = getattr(history, "state_parts", None)
        pickled = len(pickle.dumps(_history_state(history, True), protocol=pickle.HIGHEST_PROTOCOL))
        if state_parts is not None:
            parts.update(state_parts())
            if framing := pickled - sum(parts.values()):
                parts["history framing"] = framing
        else:
            parts["history"] = pickled
        if self._recent_ids is not None:
            recent = pack_recent(self._low, self._high, self._marks)
            packed = recent if isinstance(recent, bytes) else recent[0] + recent[1]
            parts["recent ids"] = len(packed)
        parts["step (last touch, framing)"] = whole - sum(parts.values())
        return parts


def _history_state(history: History, compact: bool) -> object:
    """What a snapshot keeps of ``history``: its state tuple (``__getstate__``, its smallest;
    without ``compact``, its ``fast_state`` when it has one), without the name of its class,
    which the step's builder knows; the object itself if its state is not a tuple."""
    fast = None if compact else getattr(history, "fast_state", None)
    state = history.__getstate__() if fast is None else fast()  # type: ignore[attr-defined]
    return state if isinstance(state, tuple) else history


def keyed_history(
    new_history: Callable[[], History],
    idle_seconds: float,
    remember: int = 0,
    name: str = "",
    *,
    mark_key: bytes | None = None,
    compact: bool = False,
) -> Callable[[Snapshot | None], KeyedHistory]:
    """The builder ``op.stateful_batch`` calls for a new key or a key resumed from a snapshot;
    the first key of step ``name`` resumed in a process is logged (event ``resumed``); the time
    its snapshots take is counted in ``payscore_snapshot_seconds_total{step=name}``. With
    ``remember > 0``, ``mark_key`` (:func:`mark_key` of a secret every process shares) keys the
    content marks of the remembered ids. ``compact``: snapshots in the histories' smallest
    form (``PAYSCORE_CARD_SNAPSHOTS=compact``), else their fastest; either restores."""
    if remember > 0 and (mark_key is None or len(mark_key) < 16):
        raise ValueError(
            f"keyed_history {name!r}: remembering {remember} ids needs mark_key, a secret of at "
            f"least 16 bytes shared by every process (dataflows.keyed_history.mark_key of the "
            f"model signing key); got {'none' if mark_key is None else f'{len(mark_key)} bytes'}"
        )
    key = mark_key or b""
    logged = threading.Event()
    kind: type | None = None  # of the histories new_history makes, to restore their states
    timed = snapshot_timer(name or "history")

    def recent_ids(ids: object = ()) -> Recent | None:
        if remember <= 0:
            return None
        return dict(unpack_recent(ids)[-remember:])

    def build(resume: Snapshot | None) -> KeyedHistory:
        if resume is None:
            return KeyedHistory(
                new_history(),
                time.time(),
                idle_seconds,
                recent_ids(),
                remember,
                timed,
                key,
                compact,
            )
        history, last_touch, recent = pickle.loads(resume)
        if isinstance(history, tuple):  # its state (_history_state); earlier: the object
            nonlocal kind
            if kind is None:
                kind = type(new_history())
            state = history
            history = kind.__new__(kind)
            history.__setstate__(state)  # type: ignore[attr-defined]
        if not logged.is_set():
            logged.set()
            log.info(
                "%s: keys resumed from a recovery snapshot",
                name or "feature histories",
                extra={"event": "resumed", "reason": name},
            )
        return KeyedHistory(
            history,
            last_touch,
            idle_seconds,
            recent_ids(recent or ()),
            remember,
            timed,
            key,
            compact,
        )

    return build
