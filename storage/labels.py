"""Fraud labels meet their scored payments in MySQL: each label message is accounted for once.

A label is joined with the row the flow stored when it scored the payment: the features used at
that moment (point in time, never recomputed), the merchant, the terminal and the event time. So
the flow keeps no per-payment memory while it waits days or weeks for labels.

Every label message read has one row in ``fraud_labels``, keyed by where it was read (topic,
partition, offset), that says what became of it:

- ``waiting``: its payment is not stored yet; the flow tries again;
- ``claimed``: it was joined with its payment, which now carries the verdict
  (``scored_payments.label_is_fraud``) and how it came (``label_kind``: ``explicit``, or
  ``correction``); ``learned_version`` names the first model version that learned it, once one
  is recorded. A claimed label the learner is not given says why in ``reason``:
  ``sampled_out`` (negative downsampling, below). A fraud whose payment was learned as an
  implicit negative (:mod:`storage.implicit`) is claimed as a ``correction``, with that
  ``reason``: the implicit negative was a presumption, the report is the fact;
- ``rejected``, with the ``reason``: ``duplicate`` (the payment has this verdict already, from
  another message or as an implicit negative), ``contradicts`` (the payment has the other
  verdict already, from a message), ``card_mismatch``, ``reported_before_payment``,
  ``not_found`` (no payment stored within the wait), or ``waiting_full`` (more labels of its
  batch waited for their payments than ``waiting_max``: the oldest are given up, below).

**Waiting is bounded.** Every label that waits is tried again with every claim of its batch's
card group, and held in the flow's state and snapshot until then. Labels for ids that no
payment has (forged, or a broken producer's) would all wait their full time: the state, the
snapshot and every claim statement would grow with the rate of such labels times the wait.
``waiting_max`` bounds the labels a batch leaves waiting: past it the oldest (first read) are
rejected at once as ``waiting_full``. The oldest, not the newest: it has been tried most often
and found nothing each time, and a genuine label whose payment the sink is still writing, read
during a flood, gets the bound's worth of later labels of time to be claimed instead of none.

**Negative downsampling** (:mod:`model_state.label_kinds`): a legitimate label that
:func:`~model_state.label_kinds.sampled` does not keep at the configured rate is claimed and
recorded as any other (the payment carries its verdict, a retrain learns it), but not handed to
the learner; its row says ``sampled_out``. The decision is made once, at the claim, and kept in
the row: a replay hands on exactly what the first claim handed on, whatever the rate is then.

**Who gave it.** A label may name the ``analyst`` who gave it in the review queue. Anyone who
can write to the labels topic can write that name too, so it is believed only when the review
application recorded that very verdict: a ``review_verdicts`` row with the same transaction,
card, analyst, verdict and time (``decided_at`` is the label's ``reported_at``, to the
microsecond). Then ``fraud_labels.analyst`` names the analyst; otherwise the name goes to
``unverified_analyst``, a claim that pages show as unverified and never as that analyst's
verdict. The label itself is claimed and learned either way, as any label of the bank's feed:
the check is about whom the verdict is credited to. Matching costs one indexed read per batch
that holds labels naming an analyst (none for the bank's feed); a copied genuine message
matches, and says only what the analyst said.

:func:`claim_labels` does this for a batch in one transaction of three statements, whatever
its size, each taking the batch as one JSON document (``JSON_TABLE``, MySQL 8 and MariaDB): one
joined read of the labels' ledger rows and payments, one ``UPDATE ... JOIN`` that marks the
claimed payments, one ``INSERT ... SELECT`` of the ledger rows. A payment's features come from
its packed ``feature_vector`` (:func:`storage.feature_vector.features_of`), its JSON only when
the vector cannot say them (no vector, another catalogue, a feature absent or not finite): the
learner gets the very dict the JSON holds either way. **Replays.** The flow's state
(the learner, the fraud rates) is restored from its last snapshot after a crash, and the labels
read since are read again. A label whose own row says ``claimed`` is therefore handed on again,
with its ``learned_version``: the state it goes to has not seen it (the learner skips it if the
version it resumed from learned it already). Claiming by position, not by payment, is what makes
this exact: another message about the same payment is a ``duplicate``, never a replay.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import msgspec
from sqlalchemy import Connection, select

from features.bounded import bounded
from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel
from model_state.label_kinds import LabelKind, learn_weight
from storage.engine import ConcurrentChangeError
from storage.feature_vector import features_of
from storage.rows import utc_naive
from storage.tables import fraud_labels, review_verdicts, scored_payments

WAITING, CLAIMED, REJECTED = "waiting", "claimed", "rejected"
SAMPLED_OUT = "sampled_out"  # the reason of a claimed label the learner is not given
CORRECTION = "correction"  # the reason of a claimed fraud that corrects an implicit negative
WAITING_FULL = "waiting_full"  # the reason of a waiting label given up past ``waiting_max``


class ReadLabel(msgspec.Struct, frozen=True):
    """A fraud label and where it was read on the labels topic."""

    label: FraudLabel
    partition: int
    offset: int

    @property
    def position(self) -> tuple[int, int]:
        return self.partition, self.offset


class LabelledPayment(msgspec.Struct, frozen=True, kw_only=True):
    """A label joined with what was known when its payment was scored."""

    transaction_id: str
    card_id: str
    merchant_id: str
    terminal_id: str
    payment_time: float  # POSIX seconds
    reported_at: float  # POSIX seconds
    is_fraud: bool
    features: dict[str, float]
    scored_by: str  # the model version that scored the payment
    label_partition: int = -1  # where the label was read (its fraud_labels row); -1: implicit
    label_offset: int = -1
    learned_version: str | None = None  # a version that learned it already (a replay)
    kind: LabelKind = LabelKind.EXPLICIT
    weight: float = 1.0  # the sampling weight (model_state.label_kinds.learn_weight)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Compact pickling (the flow sends every labelled payment to the learner's process):
        features named as the catalogue travel as packed doubles, in its order (dict order does
        not matter to the learner), others as they are."""
        features: object = self.features
        if len(self.features) == len(FEATURE_NAMES) and self.features.keys() == _CATALOGUE:
            # In the catalogue's order (MySQL 8's JSON type returns keys sorted).
            features = array("d", map(self.features.__getitem__, FEATURE_NAMES)).tobytes()
        return _labelled_payment, (features, *(getattr(self, name) for name in _OTHER_FIELDS))


