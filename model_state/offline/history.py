"""A bank's own history as the event stream training replays: payments and fraud labels from
files (:func:`load_history`) or from what the flow stored in MySQL (:func:`load_from_mysql`).

Offline code: the live flow never imports this module.

**Files.** Each path is a file or a directory (then every ``*.jsonl`` and ``*.csv`` in it, in
name order); files are read in the order given.

- JSON Lines (``.jsonl``, ``.ndjson``, ``.json``), one object per line, blank lines skipped:

  - the envelope of the samples and of ``python -m test_data.generate``
    (:mod:`test_data.samples`): ``{"kind": ..., "key": ..., "value": "<message JSON>"}`` or
    ``"value_base64"``; other envelope keys (``event``, ``reason``, and the generator's ground
    truth ``is_fraud``/``scenario``) are not used;
  - or the message itself, as the payments or labels topic carries it.

  A message with ``is_fraud`` and ``reported_at`` (or with one of them and no payment field) is a
  label, any other a payment. An envelope whose value is not a JSON object goes by its
  ``event`` (``"payment"`` unless it says ``"label"``).
- CSV with a header row (UTF-8): a file of payments (columns are the fields of
  :class:`~features.contract.Payment`; ``event_time`` ISO-8601 with its UTC offset; optional
  columns may be left out), a file of labels (``transaction_id, card_id, is_fraud,
  reported_at``; ``is_fraud`` is ``true``/``false``/``1``/``0``), or a file of payments with the
  extra columns ``is_fraud`` and ``reported_at``: a row with both set also carries its payment's
  label (the row counts as two messages; one of the two set is ``incomplete label``). A file
  whose columns include ``is_fraud`` and ``reported_at`` and no payment-only column is a file
  of labels. An empty cell is null; ``schema_version`` left empty takes its default. Each line
  is read alone (no field of the contract may hold a line break): a quote that never closes
  rejects its own line as ``unclosed quote`` (a cell past csv's size limit as ``field too
  large``), and the lines after it are read.

**Rules.** Every message is validated by the contract's own decoders
(:class:`~features.contract.PaymentDecoder`, :class:`~features.contract.LabelDecoder`; a CSV row
is first encoded as the JSON message it stands for). A file has no Kafka record time, so the
decoders' future-skew check does not apply (``received_at=None``); the contract's own range
(2000-01-01 to 2100-01-01 UTC) does. A payment whose transaction id came before is a
``duplicate transaction_id``: the first one read is kept, as the flow's first write wins. Labels
are taken in order of ``reported_at`` (then as read) and joined with the payments by
:func:`storage.labels.resolve`, the flow's own rules: the first label of a payment whose card
matches and that is not reported before the payment is accepted; the others are rejected as
``label for unknown payment``, ``label card mismatch``, ``label reported before payment``,
``duplicate label`` (same verdict again) or ``contradicting label``. Every rejected message is
counted by a short reason (:func:`short_reason` of the decoder's error: ``invalid json``,
``missing field card_id``, ``unknown field cvv``, ``bad identifier``, ``negative amount``, ...)
with up to :data:`MAX_EXAMPLES` locations ``file:line``.

:meth:`History.stream` gives payments by event time with each label released when the stream's
clock reaches its ``reported_at``, never before its payment: what the flow would have met.

>>> import tempfile
>>> rows = [
...     "transaction_id,card_id,merchant_id,terminal_id,amount_minor,currency,event_time,"
...     "mcc,channel,country,is_fraud,reported_at",
...     "t-1,c-1,m-1,p-1,1250,EUR,2026-03-02T09:30:00+01:00,5411,pos,FR,true,2026-03-04T10:00:00Z",
...     "t-2,c-1,m-2,p-2,-5,EUR,2026-03-02T10:00:00+01:00,5411,pos,FR,,",
...     "t-3,c-2,m-1,p-1,800,EUR,2026-03-05T12:00:00+01:00,5812,pos,FR,false,2026-03-06T08:00:00Z",
... ]
>>> with tempfile.TemporaryDirectory() as folder:
...     _ = (Path(folder) / "history.csv").write_text("\\n".join(rows) + "\\n")
...     history = load_history([Path(folder)])
>>> len(history.payments), len(history.labels), history.rejected
(2, 2, {'negative amount': 1})
>>> history.examples["negative amount"][0].endswith("history.csv:3")
True
>>> [getattr(e, "amount_minor", "label") for e in history.stream()]
[1250, 'label', 800, 'label']
>>> history.verdicts(datetime(2026, 3, 5, tzinfo=UTC))
{'t-1': True}
"""

