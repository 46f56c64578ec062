"""Shadow scoring end to end: a candidate shadows the champion in every flow process, labels
arrive, the comparison shows both, and promotion switches every process to it.

The flow runs as in production (``PAYSCORE_TAIL=true``), two processes of one worker each, over
four partitions. The candidate is a model trained on another history (another seed) and kept in
``model_candidates``, as ``python -m model_state.retrain --candidate`` keeps one.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Engine, select

from model_state import artifact
from model_state.offline.train import train
from storage import shadow
from storage.tables import model_actions, scored_payments
from storage.versions import version_key
from test_data.generator import simulate
from test_data.spec import SimulationSpec
from tests.flowrun import ROOT, flow_env, key_for_tests, logged, produce
from tests.reviewkit import add_users, app_for, signed_in
from tests.test_learning_integration import PROCESSES, count, start_flow, stop, wait_for

pytestmark = pytest.mark.integration


def every_process(log: Path, line: str) -> bool:
    """Every process of the flow has logged ``line``: something each does once (takes up a
    version, starts or stops shadowing one); the callers wait while nothing newer can come."""
    return len(logged(log, re.escape(line))) >= PROCESSES


def shadow_command(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "model_state.shadow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_candidate_shadows_then_is_promoted_in_every_process(
    topics: dict[str, str],
    mysql_url: str,
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    models_engine: Engine,
    models: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    champion = artifact.list_versions(models)[-1]
    # The candidate: trained on another history, named after the champion's lineage.
    elsewhere = tmp_path / "candidate"
    elsewhere.mkdir()
    (elsewhere / champion).symlink_to(model_dir / champion)
    spec = SimulationSpec(seed=44, days=10, cards=500, merchants=100)
    candidate = train(spec, elsewhere, key=key_for_tests(), validation_days=2, epochs=1)
    with models_engine.begin() as c:  # as python -m model_state.retrain --candidate does
        shadow.record_candidate(
            c, msgspec.to_builtins(candidate.metadata), candidate.payload, "test candidate"
        )

    sim = simulate(SimulationSpec(seed=23, days=6, cards=300, merchants=60))
    payments = list(sim.payments())
    day = 86_400
    t0 = payments[0].event_timestamp
    parts = [
        [p for p in payments if lo <= p.event_timestamp - t0 < hi]
        for lo, hi in ((0, 2 * day), (2 * day, 4 * day), (4 * day, 99 * day))
    ]
    shadowed_ids = {p.transaction_id for p in parts[1]}
    labels = [label for label in sim.labels() if label.transaction_id in shadowed_ids]
    assert all(parts) and len(labels) > 50

    env = flow_env(
        topics,
        mysql_url,
        models,
        tail="true",
        model_refresh_seconds="1",
        label_retry_seconds="1",
        publish_seconds="2",
    )
    log = tmp_path / "flow.log"
    flow = start_flow(env, log)
    try:
        produce(topics, parts[0])
        wait_for("the first days to be scored", lambda: count(engine) == len(parts[0]))
        assert count(engine, scored_payments.c.shadow_version.is_not(None)) == 0

        said = shadow_command(env, "start", candidate.version, "--by", "tester")
        assert candidate.version in said
        wait_for(
            "every process to shadow with the candidate",
            lambda: every_process(log, f"shadow scoring with {candidate.version} beside"),
        )
        produce(topics, parts[1])
        done = len(parts[0]) + len(parts[1])
        wait_for("the shadowed days to be scored", lambda: count(engine) == done)
        ids = [p.transaction_id for p in parts[1]]
        with engine.connect() as c:
            shadowed = c.execute(
                select(
                    scored_payments.c.kafka_partition,
                    scored_payments.c.model_version,
                    scored_payments.c.shadow_version,
                    scored_payments.c.shadow_probability,
                    scored_payments.c.fraud_probability,
                ).where(scored_payments.c.transaction_id.in_(ids))
            ).all()
        assert {r.shadow_version for r in shadowed} == {candidate.version}
        assert all(r.shadow_probability is not None for r in shadowed)
        assert {r.kafka_partition for r in shadowed} == {0, 1, 2, 3}  # both processes
        assert all(not r.model_version.startswith(candidate.version) for r in shadowed)
        assert any(r.shadow_probability != r.fraud_probability for r in shadowed)

        produce(topics, labels)
        wait_for(
            "the shadowed payments' labels",
            lambda: count(engine, scored_payments.c.label_is_fraud.is_not(None)) == len(labels),
        )
        comparison = shadow_command(env, "compare")
        print(comparison)
        assert f"challenger {candidate.version} shadowing since" in comparison
        assert f"{len(shadowed)} payments scored by both, {len(labels)} labelled" in comparison
        assert "average precision" in comparison and "decline rate" in comparison
        # The same comparison, as a page of the review queue, for a viewer.
        add_users(admin_engine)
        page = signed_in(app_for(review_engine, topics["labels_topic"], models), "victor")
        page = page.get("/shadow")
        assert page.status_code == 200, page.text
        assert f'<strong id="challenger">{candidate.version}</strong>' in page.text
        assert f'<span id="labelled">{len(labels)}</span>' in page.text

        promoted = shadow_command(env, "promote", candidate.version, "--by", "tester")
        with engine.connect() as c:
            name = c.execute(
                select(model_actions.c.promoted_as).where(model_actions.c.action == "promote")
            ).scalar_one()
            assert shadow.challenger(c) is None  # promotion ends the shadow
        assert f"promoted as {name}" in promoted
        assert version_key(name)[0] > version_key(candidate.version)[0]
        assert (models / name).is_dir()
        # Each process takes up the promoted version, and drops the challenger in the same look.
        wait_for(
            f"every process to score with {name}",
            lambda: every_process(log, f"scoring with model version {name} (was "),
        )
        wait_for(
            "every process to stop shadowing",
            lambda: every_process(log, f"shadow scoring with {candidate.version} stopped"),
        )
        produce(topics, parts[2])
        wait_for("the last days to be scored", lambda: count(engine) == len(payments))
        with engine.connect() as c:
            last = c.execute(
                select(
                    scored_payments.c.kafka_partition,
                    scored_payments.c.model_version,
                    scored_payments.c.shadow_version,
                ).where(scored_payments.c.transaction_id.in_([p.transaction_id for p in parts[2]]))
            ).all()
        assert {r.kafka_partition for r in last} == {0, 1, 2, 3}
        assert {r.model_version.partition(".")[0] for r in last} == {name}, {
            r.model_version for r in last
        }
        assert {r.shadow_version for r in last} == {None}
    finally:
        stop(flow)
    assert os.path.exists(models / name)
