"""Hits per rule over time and precision on labelled payments (rules.shadow_hits), on the real
server: every figure against a count in Python over the same rows."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from rules.decisions import Outcome
from rules.shadow_hits import RuleHits, hits_over_time, totals
from storage.rows import scored_payment_row
from storage.tables import scored_payments
from tests.builders import payment

START = datetime(2026, 11, 2, tzinfo=UTC)
RULES = ("burst-1h", "Burst-1h", "night.atm", "bad:bin", "vip")  # ids compare byte for byte


def _rows(count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        at = START + timedelta(seconds=rng.randrange(0, 5 * 86_400))
        shadow = tuple(rng.sample(RULES, rng.choice([0, 0, 1, 1, 2])))
        fired = tuple(rng.sample(RULES, rng.choice([0, 0, 0, 1])))
        row = scored_payment_row(
            payment(transaction_id=f"t{i}", event_time=at),
            partition=0, offset=i, features={}, probability=0.1, decision="approve",
            reasons=None, model_version="v00001", scored_at=at,
            outcome=Outcome(
                "decline" if fired else "approve", fired[0] if fired else "model", fired, shadow
            ),
            ruleset_version=3,
        )  # fmt: skip
        row["label_is_fraud"] = rng.choice([None, None, False, True])
        if i % 17 == 0:  # stored before the flow applied rules
            row["shadow_hits"] = row["rules_fired"] = None
        rows.append(row)
    return rows


def _expected(rows, column, since, until, bucket):
    counts: dict[tuple[str, datetime], list[int]] = {}
    for row in rows:
        at = row["event_time"].replace(tzinfo=UTC)
        if not since <= at < until or row[column] is None:
            continue
        start = datetime.fromtimestamp(int(at.timestamp()) // bucket * bucket, UTC)
        for rule in row[column]:
            c = counts.setdefault((rule, start), [0, 0, 0])
            c[0] += 1
            c[1] += row["label_is_fraud"] is not None
            c[2] += row["label_is_fraud"] is True
    return [
        RuleHits(rule, start, *c)
        for (rule, start), c in sorted(counts.items(), key=lambda kv: (kv[0][0].encode(), kv[0][1]))
    ]


@pytest.mark.integration
def test_hits_per_rule_over_time_equal_a_count_in_python(engine, review_engine):
    rows = _rows(600, seed=3)
    with engine.begin() as connection:
        connection.execute(insert(scored_payments), rows)
    since, until = START + timedelta(hours=7), START + timedelta(days=4, hours=2)
    with review_engine.connect() as connection:  # the review account reads them
        for kind, column in (("shadow", "shadow_hits"), ("active", "rules_fired")):
            for bucket in (86_400, 3_600 * 6):
                got = hits_over_time(
                    connection, since=since, until=until, bucket_seconds=bucket, kind=kind
                )
                assert got == _expected(rows, column, since, until, bucket)
                assert got, "the sample has hits"
        day = hits_over_time(connection, since=since, until=until)
        only = hits_over_time(connection, since=since, until=until, rule_ids=["Burst-1h", "x"])
    assert only == [r for r in day if r.rule_id == "Burst-1h"]
    assert {r.rule_id for r in day} == set(RULES)  # burst-1h and Burst-1h apart
    summed = totals(day, since=since)
    want = Counter()
    for r in day:
        want[r.rule_id, "hits"] += r.hits
        want[r.rule_id, "frauds"] += r.frauds
        want[r.rule_id, "labelled"] += r.labelled
    for r in summed:
        assert (r.hits, r.frauds, r.labelled) == (
            want[r.rule_id, "hits"],
            want[r.rule_id, "frauds"],
            want[r.rule_id, "labelled"],
        )
        assert r.precision == (r.frauds / r.labelled if r.labelled else None)
        assert r.legitimate == r.labelled - r.frauds
        assert r.period_start == since


def test_bad_ranges_are_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="timezone-aware"):
        hits_over_time(None, since=datetime(2026, 1, 1), until=START)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be before"):
        hits_over_time(None, since=START, until=START)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buckets"):
        hits_over_time(None, since=START, until=START + timedelta(days=30), bucket_seconds=60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'shadow' or 'active'"):
        hits_over_time(None, since=START, until=START + timedelta(1), kind="x")  # type: ignore[arg-type]
    assert hits_over_time(None, since=START, until=START + timedelta(1), rule_ids=[]) == []  # type: ignore[arg-type]
