"""Named lists: what an entry may hold, the packed form a list is loaded from, and its form in a
process.

A list has a kind (:data:`rules.names.LIST_KINDS`): ``card``, ``merchant``, ``terminal``,
``device`` (identifiers as in the contract), ``country`` (ISO 3166-1 alpha-2) or ``bin`` (a
prefix of ``card_id``, matched with ``card_id starts with @list``). An entry carries an optional
expiry, a reason and who added it; it applies to a payment whose event time is before its expiry.

**In a process** (:class:`ListIndex`) a list is a set of the process's own 64-bit string
hashes (``hash(value)``: SipHash-1-3 under a key random per process), built at load time from
the packed values: a Python ``set`` for a list of fewer than :data:`rules.hashes.COMPACT_FROM`
entries, a :class:`rules.hashes.SortedHashes` (12 bytes an entry instead of about 64) for a
larger one. A look-up hashes the payment's value (cached on the string) and tests the set:
constant time, no string kept. A value that is not in the list is taken for one with
probability at most n / 2**64 per look-up (5.4e-14 for a million entries: one false hit in
about 2e13 look-ups), and the random key means nobody can craft a colliding id. Expiries are
kept apart, in a dict of the entries that have one, read only on a hit. A BIN-prefix list keeps
one set per prefix length, so a look-up costs one hash per distinct length (usually 6 and 8).

**Packed form** (:func:`pack` / :func:`unpack`): one zlib stream of a JSON header (kind, size,
the expiries) and the values, sorted, one a line; written once per change of the list, in parts
of at most :data:`PART_BYTES` (below MySQL's default ``max_allowed_packet``). Loading a list is a
few reads of large blobs, one at a time, not a million rows, decompressed a megabyte at a time
straight into arrays of hashes (``benchmarks/bench_rules.py`` measures it).

**CSV import** (:func:`read_csv`): a header line naming ``value`` and optionally ``expires_at``
(ISO 8601 with a UTC offset, or a date: midnight UTC) and ``reason``; a leading byte-order mark
is ignored. Every bad row is reported with its line number and why (a record csv itself cannot
read, such as a field past its size limit, too: the rows after it are still read); the caller
refuses the whole file when any row is bad unless asked to import the good ones
(``python -m rules import --skip-bad``).

>>> index = ListIndex.build("blocked_cards", "card", {"c-1": None, "c-2": 1_800_000_000.0})
>>> index.contains("c-1", 0.0), index.contains("c-2", 1_700_000_000.0), index.contains("c-2", 1.9e9)
(True, True, False)
>>> bins = ListIndex.build("risky_bins", "bin", {"411111": None, "5500": None})
>>> bins.contains("41111122334455", 0.0), bins.contains("4111", 0.0)
(True, False)
"""

from __future__ import annotations

import csv
import io
import math
import re
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final

import msgspec
import numpy as np

from features.contract import COUNTRIES
from rules.hashes import hash_set, hashes_of
from rules.names import LIST_KINDS, PREFIX_KINDS

PART_BYTES: Final = 4 * 1024 * 1024
MAX_REASON_CHARS: Final = 500
MAX_REPORTED_ROWS: Final = 50  # bad CSV rows listed one by one; the rest are counted
LIST_NAME: Final = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_IDENTIFIER: Final = re.compile(r"\A[A-Za-z0-9_.:\-]{1,64}\Z")
NO_EXPIRY: Final = math.inf


def check_list_name(name: str) -> str:
    if not isinstance(name, str) or not LIST_NAME.match(name):
        raise ValueError(
            "a list name is a letter or _ then up to 63 letters, digits or _ "
            f"(written @name in rules); got {str(name)[:70]!r}"
        )
    return name


def check_kind(kind: str) -> str:
    if kind not in LIST_KINDS:
        raise ValueError(f"a list's kind is one of {', '.join(LIST_KINDS)}; got {str(kind)[:30]!r}")
    return kind


