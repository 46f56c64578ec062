"""Lists: the packed form round-trips, look-ups agree with plain membership, CSV rows are
reported with their line numbers."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules import lists
from rules.hashes import SortedHashes, hash_set
from rules.lists import ListIndex, pack, read_csv, unpack, unpack_entries

ids = st.text("abcXYZ019_.:-", min_size=1, max_size=12)
expiries = st.one_of(st.none(), st.sampled_from([1.0e9, 1.7e9, 2.0e9]))


@given(
    st.dictionaries(ids, expiries, max_size=300),
    st.sampled_from(["card", "bin", "device"]),
    st.sampled_from([0, 1, 50, None]),  # every list compact, the large ones, none
)
def test_the_packed_form_round_trips_in_small_parts(entries, kind, compact_from):
    original = lists.PART_BYTES
    lists.PART_BYTES = 64  # many parts, lines cut across them
    try:
        parts = pack(kind, entries)
    finally:
        lists.PART_BYTES = original
    assert unpack_entries(parts) == entries
    index = unpack("l", iter(parts), compact_from=compact_from)
    assert index.size == len(entries)
    if compact_from == 0 and kind != "bin":
        assert isinstance(index.hashes, SortedHashes)
    for value in [*entries, "nope", "a", "abc0"]:
        for at in (1.5e9, 1.8e9):
            if kind == "bin":
                expected = any(
                    value.startswith(p) and (e is None or at < e) for p, e in entries.items()
                )
            else:
                e = entries.get(value, 0.0)
                expected = value in entries and (e is None or at < e)
            assert index.contains(value, at) is expected
    assert index.contains(None, 1.0) is False


@pytest.mark.parametrize("compact_from", [0, None])
def test_build_equals_unpack(compact_from):
    entries = {"c-1": None, "c-2": 1.8e9}
    built = ListIndex.build("x", "card", entries, compact_from=compact_from)
    loaded = unpack("x", pack("card", entries), compact_from=compact_from)
    assert type(built.hashes) is type(loaded.hashes)
    assert (set(built.hashes), built.expiries) == (set(loaded.hashes), loaded.expiries)
    assert set(built.hashes) == {hash("c-1"), hash("c-2")}


EDGES = [-(2**63), -(2**63) + 1, -2, -1, 0, 1, 2**62, 2**63 - 2, 2**63 - 1]
int64s = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from(EDGES))


@given(
    st.lists(st.lists(int64s, max_size=40), max_size=5),
    st.lists(int64s, max_size=40),
)
def test_sorted_hashes_are_the_set_of_their_hashes(batches, probes):
    chunks = [np.array(b, dtype=np.int64) for b in batches]
    expected = {h for b in batches for h in b}
    compact = SortedHashes.from_batches(chunks)
    assert len(compact) == len(expected)
    assert list(compact) == sorted(expected)
    for h in [*expected, *probes, *EDGES]:
        assert (h in compact) is (h in expected)
    small = hash_set(iter(chunks), compact_from=10**9)
    assert isinstance(small, set) and small == expected


def test_a_large_list_keeps_12_bytes_an_entry_and_finds_each_of_them():
    values = [f"c-{i:016x}" for i in range(200_000)]
    index = ListIndex.build("big", "card", dict.fromkeys(values))
    assert isinstance(index.hashes, SortedHashes)
    assert index.hashes.nbytes() <= 12 * len(values)
    assert all(index.contains(v, 0.0) for v in values[::97])
    assert not any(index.contains(f"x-{i}", 0.0) for i in range(2000))


def test_csv_rows_are_reported_with_their_line_numbers():
    text = (
        "value,expires_at,reason\n"
        "NG,,ring\n"
        'FR,2027-01-01,"two\nlines"\n'  # spans lines 3-4: a reason has no line break
        'IT,2027-01-01,"a, b"\n'
        "XX,,bad\n"
        "DE,yesterday,x\n"
        "NG,,again\n"
        "US\n"
        "\n"
        "BR,2027-01-01T00:00:00,no offset\n"
    )
    read = read_csv(text, "country")
    assert [(e.line, e.value) for e in read.entries] == [(2, "NG"), (5, "IT")]
    assert read.entries[1].expires_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert read.entries[1].reason == "a, b"
    assert [line for line, _ in read.bad] == [3, 6, 7, 8, 9, 11]
    why = dict(read.bad)
    assert "no line break" in why[3]
    assert "ISO 3166-1 alpha-2" in why[6]
    assert "expected an expiry" in why[7]
    assert "'NG' is already on line 2" in why[8]
    assert "expected 3 fields" in why[9]
    assert "needs a UTC offset" in why[11]
    assert read.bad_count == 6


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "the file is empty"), ("card,reason\nx,y\n", "expected a header naming value")],
)
def test_a_bad_header_is_refused(text, why):
    read = read_csv(text, "card")
    assert read.entries == [] and why in read.bad[0][1]


def test_many_bad_rows_are_counted_and_the_report_is_bounded():
    text = "value\n" + "bad value\n" * 10_000
    read = read_csv(text, "card")
    assert read.bad_count == 10_000 and len(read.bad) == lists.MAX_REPORTED_ROWS
    assert read.report().endswith(f"... and {10_000 - lists.MAX_REPORTED_ROWS} more bad rows")
    assert len(read.report()) < 20_000


# Review of issue 21: hostile CSV files.


def test_a_byte_order_mark_is_not_part_of_the_header():
    """Spreadsheets save "CSV UTF-8" with a byte-order mark; such a file was refused whole
    (``expected a header naming value ...; got '\\ufeffvalue'``) by ``python -m rules import``."""
    read = read_csv("\ufeffvalue,reason\r\nc-1,stolen\r\nc-2,\r\n", "card")
    assert read.bad == [] and [(e.line, e.value, e.reason) for e in read.entries] == [
        (2, "c-1", "stolen"),
        (3, "c-2", ""),
    ]


def test_an_expiry_with_no_year_in_utc_is_a_bad_row_not_a_crash():
    """An offset that moves an expiry out of the years 1-9999 raised OverflowError out of the
    import (a traceback from ``python -m rules import``, nothing reported)."""
    text = (
        "value,expires_at\n"
        "c-1,9999-12-31T23:00:00-05:00\n"
        "c-2,0001-01-01T00:00:00+01:00\n"
        "c-3,9999-12-31T23:59:59+00:00\n"
    )
    read = read_csv(text, "card")
    assert [e.value for e in read.entries] == ["c-3"]
    assert [line for line, _ in read.bad] == [2, 3]
    assert all("within the years 1 to 9999" in why for _, why in read.bad)
    with pytest.raises(ValueError, match="within the years 1 to 9999"):
        lists.parse_expiry("9999-12-31T23:00:00-05:00")


def test_a_record_csv_cannot_read_is_reported_and_the_rows_after_it_are_read():
    """A field past csv's size limit stopped the reading there: with ``--skip-bad`` every good
    row after it was silently left out (neither imported nor reported)."""
    huge = "x" * 200_000
    text = f"value,reason\nc-1,a\nc-2,{huge}\nc-3,b\n\nc-4,\n"
    read = read_csv(text, "card")
    assert [(e.line, e.value) for e in read.entries] == [(2, "c-1"), (4, "c-3"), (6, "c-4")]
    assert [line for line, _ in read.bad] == [3]
    assert "not CSV: field larger than field limit" in read.bad[0][1]
    assert len(read.report()) < 300


def test_rows_an_unclosed_quote_swallows_are_named_in_the_report():
    """A quote opened and never closed makes one record of the rest of the file: the report said
    only "line 2: a reason is ...", and with --skip-bad the rows after it went unmentioned."""
    text = 'value,reason\nc-1,"stolen\nc-2,b\nc-3,c\n'
    read = read_csv(text, "card")
    assert read.entries == [] and read.bad_count == 1
    [(line, why)] = read.bad
    assert line == 2 and why.endswith("(this record runs over lines 2 to 4: a quote opened there)")
    assert len(why) <= 200


@pytest.mark.parametrize(
    ("last", "why"),
    [
        ('c-2,"never closed', "line 3: not CSV: a quote opened on this line never closes"),
        ('c-2,"never closed\n', "line 3: not CSV: a quote opened on this line never closes"),
        ('c-2,"a"b\n', "line 3: not CSV: ',' expected after '\"'"),
    ],
)
def test_a_last_row_with_a_quote_that_never_closes_is_bad_not_imported(last: str, why: str):
    """Before: csv read a last field ``"never closed`` to the end of the file as ``never
    closed``, and ``"a"b`` as ``ab``: the row was imported as if the file were whole."""
    read = read_csv(f"value,reason\nc-1,ok\n{last}", "card")
    assert [e.value for e in read.entries] == ["c-1"]
    assert read.bad_count == 1
    assert read.report().startswith(why)