from __future__ import annotations

import base64
import binascii
import csv
import heapq
import itertools
import re
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, AnyStr, Final, Literal

import msgspec
from sqlalchemy import Engine, select

from features.bounded import bounded
from features.contract import (
    FraudLabel,
    InvalidMessageError,
    LabelDecoder,
    Payment,
    PaymentDecoder,
)
from storage.labels import CLAIMED, REJECTED, WAITING, ReadLabel, resolve
from storage.rows import utc_naive
from storage.tables import dead_letters, fraud_labels, scored_payments

__all__ = [
    "MAX_EXAMPLES",
    "History",
    "HistoryFormatError",
    "load_from_mysql",
    "load_history",
    "short_reason",
]

MAX_EXAMPLES: Final = 5  # locations kept per rejection reason
# The longest line read (bytes of a JSON line, characters of a CSV one): a message is at most a
# Kafka message (1 MiB by default), twice that in an envelope's base64, and room to spare. A
# longer line (a JSON array exported on one line, a file without line breaks) was read whole,
# gigabytes into memory; it is now rejected where it is and skipped unread to its end.
MAX_LINE_BYTES = 16 * 1024 * 1024
JSON_SUFFIXES: Final = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES: Final = (".csv",)
DIRECTORY_PATTERNS: Final = ("*.jsonl", "*.csv")

# Reasons of this module's own (the decoders' errors are named by short_reason).
DUPLICATE_PAYMENT: Final = "duplicate transaction_id"
INCOMPLETE_LABEL: Final = "incomplete label"
INVALID_ENVELOPE: Final = "invalid envelope"
NOT_AN_OBJECT: Final = "not a json object"
WRONG_CELLS: Final = "wrong number of cells"
INVALID_UTF8: Final = "invalid utf-8"
UNCLOSED_QUOTE: Final = "unclosed quote"
FIELD_TOO_LARGE: Final = "field too large"
NOT_CSV: Final = "not csv"
TOO_DEEP: Final = "json nested too deeply"
LINE_TOO_LONG: Final = "line too long"
LABEL_WAITING: Final = "label waiting for its payment"
# storage.labels.resolve's rejection kinds, as named here.
JOIN_REASONS: Final[Mapping[str, str]] = {
    "not_found": "label for unknown payment",
    "card_mismatch": "label card mismatch",
    "reported_before_payment": "label reported before payment",
    "duplicate": "duplicate label",
    "contradicts": "contradicting label",
}

_LABEL_FIELDS: Final = frozenset(FraudLabel.__struct_fields__)
_LABEL_ONLY: Final = frozenset({"is_fraud", "reported_at"})
_PAYMENT_ONLY: Final = frozenset(Payment.__struct_fields__) - _LABEL_FIELDS
_IDENTIFIERS: Final = frozenset(
    {"transaction_id", "card_id", "merchant_id", "terminal_id", "device_id"}
)
_TIMES: Final = frozenset({"event_time", "reported_at"})
_INTEGERS: Final = frozenset({"amount_minor", "schema_version"})
_FLOATS: Final = frozenset({"latitude", "longitude"})
_BOOLEANS: Final[Mapping[str, bool]] = {"true": True, "false": False, "1": True, "0": False}
_INTEGER_TEXT = re.compile(r"\A[+-]?[0-9]+\Z")
_AT_PATH = re.compile(r" - at `\$\.?([A-Za-z0-9_]*)")
_NAMED_FIELD = re.compile(r"`([^`]*)`")
_JOIN_CHUNK = 10_000  # labels handed to resolve at a time
_NO_FEATURES: dict[str, float] = {}

Kind = Literal["payment", "label"]


class HistoryFormatError(ValueError):
    """A history file or directory that cannot be read at all (as opposed to a bad row)."""