def check_value(kind: str, value: str) -> str:
    """``value`` if an entry of a ``kind`` list may hold it, else ValueError saying why."""
    if not isinstance(value, str):
        raise ValueError(f"an entry is text; got {type(value).__name__}")
    if kind == "country":
        if value not in COUNTRIES:
            raise ValueError(f"expected an ISO 3166-1 alpha-2 country code; got {value[:20]!r}")
        return value
    if not _IDENTIFIER.match(value):
        what = "a prefix of card ids" if kind in PREFIX_KINDS else f"a {kind} id"
        raise ValueError(
            f"expected {what}: 1 to 64 characters of A-Z a-z 0-9 _ . : -; got {value[:70]!r}"
        )
    return value


def check_reason(reason: str) -> str:
    if len(reason) > MAX_REASON_CHARS or any(not c.isprintable() for c in reason):
        raise ValueError(
            f"a reason is at most {MAX_REASON_CHARS} printable characters (no line break or "
            f"control character); got {len(reason)} characters"
        )
    return reason


def parse_expiry(text: str) -> datetime | None:
    """An expiry as written in a CSV or on the command line; empty: none."""
    text = text.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an expiry in ISO 8601 with a UTC offset (2026-12-31T00:00:00+00:00) or a "
            f"date (2026-12-31); got {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"an expiry needs a UTC offset (…+00:00); got {text[:40]!r}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00, 9999-12-31T23:00-05:00: no year in UTC
        raise ValueError(
            f"expected an expiry within the years 1 to 9999 in UTC; got {text[:40]!r}"
        ) from None


def future_expiry(
    expires: datetime | None, now: datetime, given: str, *, what: str = "--expires"
) -> None:
    """Refuse an expiry typed by a person (``list-add --expires``, the review page's field) that
    is not after ``now``: such an entry applies to no payment from now on, yet its change was
    stored and said ``version N`` as if it blocked something. ``given`` is the text typed (its
    first 40 characters are quoted); naive times are UTC. (A CSV feed or a backtest may hold past
    expiries: they apply to the payments before them.)

    >>> now = datetime(2026, 12, 7, tzinfo=UTC)
    >>> future_expiry(datetime(2027, 1, 1), now, "2027-01-01")
    >>> try:
    ...     future_expiry(datetime(2001, 1, 1, tzinfo=UTC), now, "2001-01-01")
    ... except ValueError as exc:
    ...     print(exc)
    --expires: expected a time after now (2026-12-07T00:00:00Z); got '2001-01-01', which has passed
    """
    if expires is None:
        return
    at = expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)
    if at <= now:
        raise ValueError(
            f"{what}: expected a time after now ({now.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z); got "
            f"{given.strip()[:40]!r}, which has passed"
        )


# ---------------------------------------------------------------------------- in a process