_CATALOGUE = frozenset(FEATURE_NAMES)
_OTHER_FIELDS = tuple(name for name in LabelledPayment.__struct_fields__ if name != "features")


def _labelled_payment(features: bytes | dict[str, float], *fields: Any) -> LabelledPayment:
    if isinstance(features, bytes):
        packed = array("d")
        packed.frombytes(features)
        features = dict(zip(FEATURE_NAMES, packed, strict=True))
    return LabelledPayment(features=features, **dict(zip(_OTHER_FIELDS, fields, strict=True)))


class FraudNote(msgspec.Struct, frozen=True, array_like=True):
    """What the terminals' and merchants' fraud rates take from a claimed fraud label: small,
    so that it crosses between the flow's processes cheaply (the features stay behind)."""

    terminal_id: str
    merchant_id: str
    payment_time: float
    reported_at: float
    is_fraud: bool

    @classmethod
    def of(cls, label: LabelledPayment) -> FraudNote:
        return cls(
            label.terminal_id,
            label.merchant_id,
            label.payment_time,
            label.reported_at,
            label.is_fraud,
        )


class Rejected(msgspec.Struct, frozen=True):
    read: ReadLabel
    reason: str


class Claimed(msgspec.Struct, frozen=True):
    """Outcome of :func:`claim_labels` for one batch."""

    learnable: list[LabelledPayment]  # claimed now, or claimed by this very message before
    waiting: list[ReadLabel]
    rejected: list[Rejected]  # rejected now
    replayed: int = 0  # of learnable, claimed before by the same message
    sampled_out: int = 0  # claimed now, not for the learner (negative downsampling)
    corrections: int = 0  # of learnable, claimed now as corrections of implicit negatives