def short_reason(error: str) -> str:
    """The short reason a rejected message is counted under, from a decoder's error text (or a
    dead letter's ``error``).

    >>> short_reason("Expected `int` >= 0 - at `$.amount_minor`")
    'negative amount'
    >>> short_reason("Object missing required field `card_id`")
    'missing field card_id'
    >>> short_reason("Expected `str` of length >= 1 - at `$.card_id`")
    'bad identifier'
    """
    if error.startswith("message has no value"):
        return "empty message"
    if error.startswith(("Input data was truncated", "JSON is malformed")):
        return "invalid json"
    if error.startswith("Invalid UTF-8"):
        return INVALID_UTF8
    if error.startswith(("Object missing required field", "Object contains unknown field")):
        named = _NAMED_FIELD.search(error)
        which = "missing" if error.startswith("Object missing") else "unknown"
        return f"{which} field {named.group(1) if named else '?'}"
    if error.startswith("transaction id") and " reused: " in error:
        return DUPLICATE_PAYMENT
    if error.startswith("MySQL refused"):
        return "refused by mysql"
    at = _AT_PATH.search(error)
    name = at.group(1) if at else ""
    if not name:
        if "come together" in error:
            return "unpaired coordinates"
        if error.startswith("Expected `object`"):
            return NOT_AN_OBJECT
        return "invalid message"
    if "got `null`" in error:
        return f"missing field {name}"
    if name in _IDENTIFIERS:
        return "bad identifier"
    if name == "amount_minor":
        if ">= 0" in error:
            return "negative amount"
        if "<=" in error or "out of range" in error:
            return "amount too large"
        return "bad amount"
    if name == "currency":
        return "unknown currency"
    if name == "country":
        return "unknown country"
    if name in _TIMES:
        if "timezone" in error:
            return f"{name} without time zone"
        if "must lie between" in error:
            return f"{name} out of range"
        if "UTC offset, from" in error:
            return f"{name} offset out of range"
        return f"bad {name}"
    if name in _FLOATS:
        return "bad coordinates"
    return f"bad {name}"


@dataclass(frozen=True)
class History:
    """Accepted payments and labels, and what was rejected.

    ``payments`` are sorted by event time (stable: as read for equal times), one per transaction
    id; ``labels`` are the accepted labels, at most one per payment, in order of ``reported_at``;
    ``rejected`` counts rejected messages by reason and ``examples`` holds up to
    :data:`MAX_EXAMPLES` locations (``file:line``) per reason.
    """

    payments: list[Payment]
    labels: list[FraudLabel]
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def stream(self) -> Iterator[Payment | FraudLabel]:
        """Payments and labels in arrival order, as the flow would have met them.

        Payments come by event time. A label is released at ``max(reported_at, its payment's
        event time)``: just before the first payment (after its own) whose event time reaches
        that moment, never before its payment; labels due after the last payment come at the
        end, in order of release. Only labels of payments in :attr:`payments` are released (a
        loaded history has no others).
        """
        pending = {label.transaction_id: label for label in self.labels}
        due: list[tuple[datetime, int, FraudLabel]] = []
        seq = itertools.count()
        for payment in self.payments:
            while due and due[0][0] <= payment.event_time:
                yield heapq.heappop(due)[2]
            yield payment
            label = pending.pop(payment.transaction_id, None)
            if label is not None:
                release = max(label.reported_at, payment.event_time)
                heapq.heappush(due, (release, next(seq), label))
        while due:
            yield heapq.heappop(due)[2]

    def verdicts(self, as_of: datetime) -> dict[str, bool]:
        """Transaction id -> ``is_fraud`` of the labels usable at ``as_of``: those reported at
        or before it (a label is usable only from its ``reported_at``)."""
        if as_of.tzinfo is None or as_of.utcoffset() is None:
            raise ValueError(
                f"History.verdicts: as_of must carry a UTC offset (labels are reported at aware "
                f"times); got the naive {as_of.isoformat()}"
            )
        return {
            label.transaction_id: label.is_fraud
            for label in self.labels
            if label.reported_at <= as_of
        }

    def summary(self) -> str:
        """Counts for a person: payments and their span, labels and frauds, rejections by
        reason with example locations."""
        lines = []
        if self.payments:
            first, last = self.payments[0].event_time, self.payments[-1].event_time
            days = (last - first) / timedelta(days=1)
            lines.append(
                f"{len(self.payments):,} payments from {first.astimezone(UTC).isoformat()} to "
                f"{last.astimezone(UTC).isoformat()} ({days:,.1f} days)"
            )
        else:
            lines.append("0 payments")
        frauds = sum(label.is_fraud for label in self.labels)
        unlabelled = len(self.payments) - len(self.labels)
        lines.append(
            f"{len(self.labels):,} labels: {frauds:,} frauds, {len(self.labels) - frauds:,} "
            f"legitimate; {unlabelled:,} payments without a label"
        )
        total = sum(self.rejected.values())
        lines.append(f"{total:,} rejected" + (":" if total else ""))
        for reason, count in sorted(self.rejected.items(), key=lambda kv: (-kv[1], kv[0])):
            where = ", ".join(self.examples.get(reason, []))
            more = ", ..." if count > len(self.examples.get(reason, [])) else ""
            lines.append(f"  {reason}: {count:,} (at {where}{more})")
        return "\n".join(lines)