@dataclass(slots=True)
class ListIndex:
    """One list as a process holds it (see the module)."""

    name: str
    kind: str
    size: int
    hashes: Collection[int] = frozenset()  # exact kinds
    by_length: tuple[tuple[int, Collection[int]], ...] = ()  # prefix kinds: (length, hashes)
    expiries: dict[int, float] = field(default_factory=dict)  # hash -> POSIX expiry

    @classmethod
    def build(
        cls,
        name: str,
        kind: str,
        entries: Mapping[str, float | None],
        *,
        compact_from: int | None = None,
    ) -> ListIndex:
        """From value -> expiry (POSIX seconds) or None."""
        values = list(entries)
        expires = [(i, e) for i, e in enumerate(entries.values()) if e is not None]
        return cls.from_values(name, kind, values, expires, compact_from=compact_from)

    @classmethod
    def from_values(
        cls,
        name: str,
        kind: str,
        values: list[str],
        expires: Iterable[tuple[int, float]],
        *,
        compact_from: int | None = None,
    ) -> ListIndex:
        expiries = {hash(values[i]): float(e) for i, e in expires}
        return cls.from_batches(name, kind, len(values), [values], expiries, compact_from)

    @classmethod
    def from_batches(
        cls,
        name: str,
        kind: str,
        size: int,
        batches: Iterable[list[str]],
        expiries: dict[int, float],
        compact_from: int | None = None,
    ) -> ListIndex:
        """From the values a batch at a time (each batch's hashes kept as 8 bytes each, the
        strings freed); a set of hashes, or :class:`~rules.hashes.SortedHashes` for
        ``compact_from`` entries or more (:func:`rules.hashes.hash_set`; None: its default).
        "" is no entry."""
        index = cls(name, kind, size, expiries=expiries)
        if kind in PREFIX_KINDS:
            lengths: dict[int, list[np.ndarray]] = {}
            for batch in batches:
                by_length: dict[int, list[str]] = {}
                for v in batch:
                    if v:
                        by_length.setdefault(len(v), []).append(v)
                for length, values in by_length.items():
                    lengths.setdefault(length, []).append(hashes_of(values))
            index.by_length = tuple(
                (length, hash_set(chunks, compact_from=compact_from))
                for length, chunks in sorted(lengths.items())
            )
        else:
            index.hashes = hash_set(
                (hashes_of([v for v in batch if v] if "" in batch else batch) for batch in batches),
                compact_from=compact_from,
            )
        return index

    def contains(self, value: str | None, at: float) -> bool:
        """Whether ``value`` (or, for a prefix list, one of its prefixes) is an entry that has
        not expired at ``at`` (POSIX seconds: the payment's event time)."""
        if value is None:
            return False
        if self.by_length:
            for length, hashes in self.by_length:
                if len(value) < length:
                    break
                h = hash(value[:length])
                if h in hashes and at < self.expiries.get(h, NO_EXPIRY):
                    return True
            return False
        h = hash(value)
        return h in self.hashes and at < self.expiries.get(h, NO_EXPIRY)


# ---------------------------------------------------------------------------- packed


class _Header(msgspec.Struct):
    kind: str
    count: int
    expires: list[tuple[str, float]]  # (value, POSIX expiry), only entries that have one


def pack(kind: str, entries: Mapping[str, float | None]) -> list[bytes]:
    """The parts of a list's packed form: one zlib stream of a JSON header line (kind, size,
    expiries) and the values, sorted, one a line (no value holds a line break)."""
    values = sorted(entries)
    expires = [(v, float(e)) for v in values if (e := entries[v]) is not None]
    header = msgspec.json.encode(_Header(kind, len(values), expires))
    blob = zlib.compress(header + b"\n" + "\n".join(values).encode(), 6)
    return [blob[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)] or [blob]


def _line_batches(parts: Iterable[bytes]) -> Iterator[list[str]]:
    """The lines of a packed form, a megabyte at a time: a process never holds the whole list
    as text, only its hashes."""
    stream = zlib.decompressobj()
    carry = b""

    def pieces() -> Iterator[bytes]:
        for part in parts:
            data = part
            while data:
                yield stream.decompress(data, 1 << 20)
                data = stream.unconsumed_tail
        yield stream.flush()

    for piece in pieces():
        chunk = carry + piece
        cut = chunk.rfind(b"\n")
        if cut < 0:
            carry = chunk
            continue
        yield chunk[:cut].decode().split("\n")
        carry = chunk[cut + 1 :]
    if carry:
        yield [carry.decode()]


def _read(parts: Iterable[bytes]) -> tuple[_Header, Iterator[list[str]]]:
    batches = _line_batches(parts)
    first = next(batches)
    header = msgspec.json.decode(first[0], type=_Header)
    rest = first[1:]

    def values() -> Iterator[list[str]]:
        if rest:
            yield rest
        yield from batches

    return header, values()


def unpack(name: str, parts: Iterable[bytes], *, compact_from: int | None = None) -> ListIndex:
    """A list's in-process form from the parts :func:`pack` wrote, in order (an iterator of them
    is read one part at a time)."""
    header, batches = _read(parts)
    expiries = {hash(v): e for v, e in header.expires}
    return ListIndex.from_batches(name, header.kind, header.count, batches, expiries, compact_from)