def claim_labels(
    connection: Connection,
    topic: str,
    reads: Sequence[ReadLabel],
    *,
    expired: Callable[[ReadLabel], bool] = lambda _: False,
    now: datetime | None = None,
    sample_rate: float = 1.0,
    waiting_max: int | None = None,
) -> Claimed:
    """Join ``reads`` with their stored payments, claim them and record every outcome in
    ``fraud_labels``; call in a transaction. A label whose payment is not stored waits, unless
    ``expired(read)`` says it has waited long enough: then it is rejected as ``not_found``.
    At most ``waiting_max`` labels are left waiting (None: no bound): the oldest past it are
    rejected as ``waiting_full``.

    Labels of one payment within the batch: the first claims it, the later ones are duplicates
    or contradictions. The caller must not claim labels of one card concurrently (the flow keys
    this step by groups of cards); then no lock is needed for the reads. The implicit negatives
    (:mod:`storage.implicit`) are claimed concurrently: each payment is marked only if it is
    still as it was read (unlabelled, or implicit for a correction), else the transaction rolls
    back and runs again. ``sample_rate``: negative downsampling's.
    """
    moment = utc_naive(now or datetime.now(UTC))
    if not reads:
        return Claimed([], [], [])
    # Three statements a batch, each with the batch as one JSON document (JSON_TABLE): no
    # parameter a value to escape, one round trip each (measured: benchmarks/bench_claim_cpu.py).
    sql = connection.exec_driver_sql
    ledger: dict[tuple[int, int], _Recorded] = {}
    payments: dict[str, _Payment] = {}
    unpacked: list[str] = []  # payments whose vector cannot say their features: the JSON will
    for i, status, learned, reason, *row in sql(
        _READ,
        (_document([(r.partition, r.offset, r.label.transaction_id) for r in reads]), topic),
    ):
        if status is not None:
            ledger[reads[i - 1].position] = _Recorded(status, learned, reason)
        if row[0] is not None and row[0] not in payments:
            features = features_of(row[5])
            if features is None:
                unpacked.append(row[0])
            payments[row[0]] = _Payment(*row[:5], features, *row[6:])  # type: ignore[arg-type]
    if unpacked:
        for t, features in sql(
            f"SELECT transaction_id, features FROM {_SP} "
            f"WHERE transaction_id IN ({_marks(len(unpacked))})",
            tuple(unpacked),
        ):
            payments[t] = payments[t]._replace(features=_features(features))
    # Labels new here that name an analyst: the recorded verdicts that would confirm them.
    claimants = sorted(
        {r.label.transaction_id for r in reads if r.label.analyst and r.position not in ledger}
    )
    confirmed: set[_Confirmation] = set()
    if claimants:
        confirmed = {
            _Confirmation(t, c, a, bool(f), d)
            for t, c, a, f, d in sql(
                "SELECT transaction_id, card_id, analyst, is_fraud, decided_at "
                f"FROM {_RV} WHERE transaction_id IN ({_marks(len(claimants))})",
                tuple(claimants),
            )
        }
    outcome, record, claims = resolve(
        topic,
        reads,
        ledger,
        payments,
        expired,
        moment,
        confirmed=confirmed,
        sample_rate=sample_rate,
        waiting_max=waiting_max,
    )
    if claims:
        # Only the very rows the labels were joined with, as they were read (unlabelled, or
        # implicit for a correction): a row replaced meanwhile by a message read earlier in
        # Kafka order (storage.payments), or claimed meanwhile as an implicit negative, is not
        # what was decided on. In the order of the payments' key, as the rows are locked.
        marks = [
            (
                t,
                payments[t].kafka_partition,
                payments[t].kafka_offset,
                payments[t].label_kind or "",
                int(claims[t].is_fraud),
                utc_naive(claims[t].reported_at),
                _kind_of(claims[t], payments[t]).value,
            )
            for t in sorted(claims)
        ]
        marked = sql(_MARK, (_document(marks),))
        if marked.rowcount != len(claims):  # another claim or a replacement came first: again
            raise ConcurrentChangeError(
                f"{len(claims) - marked.rowcount} of {len(claims)} payments were labelled or "
                "replaced by another transaction during this claim"
            )
    if record:
        sql(_RECORD, (_document([_present(r) for r in record]),))
    return outcome