class _Stored:
    """What :func:`storage.labels.resolve` reads of a payment (the ``Stored`` protocol)."""

    __slots__ = (
        "card_id",
        "event_time",
        "features",
        "label_is_fraud",
        "label_kind",
        "merchant_id",
        "model_version",
        "terminal_id",
        "transaction_id",
    )

    def __init__(self, payment: Payment, verdict: bool | None) -> None:
        self.transaction_id = payment.transaction_id
        self.card_id = payment.card_id
        self.merchant_id = payment.merchant_id
        self.terminal_id = payment.terminal_id
        self.event_time = utc_naive(payment.event_time)
        self.features = _NO_FEATURES
        self.model_version = ""
        self.label_is_fraud = verdict
        self.label_kind = None  # a history's labels are its own; no implicit negative here


class _StoredPayments(Mapping[str, _Stored]):
    """The accepted payments as :func:`storage.labels.resolve` looks them up, with the verdicts
    claimed so far (as ``scored_payments.label_is_fraud`` would hold them)."""

    def __init__(self, payments: Mapping[str, Payment], verdicts: Mapping[str, bool]) -> None:
        self._payments = payments
        self._verdicts = verdicts

    def __getitem__(self, transaction_id: str) -> _Stored:
        return _Stored(self._payments[transaction_id], self._verdicts.get(transaction_id))

    def __iter__(self) -> Iterator[str]:
        return iter(self._payments)

    def __len__(self) -> int:
        return len(self._payments)


