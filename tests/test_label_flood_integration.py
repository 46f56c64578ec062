"""A flood of labels for transaction ids no payment has, through the running flow on the real
broker and MySQL (``ops/run_flow.sh``, two processes of two workers).

Labels for unknown ids wait for their payments; before ``PAYSCORE_LABEL_WAITING_MAX`` they all
waited their whole ``PAYSCORE_LABEL_WAIT_SECONDS`` in the label join's state, snapshots and claim
statements, and each rejection was a WARNING line of its own. Now past the bound the oldest are
rejected at once as ``waiting_full``: the genuine labels among the flood are claimed, every
flooded label has its rejected row, the run ends, and the WARNING lines are a few, not one a
label.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from features.contract import FraudLabel
from storage.tables import fraud_labels
from test_data.generator import simulate
from test_data.spec import FRAUDS_ONLY, SimulationSpec
from tests.flowrun import flow_env, produce, run_flow

pytestmark = pytest.mark.integration

FLOOD = 600
WAITING_MAX = 4  # per card group, of 16: at most 64 wait at once


def test_a_flood_of_labels_for_unknown_ids_is_rejected_bounded_and_genuine_ones_are_claimed(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    spec = SimulationSpec(
        seed=7, days=3, cards=120, merchants=30, fraud_rate=0.05, label_delays=FRAUDS_ONLY
    )
    sim = simulate(spec)
    payments = list(sim.payments())
    genuine = list(sim.labels())[:12]
    assert len(genuine) == 12
    env = flow_env(
        topics,
        mysql_url,
        models,
        label_waiting_max=str(WAITING_MAX),
        label_wait_seconds="3",
        label_retry_seconds="1",
        legit_sample_rate="1",
    )
    produce(topics, payments)
    run_flow(env)  # the payments are stored: the genuine labels find theirs at once

    reported = genuine[0].reported_at
    flood = [
        FraudLabel(
            transaction_id=f"forged-{i:05d}",
            card_id=f"card-{i % 97}",
            is_fraud=True,
            reported_at=reported + timedelta(seconds=i),
        )
        for i in range(FLOOD)
    ]
    # The genuine labels among the flood, the last after all of it.
    step = FLOOD // len(genuine)
    mixed: list[FraudLabel] = []
    for i, g in enumerate(genuine):
        mixed += [*flood[i * step : (i + 1) * step], g]
    produce(topics, mixed)
    logs: list[str] = []
    run_flow(env, logs=logs)

    fl = fraud_labels.c
    with engine.connect() as c:
        rows = c.execute(select(fl.transaction_id, fl.status, fl.reason)).all()
    by_id = {r.transaction_id: r for r in rows}
    assert len(rows) == len(by_id) == FLOOD + len(genuine)
    for g in genuine:
        assert by_id[g.transaction_id].status == "claimed", by_id[g.transaction_id]
    forged = [by_id[f.transaction_id] for f in flood]
    assert all(r.status == "rejected" for r in forged)
    kinds = [r.reason.split(":")[0] for r in forged]
    assert set(kinds) <= {"waiting_full", "not_found"}, set(kinds)
    # At most WAITING_MAX of a group were left to wait their 3 s and be rejected as not_found.
    assert kinds.count("not_found") <= 16 * WAITING_MAX, kinds.count("not_found")
    rejected_lines = [line for line in logs if "rejected" in line and "WARNING" in line]
    # A line per reason and process (two) a minute, and a count line: a few, not one a label.
    assert 1 <= len(rejected_lines) <= 12, rejected_lines[:20]
