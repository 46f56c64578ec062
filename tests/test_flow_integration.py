"""The scoring flow end to end on the real Kafka broker and MySQL server.

The sample messages of ``test_data/samples`` are produced into fresh topics; the flow runs as
two processes of two workers (``ops/run_flow.sh``) to the end of the topics; then every valid
payment must have exactly one scored row and every malformed message exactly one dead letter, and
a second run over the same input must change no row.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Engine, select

from features.catalog import FEATURE_NAMES
from storage.tables import dead_letters, model_versions, scored_payments
from test_data.samples import load_samples
from tests.flowrun import flow_env, produce, run_flow

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "test_data" / "samples"

pytestmark = pytest.mark.integration


def table(engine: Engine, which: object, order: str) -> list[tuple]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(select(which).order_by(order))]  # type: ignore[arg-type]


def test_samples_are_scored_once_and_bad_messages_dead_lettered_once(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    produce(
        topics,
        [m for name in ("payments.jsonl", "labels.jsonl") for m in load_samples(SAMPLES / name)],
    )
    env = flow_env(topics, mysql_url, models)
    run_flow(env)

    samples = load_samples(SAMPLES / "payments.jsonl")
    valid_ids = {
        msgspec.json.decode(m.value)["transaction_id"] for m in samples if m.kind == "valid"
    }
    malformed = [m for m in samples if m.kind == "malformed"]
    assert malformed, "the samples must include malformed messages"

    scored = table(engine, scored_payments, "transaction_id")
    by_id = {r[0]: r for r in scored}
    assert len(scored) == len(by_id) == len(valid_ids)
    assert set(by_id) == valid_ids
    with engine.connect() as c:
        rows = c.execute(select(scored_payments)).mappings().all()
    for row in rows:
        assert 0.0 <= row["fraud_probability"] <= 1.0
        assert row["decision"] in {"approve", "review", "decline"}
        assert list(row["features"]) == list(FEATURE_NAMES)
        assert len(row["reason_codes"]) <= 3
        assert set(row["reason_codes"]) <= set(FEATURE_NAMES)
        if row["decision"] == "approve":  # an approval's are computed on demand
            assert row["reason_codes"] == []

    letters = table(engine, dead_letters, "kafka_offset")
    assert len(letters) == len(malformed)
    with engine.connect() as c:
        stored = c.execute(select(dead_letters)).mappings().all()
    assert {bytes(r["raw_value"]) if r["raw_value"] is not None else None for r in stored} == {
        m.value for m in malformed
    }
    assert all(r["topic"] == topics["payments_topic"] and r["error"] for r in stored)
    assert len({(r["kafka_partition"], r["kafka_offset"]) for r in stored}) == len(stored)

    # The same input a second time: a fresh run (no recovery) re-reads both topics from the start.
    before = (
        table(engine, scored_payments, "transaction_id"),
        table(engine, dead_letters, "kafka_offset"),
        table(engine, model_versions, "version"),
    )
    run_flow(env)
    after = (
        table(engine, scored_payments, "transaction_id"),
        table(engine, dead_letters, "kafka_offset"),
        table(engine, model_versions, "version"),
    )
    assert after == before