class _Builder:
    """Collects decoded messages and rejections, then joins and sorts them into a History."""

    def __init__(self) -> None:
        self._payment_decoder = PaymentDecoder()
        self._label_decoder = LabelDecoder()
        self._payments: dict[str, Payment] = {}
        self._labels: list[FraudLabel] = []
        # Where each label was read, kept compactly: the join rejects labels long after.
        self._sources: list[str] = []
        self._source_ids: dict[str, int] = {}
        self._label_source = array("I")
        self._label_line = array("Q")
        self.rejected: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def reject(self, reason: str, location: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(location)

    def message(self, kind: Kind, raw: bytes | None, source: str, position: int | str) -> None:
        if kind == "label":
            self.label(raw, source, position)
        else:
            self.payment(raw, source, position)

    def payment(self, raw: bytes | None, source: str, position: int | str) -> None:
        try:
            payment = self._payment_decoder.decode(raw, received_at=None)
        except InvalidMessageError as exc:
            self.reject(short_reason(str(exc)), f"{source}:{position}")
            return
        if payment.transaction_id in self._payments:
            self.reject(DUPLICATE_PAYMENT, f"{source}:{position}")
            return
        self._payments[payment.transaction_id] = payment

    def label(self, raw: bytes | None, source: str, position: int | str) -> None:
        try:
            label = self._label_decoder.decode(raw, received_at=None)
        except InvalidMessageError as exc:
            self.reject(short_reason(str(exc)), f"{source}:{position}")
            return
        if not isinstance(position, int):
            raise TypeError(f"a label's position must be a line or offset; got {position!r}")
        source_id = self._source_ids.get(source)
        if source_id is None:
            source_id = self._source_ids[source] = len(self._sources)
            self._sources.append(source)
        self._labels.append(label)
        self._label_source.append(source_id)
        self._label_line.append(position)

    def _where(self, index: int) -> str:
        return f"{self._sources[self._label_source[index]]}:{self._label_line[index]}"

    def finish(self) -> History:
        labels = self._join()
        payments = sorted(self._payments.values(), key=attrgetter("event_time"))
        return History(payments, labels, dict(self.rejected), dict(self.examples))

    def _join(self) -> list[FraudLabel]:
        """The accepted labels, by the flow's rules (:func:`storage.labels.resolve`), taken in
        order of ``reported_at`` in chunks; rejected ones are counted."""
        order = sorted(range(len(self._labels)), key=lambda i: self._labels[i].reported_at)
        verdicts: dict[str, bool] = {}
        stored = _StoredPayments(self._payments, verdicts)
        moment = datetime.now(UTC)
        accepted: list[FraudLabel] = []
        for start in range(0, len(order), _JOIN_CHUNK):
            reads = [ReadLabel(self._labels[i], 0, i) for i in order[start : start + _JOIN_CHUNK]]
            outcome, _, claims = resolve("history", reads, {}, stored, lambda _: True, moment)
            if outcome.waiting:
                raise AssertionError(
                    f"resolve left {len(outcome.waiting)} labels waiting with every wait expired"
                )
            for rejected in outcome.rejected:
                kind = rejected.reason.partition(":")[0]
                self.reject(JOIN_REASONS.get(kind, kind), self._where(rejected.read.offset))
            for joined in outcome.learnable:
                accepted.append(self._labels[joined.label_offset])
            verdicts.update((t, label.is_fraud) for t, label in claims.items())
        return accepted


# -- files ---------------------------------------------------------------------------------------


def load_history(paths: Sequence[Path | str]) -> History:
    """Payments and labels of the files in ``paths`` (a directory stands for its ``*.jsonl`` and
    ``*.csv`` files, in name order), validated and joined as the module docstring says.

    Raises :class:`HistoryFormatError` for a path that is not a history file (an unknown
    suffix, a CSV without a usable header, a directory without history files) and
    ``FileNotFoundError`` for a missing path; rows that break the contract are counted in
    :attr:`History.rejected`, never raised.
    """
    if not paths:
        raise HistoryFormatError("load_history: no paths given; expected files or directories")
    builder = _Builder()
    for path in _history_files([Path(p) for p in paths]):
        if path.suffix.lower() in CSV_SUFFIXES:
            _read_csv(path, builder)
        else:
            _read_jsonl(path, builder)
    return builder.finish()


def _history_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        try:
            path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{bounded(str(path), 300)}: no such file or directory (a history path)"
            ) from None
        except OSError as exc:  # a name too long (Errno 36), a loop of links: is_dir raised it
            raise HistoryFormatError(
                f"{bounded(str(path), 300)}: {exc.strerror}; expected a history file or directory"
            ) from None
        if path.is_dir():
            found = sorted(
                {p for pattern in DIRECTORY_PATTERNS for p in path.glob(pattern) if p.is_file()}
            )
            if not found:
                raise HistoryFormatError(
                    f"{bounded(str(path), 300)}: a directory without history files; expected "
                    f"{' or '.join(DIRECTORY_PATTERNS)} in it"
                )
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in JSON_SUFFIXES + CSV_SUFFIXES:
                raise HistoryFormatError(
                    f"{bounded(str(path), 300)}: not a history file; expected a suffix among "
                    f"{', '.join(JSON_SUFFIXES + CSV_SUFFIXES)}, got "
                    f"{bounded(path.suffix, 100) or 'none'!r}"
                )
            files.append(path)
        else:  # there (stat found it), but a device, a pipe or a socket: "no such file" before
            raise HistoryFormatError(
                f"{bounded(str(path), 300)}: neither a file nor a directory (a device, a pipe or "
                "a socket); expected a history file or a directory of them"
            )
    return files


_any_json = msgspec.json.Decoder()


def _kind_of(message: Mapping[str, Any]) -> Kind:
    """A message is a label by its fields: ``is_fraud`` and ``reported_at``, or one of them and
    no field only payments have."""
    keys = message.keys()
    label_fields = _LABEL_ONLY & keys
    if label_fields == _LABEL_ONLY or (label_fields and not _PAYMENT_ONLY & keys):
        return "label"
    return "payment"


