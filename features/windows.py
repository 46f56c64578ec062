"""Sawtooth windows over event time, and the time tiles that hold them in bounded memory.

A :class:`Window` has a length ``W`` and a hop ``R`` that divides it. For a payment scored at
event time ``t`` (POSIX seconds) the window holds the earlier-seen events whose time ``s`` satisfies

    start(t) <= s <= t,    start(t) = (floor(t / R) - W / R) * R

so the window starts on a hop boundary (tiles are aligned to the POSIX epoch, i.e. to UTC) and
reaches back ``W`` plus the part of the current hop already gone: its span is ``W + (t mod R)``,
between ``W`` (inclusive) and ``W + R`` (exclusive). An event exactly ``W`` old is always in; an
event more than ``W + R`` old never is. This is Chronon's "sawtooth" window. Because its start
is a tile boundary, whole tiles are either in or out, so a window is computed *exactly* from
per-tile aggregates: the features have no error relative to this definition.

A tile store keeps one aggregate per non-empty tile: at most ``W / R + 1`` tiles per window, so
its size is bounded by the window and the hop, never by traffic. Tiles are parallel columns of
ints (tile index, count, and for amounts the total and the peak in euro cents), sorted by tile
index: lists in :class:`CountTiles`, machine-integer arrays in :class:`AmountTiles` (whose
state is then a copy of their buffers).

>>> hour = Window("1h", 3600, 300)
>>> hour.start(10_000.0)  # 10,000 s lies in the hop [9,900, 10,200): start 9,900 - 3,600
6300.0
>>> tiles = AmountTiles(300)
>>> for s, cents in [(6_299.0, 500), (6_300.0, 700), (9_999.0, 200), (9_999.5, 0)]:
...     tiles.add(s, cents)
>>> tiles.aggregate_from(hour.start_index(10_000.0))  # (count, paid, total, peak): 6,299 s is out
(3, 2, 900, 700)
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Window:
    """A sawtooth window: ``length`` seconds plus up to one ``hop`` (see the module docstring).

    Parameters
    ----------
    name
        The suffix of the feature names, e.g. ``"24h"`` in ``card_count_24h``.
    length
        ``W`` in seconds; a whole number of hops.
    hop
        ``R`` in seconds: the tile size, and the most the window may reach beyond ``W``.
    """

    name: str
    length: int
    hop: int

    def __post_init__(self) -> None:
        if self.hop <= 0 or self.length <= 0 or self.length % self.hop:
            raise ValueError(
                f"window {self.name!r}: length must be a positive whole number of hops; "
                f"got length={self.length}s, hop={self.hop}s"
            )

    @property
    def hops(self) -> int:
        """``W / R``: how many whole tiles lie before the tile of ``t``."""
        return self.length // self.hop

    def start_index(self, t: float) -> int:
        """Index of the first tile in the window of a payment at ``t``."""
        return int(t // self.hop) - self.length // self.hop

    def start(self, t: float) -> float:
        """Earliest event time in the window of a payment at ``t`` (a tile boundary)."""
        return float(self.start_index(t) * self.hop)


def tile_index(t: float, hop: int) -> int:
    """The tile of event time ``t``: ``floor(t / hop)``, exact for floats (``//`` is exact)."""
    return int(t // hop)


class CountTiles:
    """Event counts per tile of ``hop`` seconds, for the events that have left the exact tail.

    Events may be added in any order; in-order adds append or bump the last tile.
    """

    __slots__ = ("count", "hop", "index")

    def __init__(self, hop: int) -> None:
        self.hop = hop
        self.index: list[int] = []
        self.count: list[int] = []

    def _slot(self, t: float) -> int:
        """Position of the tile of ``t``, creating it (with zeros) when missing."""
        i = int(t // self.hop)
        index = self.index
        if index and i == index[-1]:
            return len(index) - 1
        if not index or i > index[-1]:
            self._insert(len(index), i)
            return len(index) - 1
        k = bisect_left(index, i)
        if index[k] != i:
            self._insert(k, i)
        return k

    def _insert(self, k: int, i: int) -> None:
        self.index.insert(k, i)
        self.count.insert(k, 0)

    def add(self, t: float, n: int = 1) -> None:
        """Count ``n`` events at time ``t``."""
        i = int(t // self.hop)
        index = self.index
        if index and index[-1] == i:
            self.count[-1] += n
        elif not index or index[-1] < i:
            index.append(i)
            self.count.append(n)
        else:
            self.count[self._slot(t)] += n

    def count_from(self, first: int) -> int:
        """Events in tiles ``first`` and later."""
        k = bisect_left(self.index, first)
        return sum(self.count[k:]) if k else sum(self.count)

    def count_between(self, first: int, end: int) -> int:
        """Events in tiles ``first`` to ``end - 1``."""
        index = self.index
        return sum(self.count[bisect_left(index, first) : bisect_left(index, end)])

    def drop_before(self, first: int) -> None:
        """Forget tiles before index ``first``."""
        index = self.index
        if index and index[0] < first:
            k = bisect_left(index, first)
            del index[:k], self.count[:k]

    def __len__(self) -> int:
        return len(self.index)

    def state(self) -> tuple[tuple[int, ...], ...]:
        """The tiles as immutable tuples (for ``__getstate__``)."""
        return (tuple(self.index), tuple(self.count))

    def restore(self, state: tuple[tuple[int, ...], ...]) -> None:
        """Load what :meth:`state` returned."""
        index, count = state
        self.index, self.count = list(index), list(count)

    def copy(self) -> CountTiles:
        """An independent copy (the lists hold ints, so copying the lists suffices)."""
        new = CountTiles(self.hop)
        new.index, new.count = self.index.copy(), self.count.copy()
        return new


# AmountTiles' columns (index, count, paid, total, peak): machine integers, narrow while the
# values fit; a column that would overflow widens the level to _WIDE, and past that (a total
# beyond 2**63 cents) to Python lists, as the tiles were before.
_NARROW = "iHHii"
_WIDE = "qqqqq"
_ITEMSIZE = {code: array(code).itemsize for code in _NARROW + _WIDE}


class Column(array):  # type: ignore[type-arg]
    """An ``array.array`` that can also be emptied as a list is (``clear``)."""

    __slots__ = ()

    def clear(self) -> None:
        del self[:]


class AmountTiles(CountTiles):
    """Count, count of non-zero amounts, total and peak of integer amounts (euro cents) per tile
    of ``hop`` seconds. An amount of 0 (a card verification) counts as an event, not as money.

    The columns are ``array.array`` s of machine integers (``_NARROW``, widened to 64 bits when a
    value would not fit, then to lists of Python ints): :meth:`state` is their buffers joined,
    a copy with no conversion per tile."""

    __slots__ = ("codes", "paid", "peak", "total")

    def __init__(self, hop: int) -> None:
        self.hop = hop
        self.codes = _NARROW  # the columns' typecodes; "" when they are lists
        self.index: Any = Column("i")
        self.count: Any = Column("H")
        self.paid: Any = Column("H")
        self.total: Any = Column("i")
        self.peak: Any = Column("i")

    def _columns(self) -> tuple[Any, Any, Any, Any, Any]:
        return self.index, self.count, self.paid, self.total, self.peak

    def _widen(self) -> None:
        """Make room for larger values: narrow columns to 64 bits, 64-bit ones to lists."""
        columns = self._columns()
        if self.codes == _NARROW:
            widened: list[Any] = [Column(code, c) for code, c in zip(_WIDE, columns, strict=True)]
            self.codes = _WIDE
        else:
            widened = [list(c) for c in columns]
            self.codes = ""
        self.index, self.count, self.paid, self.total, self.peak = widened

    def _insert(self, k: int, i: int) -> None:
        super()._insert(k, i)
        self.paid.insert(k, 0)
        self.total.insert(k, 0)
        self.peak.insert(k, 0)

    def add(self, t: float, n: int = 1) -> None:
        """Add one event of ``n`` cents at time ``t``."""
        i = int(t // self.hop)
        index = self.index
        if not index or index[-1] < i:  # the usual case: a new latest tile
            try:
                self.total.append(n)
                self.peak.append(n)
                index.append(i)
                self.count.append(1)
                self.paid.append(1 if n else 0)
            except OverflowError:  # undo the part appended, make room, append again
                kept = len(self.count)
                self._widen()
                for column in self._columns():
                    del column[kept:]
                self.add(t, n)
            return
        k = len(index) - 1 if index[-1] == i else self._slot(t)
        # Values computed first and stored whole, so that storing again after widening is right.
        count, total = self.count[k] + 1, self.total[k] + n
        paid, peak = self.paid[k] + (1 if n else 0), max(self.peak[k], n)
        try:
            self._store(k, count, paid, total, peak)
        except OverflowError:
            self._widen()
            self._store(k, count, paid, total, peak)

    def _store(self, k: int, count: int, paid: int, total: int, peak: int) -> None:
        self.count[k], self.paid[k], self.total[k], self.peak[k] = count, paid, total, peak

    def aggregate_from(self, first: int) -> tuple[int, int, int, int]:
        """``(count, paid, total, peak)`` over tiles ``first`` and later (``paid``: events with
        a non-zero amount); all 0 when none."""
        k = bisect_left(self.index, first)
        if k == len(self.index):
            return 0, 0, 0, 0
        if k:
            return (
                sum(self.count[k:]),
                sum(self.paid[k:]),
                sum(self.total[k:]),
                max(self.peak[k:]),
            )
        return sum(self.count), sum(self.paid), sum(self.total), max(self.peak)

    def drop_before(self, first: int) -> None:
        """Forget tiles before index ``first``."""
        index = self.index
        if index and index[0] < first:
            k = bisect_left(index, first)
            del index[:k], self.count[:k], self.paid[:k], self.total[:k], self.peak[:k]

    def state(self) -> tuple[str, bytes] | tuple[tuple[int, ...], ...]:
        """For ``__getstate__``: ``(typecodes, the columns' buffers joined)``; a level that grew
        past 64 bits gives its tiles as tuples (the form of earlier releases)."""
        if self.codes:
            return self.codes, b"".join((self.index, self.count, self.paid, self.total, self.peak))
        return tuple(tuple(c) for c in self._columns())

    @classmethod
    def restored(
        cls, hop: int, state: tuple[str, bytes] | tuple[tuple[int, ...], ...]
    ) -> AmountTiles:
        """Tiles of ``hop`` seconds loaded from ``state`` (:meth:`restore`), without first making
        the empty columns a new instance has."""
        tiles = cls.__new__(cls)
        tiles.hop = hop
        tiles.restore(state)
        return tiles

    def tuples(self) -> tuple[tuple[int, ...], ...]:
        """The tiles as tuples of ints, as :meth:`state` of earlier releases gave them."""
        return tuple(tuple(c) for c in self._columns())

    def restore(self, state: tuple[str, bytes] | tuple[tuple[int, ...], ...]) -> None:
        """Load what :meth:`state` returned, or the tuples of an earlier release."""
        if len(state) == 2 and isinstance(state[0], str):
            codes, blob = state
            width = sum(_ITEMSIZE[code] for code in codes)
            n, at = len(blob) // width, 0
            columns: list[Any] = []
            for code in codes:
                column = Column(code)
                size = n * column.itemsize
                column.frombytes(blob[at : at + size])
                columns.append(column)
                at += size
            self.index, self.count, self.paid, self.total, self.peak = columns
            self.codes = codes
            return
        index, count, paid, total, peak = state  # tuples of ints, of earlier releases
        for codes in (_NARROW, _WIDE):
            try:
                self.index, self.count, self.paid, self.total, self.peak = (
                    Column(code, c) for code, c in zip(codes, state, strict=True)
                )
                self.codes = codes
                return
            except OverflowError:
                continue
        self.index, self.count, self.paid = list(index), list(count), list(paid)
        self.total, self.peak = list(total), list(peak)
        self.codes = ""

    def copy(self) -> AmountTiles:
        """An independent copy."""
        new = AmountTiles(self.hop)
        new.index, new.count, new.paid, new.total, new.peak = (
            Column(c.typecode, c) if isinstance(c, array) else c.copy() for c in self._columns()
        )
        new.codes = self.codes
        return new