def unpack_entries(parts: Iterable[bytes]) -> dict[str, float | None]:
    """A list's packed form back as value -> expiry (POSIX seconds) or None."""
    header, batches = _read(parts)
    entries: dict[str, float | None] = {}
    for batch in batches:
        entries.update(dict.fromkeys(v for v in batch if v))
    entries.update(header.expires)
    return entries


# ---------------------------------------------------------------------------- CSV


@dataclass(frozen=True, slots=True)
class CsvEntry:
    line: int
    value: str
    expires_at: datetime | None
    reason: str


@dataclass(slots=True)
class CsvRead:
    """The good rows of a CSV file and every bad one (line, why); ``bad_count`` counts all of
    them, ``bad`` lists the first :data:`MAX_REPORTED_ROWS`."""

    entries: list[CsvEntry]
    bad: list[tuple[int, str]]
    bad_count: int

    def report(self) -> str:
        lines = [f"line {n}: {why}" for n, why in self.bad]
        if self.bad_count > len(self.bad):
            lines.append(f"... and {self.bad_count - len(self.bad)} more bad rows")
        return "\n".join(lines)


def read_csv(text: str, kind: str) -> CsvRead:
    """Entries of a ``kind`` list from CSV ``text`` (see the module)."""
    check_kind(kind)
    # A byte-order mark (spreadsheets write one in "CSV UTF-8") is not part of the header.
    # strict: a quote that never closes is an error at the end of the file (csv read the rest as
    # the field: a last row ``c-2,"never closed`` was imported), ``"a"b`` one too (read as ab).
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    result = CsvRead([], [], 0)

    def bad(line: int, why: str) -> None:
        result.bad_count += 1
        if len(result.bad) < MAX_REPORTED_ROWS:
            result.bad.append((line, why[:200]))

    try:
        header = next(reader)
    except StopIteration:
        bad(1, "the file is empty; expected a header line: value,expires_at,reason")
        return result
    except csv.Error as exc:
        bad(1, f"not CSV: {exc}")
        return result
    columns = [h.strip().lower() for h in header]
    unknown = [c for c in columns if c not in ("value", "expires_at", "reason")]
    if "value" not in columns or unknown or len(set(columns)) != len(columns):
        bad(
            1,
            "expected a header naming value and optionally expires_at, reason; got "
            f"{','.join(columns)[:80]!r}",
        )
        return result
    at = {name: columns.index(name) for name in columns}
    seen: dict[str, int] = {}
    line = reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a field past csv's limit: that record is bad, not the rest
            why = str(exc)
            if why.startswith("unexpected end of data"):
                why = "a quote opened on this line never closes"
                if reader.line_num > start:
                    why += (
                        f" (this record runs over lines {start} to {reader.line_num}: a quote "
                        "opened there)"
                    )
            bad(start, f"not CSV: {why}")
            if reader.line_num == line:
                break
            line = reader.line_num
            continue
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if line > start:  # a quoted field with line breaks: say which lines it swallowed
            spans = f" (this record runs over lines {start} to {line}: a quote opened there)"
        else:
            spans = ""
        if len(row) != len(columns):
            bad(
                start,
                f"expected {len(columns)} fields ({','.join(columns)}); got {len(row)}{spans}",
            )
            continue
        value = row[at["value"]].strip()
        try:
            check_value(kind, value)
            expires = parse_expiry(row[at["expires_at"]]) if "expires_at" in at else None
            reason = check_reason(row[at["reason"]].strip()) if "reason" in at else ""
        except ValueError as exc:
            bad(start, f"{str(exc)[:120]}{spans}")
            continue
        if value in seen:
            bad(start, f"{value!r} is already on line {seen[value]}")
            continue
        seen[value] = start
        result.entries.append(CsvEntry(start, value, expires, reason))
    return result
