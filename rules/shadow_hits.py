"""How often each rule hit, over time, and how precise it was on labelled payments.

For the review queue's rules page (issue 21 item 6): a **shadow** rule records its hits on every
payment it would have fired on (``scored_payments.shadow_hits``, never deciding), an **active**
one the payments it fired on (``scored_payments.rules_fired``). Both are JSON arrays of rule ids
stored with the payment by the flow (:mod:`storage.rows`); rows stored before the flow applied
rules have NULL there and count for no rule.

:func:`hits_over_time` reads them in one query (``JSON_TABLE``, which MySQL 8 and MariaDB 10.6+
both have) over ``[since, until)`` of **event time**, in buckets of ``bucket_seconds`` counted
from the Unix epoch in UTC (86,400: calendar days in UTC), and gives one :class:`RuleHits` per
rule and bucket with at least one hit. :func:`totals` adds them up per rule over the range.

Columns of a :class:`RuleHits` (what the page shows):

- ``rule_id``: the rule;
- ``period_start``: the bucket's first instant (UTC, timezone-aware); for :func:`totals`, ``since``;
- ``hits``: payments the rule hit (fired on, or would have);
- ``labelled``: of those, the payments with a fraud label (``label_is_fraud`` not NULL);
- ``frauds``: of those, labelled fraud; ``legitimate``: labelled legitimate;
- ``precision``: ``frauds / labelled``, ``None`` while no hit is labelled.

The review account reads ``scored_payments`` whole (``storage/accounts.py``), so the review app
calls this with its own connection. ``tests/test_rules_shadow_hits.py`` checks every figure
against a count in Python over the same rows, on the real server.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec
from sqlalchemy import Connection, text

Kind = Literal["shadow", "active"]
COLUMN: Final = {"shadow": "shadow_hits", "active": "rules_fired"}
MAX_BUCKETS: Final = 10_000  # a bounded answer: at most this many buckets a rule
EPOCH: Final = datetime(1970, 1, 1)


class RuleHits(msgspec.Struct, frozen=True):
    """One rule's hits in one period (see the module)."""

    rule_id: str
    period_start: datetime
    hits: int
    labelled: int
    frauds: int

    @property
    def legitimate(self) -> int:
        return self.labelled - self.frauds

    @property
    def precision(self) -> float | None:
        return self.frauds / self.labelled if self.labelled else None


def _naive_utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (UTC is stored); got {moment!r}")
    return moment.astimezone(UTC).replace(tzinfo=None)


def hits_over_time(
    connection: Connection,
    *,
    since: datetime,
    until: datetime,
    bucket_seconds: int = 86_400,
    kind: Kind = "shadow",
    rule_ids: Sequence[str] | None = None,
) -> list[RuleHits]:
    """Each rule's hits per bucket of event time in ``[since, until)``, by rule id then time
    (see the module). ``rule_ids``: only these rules (all when ``None``)."""
    if kind not in COLUMN:
        raise ValueError(f"kind is 'shadow' or 'active'; got {str(kind)[:20]!r}")
    start, end = _naive_utc(since, "since"), _naive_utc(until, "until")
    if not start < end:
        raise ValueError(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    if not isinstance(bucket_seconds, int) or bucket_seconds <= 0:
        raise ValueError(f"bucket_seconds must be a positive integer; got {bucket_seconds!r}")
    if (end - start).total_seconds() / bucket_seconds > MAX_BUCKETS:
        raise ValueError(
            f"{since.isoformat()} to {until.isoformat()} in buckets of {bucket_seconds} s is more "
            f"than {MAX_BUCKETS:,} buckets: choose larger buckets or a shorter range"
        )
    if rule_ids is not None and not rule_ids:
        return []
    column = COLUMN[kind]
    only = ""
    params: dict[str, object] = {"since": start, "until": end, "bucket": bucket_seconds}
    if rule_ids is not None:
        names = sorted(set(rule_ids))
        only = (
            " AND CAST(hit.rule_id AS BINARY) IN ("
            + ", ".join(f":rule_{i}" for i in range(len(names)))
            + ")"
        )
        params.update({f"rule_{i}": name.encode() for i, name in enumerate(names)})
    # The rule id is grouped as bytes (ids compare byte for byte, storage.tables); the bucket is
    # whole seconds since the epoch, free of the session's time zone.
    sql = text(
        "SELECT CAST(hit.rule_id AS BINARY) AS rule_id, "
        "FLOOR(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', sp.event_time) / :bucket) AS bucket, "
        "COUNT(*) AS hits, "
        "SUM(sp.label_is_fraud IS NOT NULL) AS labelled, "
        "SUM(sp.label_is_fraud = 1) AS frauds "
        "FROM scored_payments AS sp, "
        f"JSON_TABLE(sp.{column}, '$[*]' COLUMNS (rule_id VARCHAR(64) PATH '$')) AS hit "
        f"WHERE sp.event_time >= :since AND sp.event_time < :until AND sp.{column} IS NOT NULL"
        f"{only} "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    out = []
    for rule_id, bucket, hits, labelled, frauds in connection.execute(sql, params):
        out.append(
            RuleHits(
                rule_id=bytes(rule_id).decode(),
                period_start=(EPOCH + timedelta(seconds=int(bucket) * bucket_seconds)).replace(
                    tzinfo=UTC
                ),
                hits=int(hits),
                labelled=int(labelled or 0),
                frauds=int(frauds or 0),
            )
        )
    return out


def totals(rows: Sequence[RuleHits], *, since: datetime) -> list[RuleHits]:
    """Per rule, its hits of ``rows`` (:func:`hits_over_time`) added up over the whole range,
    ``period_start`` = ``since``; by rule id."""
    by_rule: dict[str, tuple[int, int, int]] = {}
    for row in rows:
        h, lab, f = by_rule.get(row.rule_id, (0, 0, 0))
        by_rule[row.rule_id] = (h + row.hits, lab + row.labelled, f + row.frauds)
    start = since.astimezone(UTC)
    return [RuleHits(rule, start, h, lab, f) for rule, (h, lab, f) in sorted(by_rule.items())]