def _envelope_value(envelope: Mapping[str, Any]) -> bytes | None:
    """The message bytes of an envelope line; ``ValueError`` saying what is wrong."""
    if ("value" in envelope) == ("value_base64" in envelope):
        raise ValueError('an envelope needs exactly one of "value" and "value_base64"')
    if "value" in envelope:
        value = envelope["value"]
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f'"value" must be a JSON string or null; got {type(value).__name__}')
        return value.encode("utf-8", errors="surrogatepass")
    encoded = envelope["value_base64"]
    if not isinstance(encoded, str):
        raise ValueError(f'"value_base64" must be a string; got {type(encoded).__name__}')
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f'"value_base64" is not base64: {exc}') from None


def _lines(file: IO[AnyStr]) -> Iterator[AnyStr | None]:
    """The lines of ``file``, each read no further than :data:`MAX_LINE_BYTES`: a longer one is
    None, and the rest of it is read past in pieces of that size, never held."""
    limit = MAX_LINE_BYTES
    while line := file.readline(limit + 1):
        if len(line) <= limit:
            yield line
            continue
        rest = line
        while rest and rest[-1:] not in ("\n", b"\n"):
            rest = file.readline(limit)
        yield None


def _read_jsonl(path: Path, builder: _Builder) -> None:
    source = str(path)
    with path.open("rb") as file:
        for number, line in enumerate(_lines(file), start=1):
            if line is None:
                builder.reject(LINE_TOO_LONG, f"{source}:{number}")
                continue
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):  # a byte-order mark
                line = line[3:]
            if not line.strip():
                continue
            try:
                parsed = _any_json.decode(line)
            except msgspec.DecodeError as exc:
                builder.reject(short_reason(str(exc)), f"{source}:{number}")
                continue
            except RecursionError:  # msgspec's own, past its depth (100,000 nested arrays)
                builder.reject(TOO_DEEP, f"{source}:{number}")
                continue
            if not isinstance(parsed, dict):
                builder.reject(NOT_AN_OBJECT, f"{source}:{number}")
                continue
            if ("value" in parsed or "value_base64" in parsed) and "transaction_id" not in parsed:
                try:
                    raw = _envelope_value(parsed)
                except ValueError:
                    builder.reject(INVALID_ENVELOPE, f"{source}:{number}")
                    continue
                kind: Kind = "label" if parsed.get("event") == "label" else "payment"
                try:
                    message = _any_json.decode(raw) if raw else None
                except (msgspec.DecodeError, RecursionError):  # the decoder says why
                    message = None
                if isinstance(message, dict):
                    kind = _kind_of(message)
                builder.message(kind, raw, source, number)
            else:
                builder.message(_kind_of(parsed), line, source, number)


def _cell(name: str, text: str) -> Any:
    """A CSV cell as the JSON value the message would carry; what does not convert stays text,
    for the decoder to reject with its own reason."""
    if text == "":
        return None
    if name in _INTEGERS and _INTEGER_TEXT.match(text):
        return int(text)
    if name in _FLOATS:
        try:
            number = float(text)
        except ValueError:
            return text
        return number if number not in (float("inf"), float("-inf")) and number == number else text
    if name in _TIMES:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text
        return moment.isoformat() if moment.utcoffset() is not None else text
    if name == "is_fraud":
        return _BOOLEANS.get(text.strip().lower(), text)
    return text


def _message(row: Mapping[str, str], names: Sequence[str]) -> bytes:
    message = {name: _cell(name, row[name]) for name in names if name in row}
    if message.get("schema_version", 0) is None:
        del message["schema_version"]  # empty: the default
    return msgspec.json.encode(message)


def _cells(line: str) -> list[str]:
    """The cells of one line of a CSV history; ``csv.Error`` for a line csv cannot read. A line
    is read alone (no field of the contract may hold a line break): a quote that never closes
    rejects its own line, where csv would have read every line after it into that field."""
    return next(csv.reader((line,), strict=True), [])


def _csv_reason(error: csv.Error) -> str:
    """The short reason of a line csv cannot read."""
    text = str(error)
    if text.startswith("unexpected end of data"):
        return UNCLOSED_QUOTE
    if text.startswith("field larger than field limit"):
        return FIELD_TOO_LARGE
    return NOT_CSV