def _present(r: dict[str, Any]) -> list[Any]:
    """A ledger row for the document (:data:`_RECORD`): in its columns' order, a nullable
    column's value in a list (empty: NULL), the flag as a number."""
    reason, learned, resolved = r["reason"], r["learned_version"], r["resolved_at"]
    analyst, unverified = r["analyst"], r["unverified_analyst"]
    return [
        r["topic"],
        r["kafka_partition"],
        r["kafka_offset"],
        r["transaction_id"],
        r["card_id"],
        int(r["is_fraud"]),
        r["reported_at"],
        r["status"],
        [] if reason is None else [reason],
        [] if learned is None else [learned],
        r["first_seen_at"],
        [] if resolved is None else [resolved],
        [] if analyst is None else [analyst],
        [] if unverified is None else [unverified],
    ]


_FL, _SP, _RV = fraud_labels.name, scored_payments.name, review_verdicts.name
# JSON_TABLE's text columns: binary like the id columns, wider than any (nothing is cut).
_TEXT = "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"


def _rows_of(columns: str) -> str:
    """The batch's JSON document (a parameter) as a table of ``columns`` (MySQL 8, MariaDB)."""
    return f"JSON_TABLE(%s, '$[*]' COLUMNS ({columns}))"


# The ledger rows and the payments of a batch's labels, in one read: one row a label, with its
# position in the batch (``i``, from 1). (Measured: the same as one JSON_ARRAY a row moves
# about 10 µs a label from PyMySQL's reading into MariaDB's building of it, no saving.)
_READ = (
    "SELECT r.i, f.status, f.learned_version, f.reason, p.transaction_id, p.card_id, "
    "p.merchant_id, p.terminal_id, p.event_time, p.feature_vector, p.model_version, "
    "p.label_is_fraud, p.kafka_partition, p.kafka_offset, p.label_kind FROM "
    + _rows_of(
        f"i FOR ORDINALITY, kp INT PATH '$[0]', ko BIGINT PATH '$[1]', t {_TEXT} PATH '$[2]'"
    )
    + f" AS r LEFT JOIN {_FL} f ON f.topic = %s AND f.kafka_partition = r.kp "
    f"AND f.kafka_offset = r.ko LEFT JOIN {_SP} p ON p.transaction_id = r.t"
)
# The claimed payments marked, each only as it was read (STRAIGHT_JOIN: row by row from the
# document, each payment by its key; never a scan of the payments).
_MARK = (
    "UPDATE "
    + _rows_of(
        f"t {_TEXT} PATH '$[0]', kp INT PATH '$[1]', ko BIGINT PATH '$[2]', "
        f"was {_TEXT} PATH '$[3]', f TINYINT PATH '$[4]', rt DATETIME(6) PATH '$[5]', "
        f"k {_TEXT} PATH '$[6]'"
    )
    + f" AS m STRAIGHT_JOIN {_SP} p ON p.transaction_id = m.t AND p.kafka_partition = m.kp "
    "AND p.kafka_offset = m.ko AND COALESCE(p.label_kind, '') = m.was "
    "SET p.label_is_fraud = m.f, p.label_reported_at = m.rt, p.label_kind = m.k "
    "WHERE p.label_is_fraud IS NULL OR p.label_kind = 'implicit'"
)
# The ledger's columns as the document has them: a value, or (nullable) a list of none or one
# value, read at [0]: a missing value is NULL in JSON_TABLE on MySQL 8 and MariaDB alike, where
# a JSON null is not (older MySQL 8.0 stores the text 'null'). Positions, not keys: measured,
# MariaDB reads 14 keys of an object in about a third more CPU than 14 positions of an array.
_LEDGER_TYPES = {
    "topic": _TEXT,
    "kafka_partition": "INT",
    "kafka_offset": "BIGINT",
    "transaction_id": _TEXT,
    "card_id": _TEXT,
    "is_fraud": "TINYINT",
    "reported_at": "DATETIME(6)",
    "status": _TEXT,
    "reason": "TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    "learned_version": _TEXT,
    "first_seen_at": "DATETIME(6)",
    "resolved_at": "DATETIME(6)",
    "analyst": _TEXT,
    "unverified_analyst": _TEXT,
}
_NULLABLE = frozenset(c.name for c in fraud_labels.columns if c.nullable)
# Every decided ledger row written, a replayed one's outcome updated.
# (The document's columns are named apart from the ledger's: no name is ambiguous.)
_RECORD = (
    f"INSERT INTO {_FL} ({', '.join(_LEDGER_TYPES)}) "
    f"SELECT {', '.join(f'j_{c}' for c in _LEDGER_TYPES)} FROM "
    + _rows_of(
        ", ".join(
            f"j_{c} {t} PATH '$[{k}]{'[0]' if c in _NULLABLE else ''}'"
            for k, (c, t) in enumerate(_LEDGER_TYPES.items())
        )
    )
    + " AS r ON DUPLICATE KEY UPDATE status = VALUES(status), reason = VALUES(reason), "
    "resolved_at = VALUES(resolved_at)"
)
_encode = msgspec.json.Encoder().encode


