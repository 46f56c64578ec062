"""What the HTML report shows, read from MySQL into plain values: the queries, and nothing about
how it looks (:mod:`storage.report_html` renders it).

The append-to-commit latency comes from ``scored_payments.appended_at`` (the Kafka record time)
and ``stored_at`` (when MySQL wrote the row, in its batch's transaction); a database made before
those columns, or rows without a Kafka time, show it as not recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Integer, cast, func, inspect, select, text

from storage.rows import reasons_on_demand
from storage.tables import dead_letters, fraud_labels, model_versions, scored_payments

PROBABILITY_BINS = 20  # fraud probability in bins of 0.05
HOURS_SHOWN = 168  # the decision rates of the last week with data
TOP_SCORES = 10
APPENDED_AT, COMMITTED_AT = "appended_at", "stored_at"
# The buckets of payscore_append_to_commit_seconds, so that the report and Grafana agree.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True)
class VersionDecision:
    model_version: str
    decision: str
    payments: int
    mean_probability: float


@dataclass(frozen=True)
class HourDecision:
    hour: str  # "YYYY-MM-DD HH:00", UTC, of the payments' event time
    decision: str
    payments: int


@dataclass(frozen=True)
class TopScore:
    transaction_id: str
    card_id: str
    fraud_probability: float
    decision: str
    reason_codes: list[str]

    @property
    def reasons_on_demand(self) -> bool:
        """An approval stored without reason codes: ``python -m review.explain`` computes them."""
        return reasons_on_demand(self.decision, self.reason_codes)


@dataclass(frozen=True)
class LabelOutcome:
    status: str
    reason: str  # the reason's first word (``not_found``, ``duplicate``...), "" when none
    labels: int


@dataclass(frozen=True)
class VersionRow:
    version: str
    origin: str
    parent_version: str | None
    created_at: datetime
    labels_learned: int
    payments_scored: int


@dataclass(frozen=True)
class ErrorClass:
    topic: str
    error_class: str
    letters: int
    example: str


@dataclass(frozen=True)
class Latency:
    buckets: list[tuple[float, int]]  # (upper bound in seconds, payments), +inf last
    payments: int
    p50: float  # upper bound of the bucket holding the median
    p99: float


@dataclass(frozen=True)
class ReportData:
    database: str
    generated_at: datetime
    scored: int
    by_version_decision: list[VersionDecision]
    hourly: list[HourDecision]
    probability_bins: list[int]  # PROBABILITY_BINS counts, bin i holds [i/N, (i+1)/N)
    top_scores: list[TopScore]
    labelled: int  # payments with a learned label
    labelled_fraud: int
    label_outcomes: list[LabelOutcome]
    versions: list[VersionRow]
    dead_letters: int
    dead_letter_classes: list[ErrorClass]
    latency: Latency | None  # None: not recorded (no columns, or no row with a Kafka time)

    @property
    def label_messages(self) -> int:
        return sum(o.labels for o in self.label_outcomes)

    def decisions(self) -> dict[str, int]:
        """Payments by decision, all versions together."""
        totals: dict[str, int] = {}
        for row in self.by_version_decision:
            totals[row.decision] = totals.get(row.decision, 0) + row.payments
        return totals


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def error_class(error: str) -> str:
    """A dead letter's error without its particulars (quoted values, numbers, what follows a
    colon), so that letters of one kind group together.

    >>> error_class("Expected `int`, got `str` - at `$.amount_minor`")
    'Expected …, got … - at …'
    >>> error_class("transaction id 't-9' reused: stored for card 'c-1', 1250 EUR")
    'transaction id … reused'
    """
    first = error.strip().splitlines()[0] if error.strip() else ""
    shape = _NUMBER.sub("N", _QUOTED.sub("…", first))
    head = shape.split(": ", 1)[0]
    return head[:120] or "(empty)"


def read_report(engine: Engine) -> ReportData:
    with engine.connect() as c:
        return _read(c, engine.url.database or "")


def _read(c: Connection, database: str) -> ReportData:
    sp, fl, mv, dl = scored_payments, fraud_labels, model_versions, dead_letters
    scored = c.execute(select(func.count()).select_from(sp)).scalar_one()
    by_version_decision = [
        VersionDecision(v, d, n, float(mean or 0.0))
        for v, d, n, mean in c.execute(
            select(
                sp.c.model_version, sp.c.decision, func.count(), func.avg(sp.c.fraud_probability)
            )
            .group_by(sp.c.model_version, sp.c.decision)
            .order_by(sp.c.model_version, sp.c.decision)
        )
    ]
    hour = func.date_format(sp.c.event_time, "%Y-%m-%d %H:00")
    hourly = [
        HourDecision(h, d, n)
        for h, d, n in c.execute(
            select(hour, sp.c.decision, func.count()).group_by(hour, sp.c.decision).order_by(hour)
        )
    ]
    shown = sorted({h.hour for h in hourly})[-HOURS_SHOWN:]
    hourly = [h for h in hourly if h.hour >= (shown[0] if shown else "")]
    bin_ = func.least(func.floor(sp.c.fraud_probability * PROBABILITY_BINS), PROBABILITY_BINS - 1)
    bins = [0] * PROBABILITY_BINS
    for b, n in c.execute(select(bin_, func.count()).group_by(bin_)):
        bins[max(0, int(b))] += n
    top_scores = [
        TopScore(t, card, p, d, list(reasons))
        for t, card, p, d, reasons in c.execute(
            select(
                sp.c.transaction_id,
                sp.c.card_id,
                sp.c.fraud_probability,
                sp.c.decision,
                sp.c.reason_codes,
            )
            .order_by(sp.c.fraud_probability.desc(), sp.c.transaction_id)
            .limit(TOP_SCORES)
        )
    ]
    labelled, labelled_fraud = c.execute(
        select(func.count(), func.sum(cast(sp.c.label_is_fraud, Integer))).where(
            sp.c.label_is_fraud.is_not(None)
        )
    ).one()
    reason = func.substring_index(fl.c.reason, ":", 1)
    label_outcomes = [
        LabelOutcome(s, r or "", n)
        for s, r, n in c.execute(
            select(fl.c.status, reason, func.count())
            .group_by(fl.c.status, reason)
            .order_by(fl.c.status, reason)
        )
    ]
    per_version = (
        select(sp.c.model_version, func.count().label("n")).group_by(sp.c.model_version).subquery()
    )
    versions = [
        VersionRow(v, o, p, created, learned, n or 0)
        for v, o, p, created, learned, n in c.execute(
            select(
                mv.c.version,
                mv.c.origin,
                mv.c.parent_version,
                mv.c.created_at,
                mv.c.labels_learned,
                per_version.c.n,
            )
            .outerjoin(per_version, per_version.c.model_version == mv.c.version)
            .order_by(mv.c.lineage, mv.c.sequence)
        )
    ]
    letters = c.execute(select(func.count()).select_from(dl)).scalar_one()
    classes: dict[tuple[str, str], list[Any]] = {}
    for topic, error, n in c.execute(
        select(dl.c.topic, func.left(dl.c.error, 300), func.count()).group_by(
            dl.c.topic, func.left(dl.c.error, 300)
        )
    ):
        entry = classes.setdefault((topic, error_class(error)), [0, error])
        entry[0] += n
    dead_letter_classes = sorted(
        (ErrorClass(t, k, n, example) for (t, k), (n, example) in classes.items()),
        key=lambda e: (-e.letters, e.topic, e.error_class),
    )
    return ReportData(
        database=database,
        generated_at=datetime.now(UTC),
        scored=scored,
        by_version_decision=by_version_decision,
        hourly=hourly,
        probability_bins=bins,
        top_scores=top_scores,
        labelled=labelled,
        labelled_fraud=int(labelled_fraud or 0),
        label_outcomes=label_outcomes,
        versions=versions,
        dead_letters=letters,
        dead_letter_classes=dead_letter_classes,
        latency=_latency(c),
    )


def _latency(c: Connection) -> Latency | None:
    columns = {col["name"] for col in inspect(c).get_columns(scored_payments.name)}
    if not {APPENDED_AT, COMMITTED_AT} <= columns:
        return None
    seconds = f"TIMESTAMPDIFF(MICROSECOND, {APPENDED_AT}, {COMMITTED_AT}) / 1e6"
    cases = " ".join(f"WHEN {seconds} <= {b} THEN {i}" for i, b in enumerate(LATENCY_BUCKETS))
    rows = c.execute(
        text(
            f"SELECT CASE {cases} ELSE {len(LATENCY_BUCKETS)} END AS bucket, COUNT(*) "
            f"FROM {scored_payments.name} WHERE {APPENDED_AT} IS NOT NULL "
            f"AND {COMMITTED_AT} IS NOT NULL GROUP BY bucket"
        )
    ).all()
    if not rows:
        return None
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    for bucket, n in rows:
        counts[int(bucket)] = n
    bounds = [*LATENCY_BUCKETS, float("inf")]
    total = sum(counts)
    return Latency(
        buckets=list(zip(bounds, counts, strict=True)),
        payments=total,
        p50=_quantile_bound(bounds, counts, 0.5),
        p99=_quantile_bound(bounds, counts, 0.99),
    )


def _quantile_bound(bounds: list[float], counts: list[int], q: float) -> float:
    """The upper bound of the bucket that holds quantile ``q`` (nan without payments)."""
    total = sum(counts)
    if total == 0:
        return float("nan")
    seen = 0
    for bound, n in zip(bounds, counts, strict=True):
        seen += n
        if seen >= q * total:
            return bound
    return bounds[-1]
