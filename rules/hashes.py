"""A set of 64-bit string hashes in at most 12 bytes an entry, for large lists: constant-time
look-ups.

A Python ``set`` of ``hash(value)`` ints costs about 64 bytes an entry (a 32-byte int object
and 16-32 bytes of a table kept at most 60 % full): 65 MB for a million-entry list, in every
process. :class:`SortedHashes` keeps the hashes sorted in one array (8 bytes each) and, per
**bucket** of hashes sharing their top bits (one bucket for one to two entries), where its
hashes start (4 bytes a bucket). A look-up reads the two bounds of the hash's bucket and bisects
the hashes between them (one or two on average, a handful at worst): constant time, but in
Python, slower than a ``set``'s look-up in C, which is why
:func:`hash_set` keeps a ``set`` for lists up to :data:`COMPACT_FROM` entries (a few MB).

It is built from NumPy arrays of hashes, one a batch of decoded values, sorted in place: the
values are never held as Python objects all at once (``rules.lists.unpack``).

>>> values = [f"c-{i}" for i in range(1000)]
>>> hashes = SortedHashes.from_batches([np.fromiter(map(hash, values), np.int64, 1000)])
>>> len(hashes), hash("c-7") in hashes, hash("c-1000") in hashes
(1000, True, False)
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator
from typing import Final

import numpy as np

COMPACT_FROM: Final = 65_536  # entries; a set of as many ints keeps about 4 MB


class SortedHashes:
    """Distinct 64-bit hashes, sorted, with the start of each bucket (see the module)."""

    __slots__ = ("_hashes", "_offset", "_shift", "_starts")

    def __init__(self, hashes: np.ndarray) -> None:
        """``hashes``: int64, sorted, distinct (:meth:`from_batches` makes them so)."""
        bits = min(max(len(hashes).bit_length() - 1, 1), 32)  # 1 to 2 hashes a bucket
        self._shift = 64 - bits
        self._offset = 1 << (bits - 1)  # a hash is signed: its top bits + offset >= 0
        bucket = (hashes >> self._shift) + self._offset
        bounds = np.searchsorted(bucket, np.arange((1 << bits) + 1, dtype=np.int64))
        del bucket
        self._starts = array("I")
        self._starts.frombytes(memoryview(bounds.astype(np.uint32)).cast("B"))
        self._hashes = array("q")
        self._hashes.frombytes(memoryview(np.ascontiguousarray(hashes, np.int64)).cast("B"))

    @classmethod
    def of(cls, hashes: np.ndarray) -> SortedHashes:
        """From an int64 array of hashes in any order, repeats allowed (sorted in place)."""
        hashes.sort()
        if len(hashes) > 1:
            repeated = hashes[1:] == hashes[:-1]
            if repeated.any():
                hashes = hashes[np.concatenate(([True], ~repeated))]
            del repeated
        return cls(hashes)

    @classmethod
    def from_batches(cls, batches: Iterable[np.ndarray]) -> SortedHashes:
        """From int64 arrays of hashes, in any order, repeats allowed."""
        chunks = list(batches)
        hashes = np.concatenate(chunks) if chunks else np.empty(0, np.int64)
        chunks.clear()
        return cls.of(hashes)

    def __contains__(self, h: int) -> bool:
        """``h``: a ``hash()`` value (a signed 64-bit int)."""
        b = (h >> self._shift) + self._offset
        starts = self._starts
        lo, hi = starts[b], starts[b + 1]
        if lo == hi:
            return False
        hashes = self._hashes
        i = bisect_left(hashes, h, lo, hi)
        return i < hi and hashes[i] == h

    def __len__(self) -> int:
        return len(self._hashes)

    def __iter__(self) -> Iterator[int]:
        return iter(self._hashes)

    def array(self) -> np.ndarray:
        """The hashes, sorted, as a read-only NumPy view (no copy)."""
        return np.frombuffer(self._hashes, np.int64)

    def nbytes(self) -> int:
        """Bytes of its two arrays (the object headers apart)."""
        return len(self._hashes) * self._hashes.itemsize + len(self._starts) * self._starts.itemsize


def hash_set(batches: Iterable[np.ndarray], *, compact_from: int | None = None) -> Collection[int]:
    """The hashes of ``batches`` (int64 arrays) as a ``set``, or as :class:`SortedHashes` when
    there are at least ``compact_from`` of them (repeats counted; None: :data:`COMPACT_FROM`)."""
    chunks = list(batches)
    if sum(len(c) for c in chunks) < (COMPACT_FROM if compact_from is None else compact_from):
        return {h for c in chunks for h in c.tolist()}
    hashes = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)
    chunks.clear()  # the batches are freed before the sort
    return SortedHashes.of(hashes)


def hashes_of(values: list[str]) -> np.ndarray:
    """``hash(v)`` of each value, as int64 (the process's own string hashes)."""
    return np.fromiter(map(hash, values), np.int64, len(values))
