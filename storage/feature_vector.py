"""The features a payment was scored with, packed: what the backtest reads a million of.

The flow stores each payment's features twice: as JSON in ``scored_payments.features`` (what
people, ``review.explain`` and the retrainer read) and packed in ``feature_vector``, a fixed-size
binary string the backtest turns into a NumPy table in one call per chunk of rows, without
decoding any JSON (``benchmarks/bench_backtest.py``)::

    bytes 0-7   header: format (1 byte, FORMAT), 3 zero bytes, catalogue fingerprint (uint32 LE)
    bytes 8-    one float64 (little-endian) per feature of features.catalog.FEATURE_NAMES,
                in catalogue order

The fingerprint is the CRC-32 of the catalogue's names in order: a vector packed under another
catalogue (a feature added, removed or moved) does not match :data:`HEADER`, and its reader takes
the JSON instead. A feature absent from the dict, or not finite, is NaN: exactly what the JSON
gives (msgspec writes a non-finite float as ``null``, and the backtest reads ``null`` and an
absent key as NaN, missing). Finite values are bit for bit the JSON's (it holds the shortest
repr of each float64, which reads back to the same float64).

>>> vector = pack({"amount_eur": 12.5})
>>> len(vector) == SIZE, vector[:8] == HEADER
(True, True)
>>> table = unpack([vector], ["amount_eur", "card_count_1h"])
>>> table.tolist()
[[12.5, nan]]
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Final, NoReturn

import numpy as np

from features.catalog import FEATURE_NAMES

FORMAT: Final = 1
FINGERPRINT: Final = zlib.crc32("\n".join(FEATURE_NAMES).encode())
HEADER: Final = struct.pack("<B3xI", FORMAT, FINGERPRINT)
SIZE: Final = len(HEADER) + 8 * len(FEATURE_NAMES)
INDEX: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}
_ALL = itemgetter(*FEATURE_NAMES)
_PACK = struct.Struct(f"<8s{len(FEATURE_NAMES)}d").pack
_VALUES = struct.Struct(f"<{len(FEATURE_NAMES)}d").unpack_from
_NAN = math.nan
# One packed vector as a NumPy record: its header and its values.
RECORD: Final = np.dtype([("header", "<u8"), ("values", "<f8", (len(FEATURE_NAMES),))])
_HEADER_WORD: Final = int.from_bytes(HEADER, "little")


def pack(features: Mapping[str, float]) -> bytes:
    """``features`` (name -> value) packed in catalogue order (see the module docstring)."""
    try:
        values = _ALL(features)
    except KeyError:  # some feature absent: NaN there
        values = tuple(map(features.get, FEATURE_NAMES, repeat(_NAN)))
    try:
        total = sum(values, 0.0)  # one C-level check: every value a finite number
    except TypeError:
        total = _NAN
    if not math.isfinite(total):  # some value absent, None or not finite: NaN there
        values = [_finite_or_nan(v) for v in values]
    return _PACK(HEADER, *values)


def _finite_or_nan(value: object) -> float:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return _NAN


def features_of(vector: bytes | None) -> dict[str, float] | None:
    """The features of one payment as its JSON column gives them (every catalogue name, in
    catalogue order), read from its packed ``vector``; None when only the JSON can say: no
    vector (a row stored before they were packed), one packed under another catalogue, or one
    holding a NaN (a feature absent or not finite, which the JSON tells apart). Cheaper than
    decoding the JSON: one ``struct`` call and a dict.

    >>> features_of(pack(dict.fromkeys(FEATURE_NAMES, 2.5))) == dict.fromkeys(FEATURE_NAMES, 2.5)
    True
    >>> features_of(pack({"amount_eur": 12.5})) is None  # the others absent: the JSON says so
    True
    """
    if vector is None or len(vector) != SIZE or vector[: len(HEADER)] != HEADER:
        return None
    values = _VALUES(vector, len(HEADER))
    if not math.isfinite(sum(values, 0.0)):  # a NaN (or a sum too large: the JSON decides)
        return None
    return dict(zip(FEATURE_NAMES, values, strict=True))


def unpack(vectors: Sequence[bytes], names: Sequence[str]) -> np.ndarray:
    """The ``names`` columns (float64, one row per vector) of ``vectors``, each packed by
    :func:`pack` with the current catalogue; ValueError names the first that is not."""
    if not vectors:
        return np.empty((0, len(names)))
    joined = b"".join(vectors)
    if len(joined) != SIZE * len(vectors):
        _refuse(vectors, next(i for i, v in enumerate(vectors) if len(v) != SIZE))
    records = np.frombuffer(joined, dtype=RECORD)
    foreign = records["header"] != _HEADER_WORD
    if foreign.any():
        _refuse(vectors, int(np.flatnonzero(foreign)[0]))
    return records["values"][:, [INDEX[name] for name in names]]


def _refuse(vectors: Sequence[bytes], bad: int) -> NoReturn:
    raise ValueError(
        f"feature vector {bad} of {len(vectors)} is not one of this catalogue: expected "
        f"{SIZE} bytes starting {HEADER.hex()}; got {len(vectors[bad])} bytes starting "
        f"{bytes(vectors[bad][:8]).hex()}"
    )


def current_sql(column: str = "feature_vector") -> str:
    """An SQL condition (MySQL 8 and MariaDB) true when ``column`` holds a vector of the current
    catalogue (false or NULL otherwise)."""
    return f"(LENGTH({column}) = {SIZE} AND LEFT({column}, {len(HEADER)}) = X'{HEADER.hex()}')"