def _read_csv(path: Path, builder: _Builder) -> None:
    source = str(path)
    # surrogateescape: a row with bytes that are not UTF-8 is rejected, not the whole file.
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        lines = _lines(text)
        first = next(lines, "")
        if first is None:
            raise HistoryFormatError(
                f"{source}:1: the header is longer than {MAX_LINE_BYTES:,} characters; expected "
                "a CSV history's header row of column names"
            )
        if not first:
            return  # an empty file
        try:
            header = _cells(first)
        except csv.Error as exc:
            raise HistoryFormatError(
                f"{source}:1: a CSV history needs a header row csv can read ({_csv_reason(exc)}: "
                f"{exc}); got '{bounded(first.rstrip(chr(13) + chr(10)), 200)}'"
            ) from None
        try:
            first.encode("utf-8")
        except UnicodeEncodeError as exc:  # a byte that is not UTF-8, kept as a surrogate
            raise HistoryFormatError(
                f"{source}:1: the header is not UTF-8 text (byte "
                f"0x{ord(first[exc.start]) - 0xDC00:02x}); expected a CSV file in UTF-8 (a "
                "spreadsheet's 'CSV UTF-8')"
            ) from None
        names = [name.strip() for name in header]
        # Counted once (names.count per name took minutes for a header of 100,000 names).
        repeated = sorted(n for n, count in Counter(names).items() if count > 1)
        if "" in names or repeated:
            what = "an empty name" if "" in names else "repeated " + ", ".join(repeated)
            raise HistoryFormatError(
                f"{source}:1: a CSV history needs a header row of distinct column names; got "
                f"{bounded(what, 200)} in '{bounded(','.join(header), 200)}'"
            )
        columns = set(names)
        labels_only = columns >= _LABEL_ONLY and not columns & _PAYMENT_ONLY
        payment_columns = [n for n in names if n not in _LABEL_ONLY]
        label_columns = [n for n in names if n in _LABEL_FIELDS]
        carries_labels = not labels_only and bool(columns & _LABEL_ONLY)
        for number, line in enumerate(lines, start=2):
            where = f"{source}:{number}"
            if line is None:
                builder.reject(LINE_TOO_LONG, where)
                continue
            try:
                cells = _cells(line)
            except csv.Error as exc:
                builder.reject(_csv_reason(exc), where)
                continue
            if not cells:
                continue  # a blank line
            if len(cells) != len(names):
                builder.reject(WRONG_CELLS, where)
                continue
            try:
                "".join(cells).encode("utf-8")
            except UnicodeEncodeError:
                builder.reject(INVALID_UTF8, where)
                continue
            row = dict(zip(names, cells, strict=True))
            if labels_only:
                builder.label(_message(row, names), source, number)
                continue
            builder.payment(_message(row, payment_columns), source, number)
            if carries_labels:
                given = [bool(row.get(n)) for n in sorted(_LABEL_ONLY)]
                if all(given):
                    builder.label(_message(row, label_columns), source, number)
                elif any(given):
                    builder.reject(INCOMPLETE_LABEL, where)


# -- MySQL ---------------------------------------------------------------------------------------


