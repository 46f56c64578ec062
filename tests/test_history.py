"""A bank's history as a training stream (model_state.offline.history): the accepted formats load
to the same History, every rejected message is counted where it was, the stream is in arrival order,
and MySQL's stored payments and labels come back as the History they make."""

from __future__ import annotations

import base64
import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine

from features.contract import FraudLabel, InvalidMessageError, Payment, PaymentDecoder
from model_state.offline import history as history_module
from model_state.offline.history import (
    MAX_EXAMPLES,
    History,
    HistoryFormatError,
    load_from_mysql,
    load_history,
    short_reason,
)
from storage.labels import ReadLabel, claim_labels
from storage.rows import dead_letter_row, scored_payment_row
from storage.sink import MySQLSinkPartition
from storage.tables import dead_letters, scored_payments
from test_data.samples import dump_line, from_event, load_samples

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "test_data" / "samples"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))
PAYMENT_COLUMNS = list(Payment.__struct_fields__)
LABEL_COLUMNS = ["transaction_id", "card_id", "is_fraud", "reported_at"]
Event = Payment | FraudLabel


# -- writing histories in each format -------------------------------------------------------------


def write_wrapped(path: Path, events: Iterable[Event]) -> Path:
    """The samples' envelope, written by the project's own writer."""
    path.write_bytes(b"".join(dump_line(from_event(e)) + b"\n" for e in events))
    return path


def write_bare(path: Path, events: Iterable[Event]) -> Path:
    """One message per line, as the topics carry them."""
    path.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in events))
    return path


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row.get(c)) for c in columns])
    return path


def payment_row(p: Payment) -> dict[str, object]:
    return msgspec.structs.asdict(p)


def label_row(label: FraudLabel) -> dict[str, object]:
    return {c: getattr(label, c) for c in LABEL_COLUMNS}


def pay(txn: str, card: str = "c-1", at: datetime = T0, **changes: Any) -> Payment:
    fields: dict[str, Any] = {
        "transaction_id": txn,
        "card_id": card,
        "merchant_id": "m-1",
        "terminal_id": "p-1",
        "amount_minor": 1250,
        "currency": "EUR",
        "event_time": at.astimezone(PARIS),
        "mcc": "5411",
        "channel": "pos",
        "country": "FR",
    }
    return Payment(**(fields | changes))


def lab(txn: str, card: str = "c-1", fraud: bool = True, at: datetime = T0) -> FraudLabel:
    return FraudLabel(transaction_id=txn, card_id=card, is_fraud=fraud, reported_at=at)


# -- an independent model of the rules -----------------------------------------------------------


def expected(payments: Sequence[Payment], labels: Sequence[FraudLabel]) -> History:
    """What load_history must give for ``payments`` and ``labels`` read in this order (the join
    reasons only; the inputs are all valid messages)."""
    first: dict[str, Payment] = {}
    rejected: dict[str, int] = {}

    def reject(reason: str) -> None:
        rejected[reason] = rejected.get(reason, 0) + 1

    for p in payments:
        if p.transaction_id in first:
            reject("duplicate transaction_id")
        else:
            first[p.transaction_id] = p
    accepted: dict[str, FraudLabel] = {}
    for label in sorted(labels, key=lambda x: x.reported_at):
        p = first.get(label.transaction_id)
        if p is None:
            reject("label for unknown payment")
        elif p.card_id != label.card_id:
            reject("label card mismatch")
        elif label.reported_at < p.event_time:
            reject("label reported before payment")
        elif label.transaction_id in accepted:
            same = accepted[label.transaction_id].is_fraud == label.is_fraud
            reject("duplicate label" if same else "contradicting label")
        else:
            accepted[label.transaction_id] = label
    ordered = sorted(first.values(), key=lambda p: p.event_time)
    return History(ordered, list(accepted.values()), rejected)


# -- strategies ----------------------------------------------------------------------------------

OFFSETS = [timezone(timedelta(minutes=m)) for m in (-300, 0, 60, 330)]
CARDS = ["c-1", "c-2", "c-3"]
moments = st.builds(
    lambda micros, zone: (T0 + timedelta(microseconds=micros)).astimezone(zone),
    st.integers(0, 10 * 86_400 * 10**6),
    st.sampled_from(OFFSETS),
)
coordinates = st.none() | st.tuples(
    st.floats(-90, 90, allow_nan=False), st.floats(-180, 180, allow_nan=False)
)