def _document(rows: list[Any]) -> str:
    """``rows`` as the JSON text of a statement's parameter (text: a byte string would reach
    the server as a binary string, not as the connection's utf8mb4)."""
    return _encode(rows).decode()


def _kind_of(label: FraudLabel, row: Stored) -> LabelKind:
    """How a label claimed against ``row`` comes to the learner: a fraud for a payment learned
    as an implicit negative is a correction, any other an explicit label."""
    if label.is_fraud and row.label_kind == LabelKind.IMPLICIT:
        return LabelKind.CORRECTION
    return LabelKind.EXPLICIT


_features = msgspec.json.Decoder(dict[str, float]).decode


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


class _Confirmation(NamedTuple):
    """A verdict recorded by the review application, as a label of it reads."""

    transaction_id: str
    card_id: str
    analyst: str
    is_fraud: bool
    at: datetime  # naive UTC


def confirmation(label: FraudLabel) -> _Confirmation | None:
    """The ``review_verdicts`` row that would confirm ``label``'s analyst (None: it names none)."""
    if label.analyst is None:
        return None
    return _Confirmation(
        label.transaction_id,
        label.card_id,
        label.analyst,
        label.is_fraud,
        utc_naive(label.reported_at),
    )


class _Recorded(NamedTuple):
    status: str
    learned_version: str | None
    reason: str | None = None


class _Payment(NamedTuple):
    transaction_id: str
    card_id: str
    merchant_id: str
    terminal_id: str
    event_time: datetime
    features: dict[str, float]
    model_version: str
    label_is_fraud: bool | None
    kafka_partition: int
    kafka_offset: int
    label_kind: str | None = None


class Stored(Protocol):
    """What :func:`resolve` reads of a stored payment (a row of ``scored_payments``)."""

    transaction_id: str
    card_id: str
    merchant_id: str
    terminal_id: str
    event_time: datetime  # naive UTC
    features: dict[str, float]
    model_version: str
    label_is_fraud: bool | None
    label_kind: str | None  # explicit, implicit, correction; None: unlabelled (or labelled
    # before kinds were recorded)


class Recorded(Protocol):
    """What :func:`resolve` reads of a label's ``fraud_labels`` row."""

    status: str
    learned_version: str | None
    reason: str | None