def load_from_mysql(
    engine: Engine,
    *,
    mcc: str = "0000",
    channel: str = "pos",
    country: str = "AQ",
    chunk_rows: int = 10_000,
) -> History:
    """The History of what the flow stored: payments from ``scored_payments``, labels from the
    ``claimed`` rows of the ledger ``fraud_labels``, joined and validated as from files.

    ``scored_payments`` keeps a payment's ids, amount, currency and event time (UTC, with its
    UTC offset, so ``event_time`` comes back exactly as the payment had it). It does **not**
    keep ``mcc``, ``channel``, ``country``, ``device_id``, ``latitude``, ``longitude`` (nor
    ``schema_version``, which is 1). The contract requires the first three, so every payment
    gets the fillers ``mcc``, ``channel`` and ``country`` (by default ``"0000"``, no merchant
    category; ``"pos"``; ``"AQ"``, Antarctica, so that a filled value is not taken for a real
    one); the others are null. Features replayed from this history therefore differ from the
    ones the flow scored with where they depend on those fields: ``card_country_unusual`` is
    always 0 (one country for every payment) and ``card_speed_kmh`` 0 (no coordinates). The
    features as scored are in ``scored_payments.features`` (:func:`storage.labels.labelled_since`).

    A label's ``reported_at`` is stored in UTC: it comes back in UTC, the same moment, its
    original offset lost. Also counted in :attr:`History.rejected`, as a file history would count
    them: the ledger's rejected labels (by their reason), its labels still waiting for their
    payment (``label waiting for its payment``), and the dead letters (by the reason of their
    ``error``); locations are ``scored_payments:<transaction id>``,
    ``fraud_labels:<topic>/<partition>:<offset>`` and ``dead_letters:<topic>/<partition>:<offset>``.

    Every query streams (a server-side cursor, ``chunk_rows`` rows at a time), so memory holds
    the History, not the result sets.
    """
    filler = {"mcc": mcc, "channel": channel, "country": country}
    _check_filler(filler)
    builder = _Builder()
    sp, fl, dl = scored_payments, fraud_labels, dead_letters
    with engine.connect() as plain:
        connection = plain.execution_options(yield_per=chunk_rows)
        payments = connection.execute(
            select(
                sp.c.transaction_id,
                sp.c.card_id,
                sp.c.merchant_id,
                sp.c.terminal_id,
                sp.c.amount_minor,
                sp.c.currency,
                sp.c.event_time,
                sp.c.utc_offset_minutes,
            ).order_by(sp.c.event_time, sp.c.transaction_id)  # ix_scored_payments_event_time
        )
        for row in payments:
            try:
                offset = timezone(timedelta(minutes=row.utc_offset_minutes))
            except ValueError:
                builder.reject("bad utc_offset_minutes", f"scored_payments:{row.transaction_id}")
                continue
            message = {
                "transaction_id": row.transaction_id,
                "card_id": row.card_id,
                "merchant_id": row.merchant_id,
                "terminal_id": row.terminal_id,
                "amount_minor": row.amount_minor,
                "currency": row.currency,
                "event_time": row.event_time.replace(tzinfo=UTC).astimezone(offset),
                **filler,
            }
            builder.payment(msgspec.json.encode(message), "scored_payments", row.transaction_id)
        labels = connection.execute(
            select(
                fl.c.topic,
                fl.c.kafka_partition,
                fl.c.kafka_offset,
                fl.c.transaction_id,
                fl.c.card_id,
                fl.c.is_fraud,
                fl.c.reported_at,
                fl.c.status,
                fl.c.reason,
            ).order_by(fl.c.topic, fl.c.kafka_partition, fl.c.kafka_offset)  # the primary key
        )
        for row in labels:
            source = f"fraud_labels:{row.topic}/{row.kafka_partition}"
            if row.status == CLAIMED:
                message = {
                    "transaction_id": row.transaction_id,
                    "card_id": row.card_id,
                    "is_fraud": bool(row.is_fraud),
                    "reported_at": row.reported_at.replace(tzinfo=UTC),
                }
                builder.label(msgspec.json.encode(message), source, row.kafka_offset)
            elif row.status == REJECTED:
                kind = (row.reason or "").partition(":")[0]
                builder.reject(JOIN_REASONS.get(kind, kind), f"{source}:{row.kafka_offset}")
            elif row.status == WAITING:
                builder.reject(LABEL_WAITING, f"{source}:{row.kafka_offset}")
            else:
                builder.reject(f"label status {row.status}", f"{source}:{row.kafka_offset}")
        letters = connection.execute(
            select(dl.c.topic, dl.c.kafka_partition, dl.c.kafka_offset, dl.c.error).order_by(
                dl.c.topic, dl.c.kafka_partition, dl.c.kafka_offset
            )
        )
        for row in letters:
            builder.reject(
                short_reason(row.error),
                f"dead_letters:{row.topic}/{row.kafka_partition}:{row.kafka_offset}",
            )
    return builder.finish()


def _check_filler(filler: Mapping[str, str]) -> None:
    """Raise ``ValueError`` when the fillers would make every payment break the contract."""
    probe = {
        "transaction_id": "t",
        "card_id": "c",
        "merchant_id": "m",
        "terminal_id": "p",
        "amount_minor": 0,
        "currency": "EUR",
        "event_time": "2026-01-01T00:00:00Z",
        **filler,
    }
    try:
        PaymentDecoder().decode(msgspec.json.encode(probe))
    except InvalidMessageError as exc:
        raise ValueError(
            f"load_from_mysql: the fillers {dict(filler)} do not meet the payment contract: {exc}"
        ) from None