@st.composite
def payments(draw: st.DrawFn, *, unique: bool = False) -> list[Payment]:
    n = draw(st.integers(0, 10))
    ids = st.integers(0, 2 * n + 1).map(lambda i: f"t-{i}")
    txns = draw(st.lists(ids, min_size=n, max_size=n, unique=unique))
    out = []
    for txn in txns:
        where = draw(coordinates)
        out.append(
            Payment(
                transaction_id=txn,
                card_id=draw(st.sampled_from(CARDS)),
                merchant_id=draw(st.sampled_from(["m-1", "m.2", "M:3"])),
                terminal_id="p_1",
                amount_minor=draw(st.integers(0, 10**12)),
                currency=draw(st.sampled_from(["EUR", "JPY", "GBP"])),
                event_time=draw(moments),
                mcc=draw(st.sampled_from(["5411", "4829"])),
                channel=draw(st.sampled_from(["pos", "ecom", "atm", "moto", "contactless"])),
                country=draw(st.sampled_from(["FR", "DE", "JP"])),
                device_id=draw(st.none() | st.just("d-1")),
                latitude=None if where is None else where[0],
                longitude=None if where is None else where[1],
            )
        )
    return out


@st.composite
def label_for(draw: st.DrawFn, payment: Payment | None) -> FraudLabel:
    """A label of ``payment`` (or of an unknown one): mostly its card, reported from an hour
    before it to three weeks after."""
    base = T0 if payment is None else payment.event_time
    card = payment.card_id if payment and draw(st.integers(0, 3)) else draw(st.sampled_from(CARDS))
    delay = timedelta(seconds=draw(st.integers(-3600, 21 * 86_400)))
    return FraudLabel(
        transaction_id="t-unknown" if payment is None else payment.transaction_id,
        card_id=card,
        is_fraud=draw(st.booleans()),
        reported_at=(base + delay).astimezone(draw(st.sampled_from(OFFSETS))),
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Payment], list[FraudLabel]]:
    """Payments (ids may repeat) and labels: of known payments, unknown ones, repeated."""
    made = draw(payments())
    targets = st.sampled_from([*made, None]) if made else st.none()
    labels = [draw(label_for(draw(targets))) for _ in range(draw(st.integers(0, 12)))]
    return made, labels


def load_bare(folder: Path, made: Sequence[Payment], labels: Sequence[FraudLabel]) -> History:
    return load_history([write_bare(folder / "history.jsonl", [*made, *labels])])


# -- round trips ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(history=histories())
def test_wrapper_bare_json_and_csv_load_to_the_same_history(history) -> None:
    made, labels = history
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wrapped, bare, tables = folder / "wrapped", folder / "bare", folder / "csv"
        for d in (wrapped, bare, tables):
            d.mkdir()
        write_wrapped(wrapped / "history.jsonl", [*made, *labels])
        # In name order, labels.jsonl is read before payments.jsonl: the join waits for all.
        write_bare(bare / "labels.jsonl", labels)
        write_bare(bare / "payments.jsonl", made)
        write_csv(tables / "a-payments.csv", PAYMENT_COLUMNS, map(payment_row, made))
        write_csv(tables / "b-labels.csv", LABEL_COLUMNS, map(label_row, labels))
        loaded = [load_history([d]) for d in (wrapped, bare, tables)]
    want = expected(made, labels)
    for got in loaded:
        assert got.payments == want.payments
        assert got.labels == want.labels
        assert got.rejected == want.rejected
        assert all(
            len(got.examples[reason]) == min(count, MAX_EXAMPLES)
            for reason, count in got.rejected.items()
        )


@settings(max_examples=40, deadline=None)
@given(data=st.data(), made=payments())
def test_one_csv_with_label_columns_is_payments_plus_their_labels(data, made) -> None:
    labels: list[FraudLabel | None] = []
    for p in made:
        drawn = data.draw(st.none() | label_for(p))
        labels.append(None if drawn is None else msgspec.structs.replace(drawn, card_id=p.card_id))
    rows = [
        payment_row(p)
        | ({} if x is None else {"is_fraud": x.is_fraud, "reported_at": x.reported_at})
        for p, x in zip(made, labels, strict=True)
    ]
    given_labels = [x for x in labels if x is not None]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one = load_history(
            [write_csv(folder / "one.csv", [*PAYMENT_COLUMNS, *LABEL_COLUMNS[2:]], rows)]
        )
        two = load_bare(folder, made, given_labels)
    assert one.payments == two.payments
    assert one.labels == two.labels == expected(made, given_labels).labels
    assert one.rejected == two.rejected


# -- rejections -----------------------------------------------------------------------------------