def resolve(
    topic: str,
    reads: Sequence[ReadLabel],
    ledger: Mapping[tuple[int, int], Recorded],
    payments: Mapping[str, Stored],
    expired: Callable[[ReadLabel], bool],
    moment: datetime,
    *,
    confirmed: Collection[tuple[str, str, str, bool, datetime]] = frozenset(),
    sample_rate: float = 1.0,
    waiting_max: int | None = None,
) -> tuple[Claimed, list[dict[str, Any]], dict[str, FraudLabel]]:
    """The decisions of :func:`claim_labels`, without I/O: the outcome, the ``fraud_labels``
    rows to upsert, and the payments to mark (transaction id -> the claiming label).
    ``confirmed`` holds the recorded verdicts (:func:`confirmation`) that confirm a label's
    analyst; a label naming one not in it is stored with an unverified analyst.
    ``sample_rate``: negative downsampling's (a legitimate label it does not keep is claimed
    but not learnable; a replay of a kept one is learned at ``1 / sample_rate``).
    ``waiting_max``: at most this many labels are left waiting, the oldest (first in ``reads``)
    past it are rejected as ``waiting_full``; None: no bound."""
    claims: dict[str, FraudLabel] = {}  # claimed in this batch
    learnable: list[LabelledPayment] = []
    waiting: list[ReadLabel] = []
    rejected: list[Rejected] = []
    replayed = sampled_out = corrections = 0
    record: list[dict[str, Any]] = []
    for read in reads:
        label = read.label
        known = ledger.get(read.position)
        if known is not None and known.status == REJECTED:
            continue  # a replay of a rejection: recorded already
        row = payments.get(label.transaction_id)
        if known is not None and known.status == CLAIMED and row is not None:
            why = _reason_class(known.reason)
            if why == SAMPLED_OUT:
                continue  # claimed, and never for the learner
            replayed += 1
            kind = LabelKind.CORRECTION if why == CORRECTION else LabelKind.EXPLICIT
            weight = 1.0 if label.is_fraud else 1.0 / sample_rate
            learnable.append(_joined(read, row, known.learned_version, kind, weight))
            continue
        reason = None
        correction = False
        if row is None:
            if not expired(read):
                waiting.append(read)
                if known is None:
                    record.append(_ledger_row(topic, read, WAITING, None, moment, confirmed))
                continue
            reason = "not_found: no payment with this transaction id was stored within the wait"
        elif row.card_id != label.card_id:
            reason = f"card_mismatch: the payment was made with card {row.card_id!r}"
        elif utc_naive(label.reported_at) < row.event_time:
            reason = (
                f"reported_before_payment: reported at {label.reported_at.isoformat()}, "
                f"the payment happened at {row.event_time.isoformat()} UTC"
            )
        else:
            claim = claims.get(label.transaction_id)
            stored = claim.is_fraud if claim is not None else row.label_is_fraud
            implicit = claim is None and row.label_kind == LabelKind.IMPLICIT
            correction = implicit and label.is_fraud
            if stored is not None and not correction:
                kind = "duplicate" if bool(stored) == label.is_fraud else "contradicts"
                how = " (an implicit negative)" if implicit else ""
                reason = f"{kind}: the payment is labelled is_fraud={bool(stored)} already{how}"
        if reason is not None:
            reason = bounded(reason)
            rejected.append(Rejected(read, reason))
            record.append(_ledger_row(topic, read, REJECTED, reason, moment, confirmed))
            continue
        claims[label.transaction_id] = label
        weight = learn_weight(
            is_fraud=label.is_fraud, transaction_id=label.transaction_id, rate=sample_rate
        )
        if weight is None:
            sampled_out += 1
            why = f"{SAMPLED_OUT}: negative downsampling at rate {sample_rate:g} does not keep it"
            record.append(_ledger_row(topic, read, CLAIMED, why, moment, confirmed))
            continue
        kind = LabelKind.CORRECTION if correction else LabelKind.EXPLICIT
        corrections += correction
        learnable.append(_joined(read, row, None, kind, weight))
        why = f"{CORRECTION}: of an implicit negative" if correction else None
        record.append(_ledger_row(topic, read, CLAIMED, why, moment, confirmed))
    if waiting_max is not None and len(waiting) > waiting_max:
        cut = len(waiting) - waiting_max  # the oldest: read first
        given_up, waiting = waiting[:cut], waiting[cut:]
        reason = (
            f"{WAITING_FULL}: more than {waiting_max} labels of its card group waited for their "
            "payments (PAYSCORE_LABEL_WAITING_MAX); the oldest are given up"
        )
        positions = {read.position for read in given_up}
        record = [
            row for row in record if (row["kafka_partition"], row["kafka_offset"]) not in positions
        ]
        for read in given_up:
            rejected.append(Rejected(read, reason))
            record.append(_ledger_row(topic, read, REJECTED, reason, moment, confirmed))
    return (
        Claimed(learnable, waiting, rejected, replayed, sampled_out, corrections),
        record,
        claims,
    )


