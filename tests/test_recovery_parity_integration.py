"""Recovery and offline/online parity, on the real broker and server.

A stream is scored in two runs of the flow with Bytewax recovery: the second run resumes from the
first one's snapshot (Kafka offsets and every key's feature history). Every feature the flow
stored must then equal what the offline replay computes for the whole stream, as if nothing had
been interrupted. One partition and one worker, so that every key sees its events in the
stream's order (see storage/parity.py); a second test checks card features with 4 partitions and
2 processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir
from sqlalchemy import Engine

from features.catalog import FEATURE_NAMES
from storage.parity import check
from test_data.generator import simulate
from test_data.spec import SimulationSpec
from tests.flowrun import flow_env, produce, run_flow

pytestmark = pytest.mark.integration


def test_a_run_resumed_from_its_snapshot_stores_the_offline_features(
    one_partition_topics: dict[str, str],
    mysql_url: str,
    engine: Engine,
    models: Path,
    tmp_path: Path,
) -> None:
    payments = list(simulate(SimulationSpec(seed=31, days=4, cards=150, merchants=30)).payments())
    half = len(payments) // 2
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    env = flow_env(one_partition_topics, mysql_url, models, kafka_batch_size="1")
    resume = ["-r", str(recovery), "-s", "1", "-b", "10"]

    produce(one_partition_topics, payments[:half])
    run_flow(env, 1, 1, resume)
    produce(one_partition_topics, payments[half:])
    run_flow(env, 1, 1, resume)

    report = check(engine, payments)
    assert report.payments == len(payments), report.summary()
    assert report.values == len(payments) * len(FEATURE_NAMES)
    assert report.ok, report.summary()


def test_card_features_match_the_offline_replay_with_partitions_and_processes(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    sim = simulate(SimulationSpec(seed=32, days=3, cards=200, merchants=40))
    payments = list(sim.payments())
    produce(topics, payments)
    run_flow(flow_env(topics, mysql_url, models), 2, 1)
    report = check(engine, payments, prefix="card_")
    assert report.payments == len(payments)
    assert report.ok, report.summary()