def test_every_hostile_json_line_is_counted_by_reason_where_it_was(tmp_path: Path) -> None:
    good = msgspec.json.encode(pay("t-1")).decode()
    cvv = json.dumps(json.loads(good) | {"cvv": "123"})
    lines = [
        good,  # 1: accepted
        '{"transaction_id": "t-2", "card_id"',  # 2: bad JSON
        cvv,  # 3
        msgspec.json.encode(pay("t-3", card="c 1")).decode(),  # 4: a space in the id
        good.replace('"amount_minor":1250', '"amount_minor":-1'),  # 5
        msgspec.json.encode(pay("t-1", amount_minor=99)).decode(),  # 6: id used again
        msgspec.json.encode(lab("t-1", at=T0 - timedelta(minutes=1))).decode(),  # 7
        msgspec.json.encode(lab("t-9", at=T0 + timedelta(days=1))).decode(),  # 8: unknown
        msgspec.json.encode(lab("t-1", card="c-2", at=T0 + timedelta(days=1))).decode(),  # 9
        msgspec.json.encode(lab("t-1", at=T0 + timedelta(days=2))).decode(),  # 10: accepted
        msgspec.json.encode(lab("t-1", at=T0 + timedelta(days=3))).decode(),  # 11: again
        msgspec.json.encode(lab("t-1", fraud=False, at=T0 + timedelta(days=4))).decode(),  # 12
        json.dumps({k: v for k, v in json.loads(good).items() if k != "card_id"}),  # 13
        json.dumps({"kind": "valid", "key": "c-1", "value_base64": "not base64!"}),  # 14
        "[1, 2]",  # 15
        "",  # 16: blank, skipped
        json.dumps({"kind": "valid", "event": "label", "key": None, "value": None}),  # 17
        json.dumps(json.loads(good) | {"event_time": "2026-03-02T10:00:00"}),  # 18: naive
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n")
    history = load_history([path])
    where = {
        "invalid json": [2],
        "unknown field cvv": [3],
        "bad identifier": [4],
        "negative amount": [5],
        "duplicate transaction_id": [6],
        "label reported before payment": [7],
        "label for unknown payment": [8],
        "label card mismatch": [9],
        "duplicate label": [11],
        "contradicting label": [12],
        "missing field card_id": [13],
        "invalid envelope": [14],
        "not a json object": [15],
        "empty message": [17],
        "event_time without time zone": [18],
    }
    assert history.rejected == {reason: len(at) for reason, at in where.items()}
    assert history.examples == {reason: [f"{path}:{n}" for n in at] for reason, at in where.items()}
    assert history.payments == [pay("t-1")]
    assert history.labels == [lab("t-1", at=T0 + timedelta(days=2))]


def test_every_hostile_csv_row_is_counted_by_reason_where_it_was(tmp_path: Path) -> None:
    payments_csv = write_csv(
        tmp_path / "payments.csv",
        PAYMENT_COLUMNS,
        [
            payment_row(pay("t-1")),  # line 2: accepted
            payment_row(pay("t 2")),  # 3: a space in the id
            payment_row(pay("t-3")) | {"amount_minor": -5},  # 4
            payment_row(pay("t-1", amount_minor=7)),  # 5: id used again
            payment_row(pay("t-4")) | {"card_id": None},  # 6: empty cell
            payment_row(pay("t-5")) | {"amount_minor": "12.50"},  # 7
            payment_row(pay("t-6")) | {"event_time": "2026-03-02T10:00:00"},  # 8: naive
            payment_row(pay("t-7")) | {"latitude": "nan", "longitude": 2.0},  # 9
        ],
    )
    with payments_csv.open("ab") as f:
        f.write(b"t-8,c-1,m-1\n")  # 10: too few cells
        f.write(b"t-9,c-\xff,m-1,p-1,100,EUR,2026-03-02T10:00:00+01:00,5411,pos,FR,,,,1\n")  # 11
        f.write(b"\n")  # 12: blank, skipped
    labels_csv = write_csv(
        tmp_path / "labels.csv",
        LABEL_COLUMNS,
        [
            label_row(lab("t-1", at=T0 - timedelta(seconds=1))),  # 2
            label_row(lab("t-404", at=T0 + timedelta(days=1))),  # 3
            label_row(lab("t-1", card="c-2", at=T0 + timedelta(days=1))),  # 4
            label_row(lab("t-1", at=T0 + timedelta(days=2))),  # 5: accepted
            label_row(lab("t-1", at=T0 + timedelta(days=3))),  # 6
            label_row(lab("t-1", fraud=False, at=T0 + timedelta(days=4))),  # 7
            label_row(lab("t-1", at=T0)) | {"is_fraud": "maybe"},  # 8
            label_row(lab("t-1", at=T0)) | {"reported_at": "next week"},  # 9
        ],
    )
    history = load_history([payments_csv, labels_csv])
    p, lb = str(payments_csv), str(labels_csv)
    where = {
        "bad identifier": [f"{p}:3"],
        "negative amount": [f"{p}:4"],
        "duplicate transaction_id": [f"{p}:5"],
        "missing field card_id": [f"{p}:6"],
        "bad amount": [f"{p}:7"],
        "event_time without time zone": [f"{p}:8"],
        "bad coordinates": [f"{p}:9"],
        "wrong number of cells": [f"{p}:10"],
        "invalid utf-8": [f"{p}:11"],
        "label reported before payment": [f"{lb}:2"],
        "label for unknown payment": [f"{lb}:3"],
        "label card mismatch": [f"{lb}:4"],
        "duplicate label": [f"{lb}:6"],
        "contradicting label": [f"{lb}:7"],
        "bad is_fraud": [f"{lb}:8"],
        "bad reported_at": [f"{lb}:9"],
    }
    assert history.examples == where
    assert history.rejected == {reason: 1 for reason in where}
    assert history.payments == [pay("t-1")]
    assert history.labels == [lab("t-1", at=T0 + timedelta(days=2))]


def test_csv_quirks_unknown_columns_incomplete_labels_and_defaults(tmp_path: Path) -> None:
    extra = write_csv(
        tmp_path / "extra.csv",
        [*PAYMENT_COLUMNS, "cvv"],
        [payment_row(pay("t-1")) | {"cvv": "123"}, payment_row(pay("t-2"))],
    )
    # A column outside the contract is an unknown field in every row, empty or not.
    assert load_history([extra]).rejected == {"unknown field cvv": 2}
    # Optional columns may be left out; a label needs both of its columns.
    columns = [c for c in PAYMENT_COLUMNS if c not in ("device_id", "latitude", "longitude")]
    rows = [
        payment_row(pay("t-1")) | {"is_fraud": "1", "reported_at": "2026-03-03T00:00:00Z"},
        payment_row(pay("t-2")) | {"is_fraud": "0"},
        payment_row(pay("t-3")) | {"schema_version": None},
    ]
    path = write_csv(tmp_path / "one.csv", [*columns, "is_fraud", "reported_at"], rows)
    history = load_history([path])
    assert [p.transaction_id for p in history.payments] == ["t-1", "t-2", "t-3"]
    assert history.labels == [lab("t-1", at=datetime(2026, 3, 3, tzinfo=UTC))]
    assert history.examples == {"incomplete label": [f"{path}:3"]}


def _payment_line(txn: str, last: str = "FR") -> str:
    return f"{txn},c-1,m-1,p-1,1250,EUR,2026-03-02T10:00:00+01:00,5411,pos,{last}"


@pytest.mark.parametrize(("sep", "end"), [("\n", ""), ("\n", "\n"), ("\r\n", "\r\n")])
def test_an_unclosed_quote_rejects_its_line_only_and_the_lines_after_it_are_read(
    tmp_path: Path, sep: str, end: str
) -> None:
    """Before: a last field ``"FR`` with no closing quote at the end of the file was imported as
    ``FR``; one in the middle swallowed every line after it into one field, rejected once (as an
    ``unknown country`` at its line): the payments after it were lost without a count."""
    columns = "transaction_id,card_id,merchant_id,terminal_id,amount_minor,currency,event_time,"
    lines = [
        columns + "mcc,channel,country",
        _payment_line("t-1"),
        _payment_line("t-2", '"FR'),  # 3: the quote opens and never closes
        _payment_line("t-3"),
        _payment_line("t-4", '"F""R'),  # 5: a doubled quote inside, still open
        _payment_line("t-5"),
        _payment_line("t-6", '"FR'),  # 7: the last line
    ]
    path = tmp_path / "payments.csv"
    path.write_text(sep.join(lines) + end, newline="")
    history = load_history([path])
    assert [p.transaction_id for p in history.payments] == ["t-1", "t-3", "t-5"]
    assert history.rejected == {"unclosed quote": 3}
    assert history.examples == {"unclosed quote": [f"{path}:3", f"{path}:5", f"{path}:7"]}


def test_a_field_past_csvs_limit_rejects_its_line_not_the_file(tmp_path: Path) -> None:
    """Before: a cell of 200,000 characters raised csv's bare ``field larger than field limit
    (131072)`` out of load_history, naming neither the file nor the line: nothing loaded."""
    columns = "transaction_id,card_id,merchant_id,terminal_id,amount_minor,currency,event_time,"
    path = tmp_path / "payments.csv"
    path.write_text(
        "\n".join(
            [columns + "mcc,channel,country", _payment_line("c" * 200_000), _payment_line("t-2")]
        )
    )
    history = load_history([path])
    assert [p.transaction_id for p in history.payments] == ["t-2"]
    assert history.examples == {"field too large": [f"{path}:2"]}
    assert len(history.summary()) < 500


def test_unknown_paths_and_unreadable_files_say_what_and_where(tmp_path: Path) -> None:
    (tmp_path / "history.parquet").write_bytes(b"PAR1")
    with pytest.raises(HistoryFormatError, match=r"history\.parquet: not a history file"):
        load_history([tmp_path / "history.parquet"])
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl: no such file"):
        load_history([tmp_path / "missing.jsonl"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HistoryFormatError, match=r"empty: a directory without history files"):
        load_history([empty])
    (tmp_path / "twice.csv").write_text("transaction_id,card_id,card_id\nt,c,c\n")
    with pytest.raises(HistoryFormatError, match=r"twice\.csv:1: .*repeated card_id"):
        load_history([tmp_path / "twice.csv"])
    with pytest.raises(HistoryFormatError, match="no paths given"):
        load_history([])


def test_short_reasons_name_the_decoders_errors() -> None:
    def reason(message: dict[str, Any]) -> str:
        with pytest.raises(InvalidMessageError) as caught:
            PaymentDecoder().decode(json.dumps(message).encode())
        return short_reason(str(caught.value))

    good = json.loads(msgspec.json.encode(pay("t-1")))
    assert reason(good | {"amount_minor": 10**12 + 1}) == "amount too large"
    assert reason(good | {"currency": "XYZ"}) == "unknown currency"
    assert reason(good | {"country": "ZZ"}) == "unknown country"
    assert reason(good | {"event_time": "1970-01-01T00:00:00Z"}) == "event_time out of range"
    assert reason(good | {"latitude": 1.0}) == "unpaired coordinates"
    assert reason(good | {"channel": "web"}) == "bad channel"
    assert reason(good | {"device_id": ""}) == "bad identifier"
    assert short_reason("transaction id 't' reused: stored for card 'c'") == (
        "duplicate transaction_id"
    )


# -- the shipped samples --------------------------------------------------------------------------


def test_the_shipped_samples_load_with_the_expected_counts() -> None:
    history = load_history([SAMPLES])
    messages = load_samples(SAMPLES / "payments.jsonl")
    valid = [m for m in messages if m.kind == "valid"]
    assert len(history.payments) == len(valid) == 196
    assert len(history.labels) == len(load_samples(SAMPLES / "labels.jsonl")) == 196
    assert sum(x.is_fraud for x in history.labels) == sum(bool(m.is_fraud) for m in valid) == 5
    assert history.rejected == {
        "invalid json": 3,  # truncated, empty, NaN
        "invalid utf-8": 1,
        "not a json object": 1,
        "bad amount": 1,
        "missing field transaction_id": 1,
        "unknown field cvv": 1,
        "amount too large": 2,
        "negative amount": 1,
        "unknown currency": 1,
        "event_time out of range": 2,
        "event_time without time zone": 1,
        "bad identifier": 1,
    }
    malformed_lines = {
        f"{SAMPLES / 'payments.jsonl'}:{n}"
        for n, m in enumerate(messages, start=1)
        if m.kind == "malformed"
    }
    assert {at for examples in history.examples.values() for at in examples} == malformed_lines
    # The labels are the generator's truth, and the stream shows each after its payment.
    truth = {
        p.transaction_id: bool(m.is_fraud)
        for m in valid
        for p in [PaymentDecoder().decode(m.value)]
    }
    assert all(truth[x.transaction_id] == x.is_fraud for x in history.labels)
    events = list(history.stream())
    assert len(events) == 196 + 196
    summary = history.summary()
    assert "196 payments from 2026-03-02T00:24:40.598000+00:00" in summary
    assert "196 labels: 5 frauds, 191 legitimate" in summary
    assert "16 rejected:" in summary
    assert f"invalid json: 3 (at {SAMPLES / 'payments.jsonl'}:13," in summary


# -- arrival order and verdicts -------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(history=histories())
def test_stream_is_arrival_order_and_no_label_comes_early(history) -> None:
    made, labels = history
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_bare(Path(tmp), made, labels)
    events = list(loaded.stream())
    in_stream = [e for e in events if isinstance(e, Payment)]
    assert in_stream == loaded.payments
    assert all(a.event_time <= b.event_time for a, b in itertools.pairwise(in_stream))
    released = [e for e in events if isinstance(e, FraudLabel)]
    assert sorted(released, key=lambda x: x.transaction_id) == sorted(
        loaded.labels, key=lambda x: x.transaction_id
    )
    at = {e.transaction_id: i for i, e in enumerate(events) if isinstance(e, Payment)}
    for i, event in enumerate(events):
        if not isinstance(event, FraudLabel):
            continue
        own = events[at[event.transaction_id]]
        assert isinstance(own, Payment)
        assert at[event.transaction_id] < i, "a label never precedes its payment"
        release = max(event.reported_at, own.event_time)
        after = [e for e in events[i + 1 :] if isinstance(e, Payment)]
        assert all(p.event_time >= release for p in after), "nor its reported_at"
        before = [e for e in events[:i] if isinstance(e, Payment)][-1]
        assert before is own or before.event_time < release, "and it comes as soon as due"
        # Usable from its reported_at, not a microsecond before.
        assert loaded.verdicts(event.reported_at)[event.transaction_id] == event.is_fraud
        early = loaded.verdicts(event.reported_at - timedelta(microseconds=1))
        assert event.transaction_id not in early


def test_verdicts_hold_only_labels_reported_by_then() -> None:
    history = History(
        payments=[pay("t-1"), pay("t-2", at=T0 + timedelta(hours=1))],
        labels=[
            lab("t-1", at=T0 + timedelta(days=1)),
            lab("t-2", fraud=False, at=T0 + timedelta(days=3)),
        ],
    )
    assert history.verdicts(T0) == {}
    assert history.verdicts(T0 + timedelta(days=1)) == {"t-1": True}
    assert history.verdicts((T0 + timedelta(days=2)).astimezone(PARIS)) == {"t-1": True}
    assert history.verdicts(T0 + timedelta(days=30)) == {"t-1": True, "t-2": False}
    with pytest.raises(ValueError, match="as_of must carry a UTC offset"):
        history.verdicts(datetime(2026, 3, 9))


def test_labels_due_after_the_last_payment_come_at_the_end_in_release_order() -> None:
    history = History(
        payments=[pay("t-1"), pay("t-2", at=T0 + timedelta(hours=1))],
        labels=[
            lab("t-2", at=T0 + timedelta(days=2)),
            lab("t-1", at=T0 + timedelta(days=5)),
        ],
    )
    assert [e.transaction_id for e in history.stream()] == ["t-1", "t-2", "t-2", "t-1"]


# -- boundaries -----------------------------------------------------------------------------------


def test_the_live_flow_does_not_import_the_history_loader() -> None:
    code = (
        "import pkgutil, importlib, sys, dataflows\n"
        "for m in pkgutil.iter_modules(dataflows.__path__):\n"
        "    importlib.import_module('dataflows.' + m.name)\n"
        "print('model_state.offline.history' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_fillers_that_break_the_contract_are_refused_before_any_query() -> None:
    engine = create_engine("mysql+pymysql://nobody@127.0.0.1:1/none")  # never connected
    with pytest.raises(ValueError, match=r"fillers .*'country': 'XX'.* do not meet"):
        load_from_mysql(engine, country="XX")


@pytest.mark.integration
def test_load_from_mysql_rebuilds_what_the_flow_stored(
    engine: Engine, models_engine: Engine
) -> None:
    tokyo = timezone(timedelta(hours=9))
    made = [
        pay("t-1", at=T0 + timedelta(microseconds=123_456)),
        pay("t-2", card="c-2", at=T0 - timedelta(hours=2), device_id="d-1"),
        pay("t-3", at=T0 + timedelta(hours=3), latitude=48.85, longitude=2.35),
        pay("t-4", at=(T0 + timedelta(days=1)).astimezone(tokyo), currency="JPY"),
    ]
    rows = [
        scored_payment_row(
            p,
            partition=0,
            offset=i,
            features={"amount_eur": 12.5},
            probability=0.1,
            decision="approve",
            reasons=(),
            model_version="v00001",
            scored_at=T0 + timedelta(days=2),
        )
        for i, p in enumerate(made)
    ]
    MySQLSinkPartition(engine, scored_payments).write_batch(rows)
    reads = [
        ReadLabel(lab("t-1", at=(T0 + timedelta(days=7)).astimezone(PARIS)), 0, 0),
        ReadLabel(lab("t-2", card="c-2", fraud=False, at=T0 + timedelta(days=30)), 0, 1),
        ReadLabel(lab("t-3", card="c-9", at=T0 + timedelta(days=8)), 1, 0),  # card mismatch
        ReadLabel(lab("t-1", fraud=False, at=T0 + timedelta(days=9)), 1, 1),  # contradicts
        ReadLabel(lab("t-8", at=T0 + timedelta(days=9)), 1, 2),  # waits
        ReadLabel(lab("t-9", at=T0 + timedelta(days=9)), 1, 3),  # waited long enough
    ]
    with engine.begin() as c:
        claim_labels(c, "labels", reads, expired=lambda r: r.label.transaction_id == "t-9")
    with pytest.raises(InvalidMessageError) as caught:
        PaymentDecoder().decode(b'{"transaction_id": "x"}')
    letter = dead_letter_row(
        topic="payments",
        partition=2,
        offset=41,
        key=None,
        value=b'{"transaction_id": "x"}',
        error=str(caught.value),
        received_at=None,
        dead_lettered_at=T0,
    )
    MySQLSinkPartition(engine, dead_letters).write_batch([letter])

    history = load_from_mysql(models_engine, chunk_rows=2)  # as train --from-mysql reads

    filled = {"mcc": "0000", "channel": "pos", "country": "AQ"}
    unknown = {"device_id": None, "latitude": None, "longitude": None}
    want = [msgspec.structs.replace(p, **filled, **unknown) for p in made]
    assert history.payments == sorted(want, key=lambda p: p.event_time)
    assert [p.event_time.utcoffset() for p in history.payments] == [
        p.event_time.utcoffset() for p in sorted(made, key=lambda p: p.event_time)
    ], "each payment keeps its own UTC offset"
    assert history.labels == [reads[0].label, reads[1].label]
    assert all(x.reported_at.tzinfo is UTC for x in history.labels)
    assert history.examples == {
        "label card mismatch": ["fraud_labels:labels/1:0"],
        "contradicting label": ["fraud_labels:labels/1:1"],
        "label waiting for its payment": ["fraud_labels:labels/1:2"],
        "label for unknown payment": ["fraud_labels:labels/1:3"],
        "missing field card_id": ["dead_letters:payments/2:41"],
    }
    assert sum(history.rejected.values()) == 5
    assert history.verdicts(T0 + timedelta(days=10)) == {"t-1": True}
    # The same events from a file make the same stream.
    with tempfile.TemporaryDirectory() as tmp:
        from_file = load_bare(Path(tmp), want, [r.label for r in reads])
    assert list(from_file.stream()) == list(history.stream())


def test_envelope_value_base64_is_read_as_the_message(tmp_path: Path) -> None:
    raw = msgspec.json.encode(pay("t-1"))
    line = {"kind": "valid", "key": "c-1", "value_base64": base64.b64encode(raw).decode()}
    path = tmp_path / "b64.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert load_history([path]).payments == [pay("t-1")]


def test_a_header_csv_cannot_use_is_refused_bounded(tmp_path: Path) -> None:
    """Before: a header of 100,000 repeated names came back whole in the HistoryFormatError (and
    a header with an unclosed quote swallowed the file as its column names)."""
    repeated = tmp_path / "repeated.csv"
    repeated.write_text(",".join(["card_id"] * 100_000) + "\nc\n")
    with pytest.raises(HistoryFormatError, match=r"repeated\.csv:1: .*repeated card_id") as caught:
        load_history([repeated])
    assert len(str(caught.value)) < 1_000
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('transaction_id,"card_id\nt-1,c-1\n')
    with pytest.raises(HistoryFormatError, match=r"unclosed\.csv:1: .*\(unclosed quote: "):
        load_history([unclosed])


def test_json_nested_past_msgspecs_depth_is_a_rejected_line_not_a_crash(tmp_path: Path) -> None:
    """Before: a line of 100,000 nested arrays (or an envelope whose value is one, or an object
    with such a field) raised msgspec's RecursionError out of load_history: nothing loaded."""
    deep = "[" * 100_000 + "]" * 100_000
    good = msgspec.json.encode(pay("t-1")).decode()
    lines = [
        deep,  # 1
        json.dumps({"kind": "payment", "key": "c-1", "value": deep}),  # 2
        '{"transaction_id": "t-2", "extra": ' + deep + "}",  # 3
        good,  # 4: read
    ]
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    history = load_history([path])
    assert history.payments == [pay("t-1")]
    assert history.rejected == {"json nested too deeply": 2, "not a json object": 1}
    assert history.examples == {
        "json nested too deeply": [f"{path}:1", f"{path}:3"],
        "not a json object": [f"{path}:2"],
    }


def test_a_header_not_in_utf8_is_refused_naming_the_file_and_the_byte(tmp_path: Path) -> None:
    """Before: a spreadsheet's Latin-1 export with ``café`` in its header raised Python's bare
    ``'utf-8' codec can't encode character '\\udce9'`` out of load_history (at its first row),
    naming neither the file nor what was expected."""
    path = tmp_path / "latin.csv"
    header = ",".join(PAYMENT_COLUMNS[:10]) + ",caf\xe9"
    path.write_bytes(f"{header}\nt-1,c-1\n".encode("latin-1"))
    with pytest.raises(HistoryFormatError) as caught:
        load_history([path])
    assert str(caught.value) == (
        f"{path}:1: the header is not UTF-8 text (byte 0xe9); expected a CSV file in UTF-8 "
        "(a spreadsheet's 'CSV UTF-8')"
    )


@pytest.mark.parametrize("name", ["x" * 100_000 + ".csv", "x/" * 30_000 + "a.csv"])
def test_a_path_too_long_for_the_system_is_refused_bounded(tmp_path: Path, name: str) -> None:
    """Before: ``Path.is_dir`` raised ``OSError: [Errno 36] File name too long`` out of
    load_history, quoting the whole path (100,000 characters), a traceback in train and
    evaluate."""
    with pytest.raises(HistoryFormatError) as caught:
        load_history([tmp_path / name])
    text = str(caught.value)
    assert "File name too long; expected a history file or directory" in text
    assert len(text) < 1_000


def test_train_s_refusal_is_bounded(tmp_path: Path) -> None:
    missing = tmp_path / (("y" * 200 + "/") * 50) / "a.jsonl"  # no such file, 10,000 characters
    done = subprocess.run(
        [sys.executable, "-m", "model_state.train", "--history", str(missing), "--no-compare",
         "--model-dir", str(tmp_path / "models")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=os.environ | {"PAYSCORE_MODEL_KEY_FILE": str(tmp_path / "key")},
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.startswith("python -m model_state.train: ")
    assert len(done.stderr) < 2_500


def test_a_line_past_the_bound_is_rejected_and_the_next_lines_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a line was read whole, however long: a JSON array exported on one line, or a file
    without line breaks, of gigabytes was read into memory (the OOM killer, or a MemoryError
    traceback); a CSV's header likewise. Now a line past ``MAX_LINE_BYTES`` is rejected as
    ``line too long`` where it was and skipped unread to its end; a CSV header past it refuses
    the file, naming it."""
    monkeypatch.setattr(history_module, "MAX_LINE_BYTES", 1_000)
    good = msgspec.json.encode(pay("t-1")).decode()
    jsonl = tmp_path / "long.jsonl"
    jsonl.write_text("\n".join([good, "x" * 5_000, "[" + "1," * 3_000 + "1]", good.replace(
        "t-1", "t-2")]) + "\n")  # fmt: skip
    columns = "transaction_id,card_id,merchant_id,terminal_id,amount_minor,currency,event_time,"
    csv_path = tmp_path / "long.csv"
    csv_path.write_text(
        "\n".join(
            [columns + "mcc,channel,country", _payment_line("t-3"), "y" * 5_000,
             _payment_line("t-4")]
        ) + "\n"
    )  # fmt: skip
    history = load_history([jsonl, csv_path])
    assert [p.transaction_id for p in history.payments] == ["t-1", "t-2", "t-3", "t-4"]
    assert history.examples == {"line too long": [f"{jsonl}:2", f"{jsonl}:3", f"{csv_path}:3"]}
    header = tmp_path / "header.csv"
    header.write_text("z" * 5_000 + "\n" + _payment_line("t-5") + "\n")
    with pytest.raises(HistoryFormatError, match=r"header.csv:1: .*longer than 1,000"):
        load_history([header])


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_a_path_that_is_neither_a_file_nor_a_directory_is_named_as_such(path: str) -> None:
    """Before: ``/dev/zero: no such file or directory (a history path)``, of a path that is
    there: a device (or a pipe, a socket) is neither a history file nor a directory."""
    with pytest.raises(HistoryFormatError, match=f"{path}: neither a file nor a directory"):
        load_history([path])