def _reason_class(reason: str | None) -> str:
    return (reason or "").partition(":")[0]


def _joined(
    read: ReadLabel,
    row: Any,
    learned_version: str | None,
    kind: LabelKind = LabelKind.EXPLICIT,
    weight: float = 1.0,
) -> LabelledPayment:
    return LabelledPayment(
        transaction_id=row.transaction_id,
        card_id=row.card_id,
        merchant_id=row.merchant_id,
        terminal_id=row.terminal_id,
        payment_time=posix(row.event_time),
        reported_at=read.label.reported_at.timestamp(),
        is_fraud=read.label.is_fraud,
        features=row.features,
        scored_by=row.model_version,
        label_partition=read.partition,
        label_offset=read.offset,
        learned_version=learned_version,
        kind=kind,
        weight=weight,
    )


def _ledger_row(
    topic: str,
    read: ReadLabel,
    status: str,
    reason: str | None,
    moment: datetime,
    confirmed: Collection[tuple[str, str, str, bool, datetime]],
) -> dict[str, Any]:
    label = read.label
    verified = confirmation(label) in confirmed
    return {
        "topic": topic,
        "kafka_partition": read.partition,
        "kafka_offset": read.offset,
        "transaction_id": label.transaction_id,
        "card_id": label.card_id,
        "is_fraud": label.is_fraud,
        "reported_at": utc_naive(label.reported_at),
        "status": status,
        "reason": reason,
        "learned_version": None,
        "first_seen_at": moment,
        "resolved_at": None if status == WAITING else moment,
        "analyst": label.analyst if verified else None,
        "unverified_analyst": None if verified else label.analyst,
    }


def posix(naive_utc: datetime) -> float:
    return (naive_utc - datetime(1970, 1, 1)).total_seconds()


def recheck_analysts(connection: Connection) -> int:
    """Move every ``fraud_labels.analyst`` that no ``review_verdicts`` row confirms to
    ``unverified_analyst``: labels stored before analysts were checked
    (``python -m storage.schema --create`` runs it; a second run changes nothing). Returns how
    many rows moved."""
    fl, rv = _FL, _RV
    return int(
        connection.exec_driver_sql(
            f"UPDATE {fl} SET unverified_analyst = analyst, analyst = NULL "
            "WHERE analyst IS NOT NULL AND NOT EXISTS ("
            f"SELECT 1 FROM {rv} WHERE {rv}.transaction_id = {fl}.transaction_id "
            f"AND {rv}.card_id = {fl}.card_id AND {rv}.analyst = {fl}.analyst "
            f"AND {rv}.is_fraud = {fl}.is_fraud AND {rv}.decided_at = {fl}.reported_at)"
        ).rowcount
    )


class StoredExample(msgspec.Struct, frozen=True):
    """A labelled payment as stored: when it happened, the features it was scored with, and
    its label."""

    event_time: datetime  # naive UTC, as stored
    features: dict[str, float]
    is_fraud: bool
    probability: float | None = None  # what the flow scored it (the champion of the day)


def labelled_since(connection: Connection, since: datetime) -> list[StoredExample]:
    """Every stored payment with a label and an event time at or after ``since``, oldest first.

    The rows a retrain learns from (:mod:`model_state.offline.retrain`): features as they were when
    the payment was scored, never recomputed.
    """
    sp = scored_payments
    rows = connection.execute(
        select(sp.c.event_time, sp.c.features, sp.c.label_is_fraud, sp.c.fraud_probability)
        .where(sp.c.label_is_fraud.is_not(None), sp.c.event_time >= utc_naive(since))
        .order_by(sp.c.event_time, sp.c.transaction_id)
    )
    return [
        StoredExample(r.event_time, r.features, bool(r.label_is_fraud), r.fraud_probability)
        for r in rows
    ]
