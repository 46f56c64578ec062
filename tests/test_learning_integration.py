"""Online learning end to end: labels produced to Kafka change the model that scores later payments.

The flow runs as it does in production (``PAYSCORE_TAIL=true``), as two processes of one worker
each. Payments of the first days are scored by the pre-trained version; then their labels are
produced; the learner publishes a new version, every worker picks it up, and every payment
produced after that is scored by a newer version. Versions are recorded in ``model_versions`` and
checkpointed on disk.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from model_state import artifact
from storage.tables import model_versions, scored_payments
from test_data.generator import simulate
from test_data.ports import free_ports
from test_data.spec import SimulationSpec
from tests.flowrun import ROOT, flow_env, key_for_tests, logged, produce, stop

pytestmark = pytest.mark.integration

PROCESSES = 2


def wait_for(what: str, check: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def count(engine: Engine, where: object = None) -> int:
    query = select(func.count()).select_from(scored_payments)
    if where is not None:
        query = query.where(where)  # type: ignore[arg-type]
    with engine.connect() as c:
        return int(c.execute(query).scalar_one())


def models_from(model_dir: Path, tmp_path: Path) -> Path:
    """A model folder of the test's own, starting from the session's pre-trained versions."""
    models = tmp_path / "models"
    models.mkdir()
    for version in artifact.list_versions(model_dir):
        (models / version).symlink_to(model_dir / version)
    return models


def start_flow(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The flow as two processes of one worker each, in its own process group, its output in
    ``log`` (a pipe nobody reads would stop the flow once full)."""
    return subprocess.Popen(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), str(PROCESSES), "1"],
        env=env | {"FLOW_BASE_PORT": str(free_ports(PROCESSES))},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def scoring_with(log: Path, version: str) -> bool:
    """Every process of the flow scores with ``version``: each has logged taking it up. A
    process's registry takes up a version once, and only newer ones; the callers wait while no
    version newer than ``version`` can be published, so no process passes it by."""
    adopted = logged(log, rf"scoring with model version {re.escape(version)} \(was ")
    return len(adopted) >= PROCESSES


def learned_in_a_recorded_version(engine: Engine) -> int | None:
    """The labels the newest recorded version learned; None while no version is recorded (the
    learner records the version it started from with its first batch of labels, after their
    claims: a wait for the claims can end before it)."""
    mv = model_versions
    with engine.connect() as c:
        return c.execute(
            select(mv.c.labels_learned).order_by(mv.c.lineage.desc(), mv.c.sequence.desc()).limit(1)
        ).scalar()


def test_labels_from_kafka_change_the_version_that_scores_later_payments(
    topics: dict[str, str], mysql_url: str, engine: Engine, model_dir: Path, tmp_path: Path
) -> None:
    models = models_from(model_dir, tmp_path)
    start = artifact.list_versions(models)[-1]

    sim = simulate(SimulationSpec(seed=21, days=6, cards=300, merchants=60))
    payments = list(sim.payments())
    cut = payments[0].event_timestamp + 3 * 86_400
    first = [p for p in payments if p.event_timestamp < cut]
    later = [p for p in payments if p.event_timestamp >= cut]
    first_ids = {p.transaction_id for p in first}
    labels = [label for label in sim.labels() if label.transaction_id in first_ids]
    assert first and later and len(labels) > 100

    env = flow_env(
        topics,
        mysql_url,
        models,
        tail="true",
        publish_every_labels="100",
        publish_seconds="2",
        model_refresh_seconds="1",
        label_retry_seconds="1",
        # every label learned, so that each one moves the version (the default learns a tenth
        # of the legitimate ones: test_implicit_integration and the chaos drill sample)
        legit_sample_rate="1",
    )
    log = tmp_path / "flow.log"
    flow = start_flow(env, log)
    try:
        produce(topics, first)
        wait_for("the first days to be scored", lambda: count(engine) == len(first))
        assert count(engine, scored_payments.c.model_version != start) == 0

        produce(topics, labels)

        def online_versions() -> list[str]:
            with engine.connect() as c:
                rows = c.execute(
                    select(model_versions.c.version).where(model_versions.c.origin == "online")
                )
                return sorted(r[0] for r in rows)

        wait_for("the learner to publish a version", lambda: len(online_versions()) > 0)
        wait_for(
            "every label to be claimed",
            lambda: count(engine, scored_payments.c.label_is_fraud.is_not(None)) == len(labels),
        )

        # The last version comes up to PAYSCORE_PUBLISH_SECONDS after the last label is learned.
        wait_for(
            "every label to be learned in a recorded version",
            lambda: learned_in_a_recorded_version(engine) == len(labels),
        )
        published = online_versions()[-1]
        # No label is left to learn: nothing newer comes until the later days are produced.
        wait_for(f"every process to score with {published}", lambda: scoring_with(log, published))

        produce(topics, later)
        wait_for("the later days to be scored", lambda: count(engine) == len(payments))
        with engine.connect() as c:
            later_versions = (
                c.execute(
                    select(scored_payments.c.model_version)
                    .where(scored_payments.c.transaction_id.in_([p.transaction_id for p in later]))
                    .distinct()
                )
                .scalars()
                .all()
            )
        assert later_versions, "no later payment was stored"
        assert all(v >= published for v in later_versions), (later_versions, published)
        # Every version that scored is recorded, and checkpointed on disk beside the start.
        recorded = {start, *online_versions()}
        assert set(later_versions) <= recorded
        assert set(online_versions()) <= set(artifact.list_versions(models))
        newest = artifact.load(models, key=key_for_tests())
        assert newest.metadata.parent_version is not None
        assert newest.metadata.labels_learned == len(labels)
    finally:
        stop(flow)


def test_a_retrain_starts_a_lineage_that_scoring_and_the_learner_go_on_from(
    topics: dict[str, str], mysql_url: str, engine: Engine, model_dir: Path, tmp_path: Path
) -> None:
    """Learn from labels, retrain from MySQL while the flow runs, then score and learn on."""
    models = models_from(model_dir, tmp_path)

    sim = simulate(SimulationSpec(seed=22, days=6, cards=300, merchants=60))
    payments = list(sim.payments())
    cut = payments[0].event_timestamp + 3 * 86_400
    first = [p for p in payments if p.event_timestamp < cut]
    later = [p for p in payments if p.event_timestamp >= cut]
    ids = {p.transaction_id for p in first}
    first_labels = [label for label in sim.labels() if label.transaction_id in ids]
    later_labels = [label for label in sim.labels() if label.transaction_id not in ids]
    assert first and later and first_labels and later_labels

    env = flow_env(
        topics,
        mysql_url,
        models,
        tail="true",
        publish_every_labels="50",
        publish_seconds="2",
        model_refresh_seconds="1",
        label_retry_seconds="1",
        legit_sample_rate="1",  # every label learned, as in the test above
    )
    log = tmp_path / "flow.log"
    flow = start_flow(env, log)
    try:
        produce(topics, first)
        produce(topics, first_labels)
        wait_for(
            "the first labels to be claimed",
            lambda: (
                count(engine, scored_payments.c.label_is_fraud.is_not(None)) == len(first_labels)
            ),
        )
        # ... and learned in a recorded version: the learner has nothing left to publish, so the
        # retrained version is the newest until the later labels come.
        wait_for(
            "the first labels to be learned in a recorded version",
            lambda: learned_in_a_recorded_version(engine) == len(first_labels),
        )
        retrained = subprocess.run(
            # Three days of labels are too few to hold a week out: the operator forces it, and
            # takes every label as final (the stream is shorter than the default label delay).
            [
                ".venv/bin/python",
                "-m",
                "model_state.retrain",
                "--min-frauds",
                "1",
                "--force",
                "--label-delay-days",
                "0",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert retrained.returncode == 0, retrained.stdout + retrained.stderr
        assert "wrote v00002 (parent v00001." in retrained.stdout
        wait_for("every process to score with v00002", lambda: scoring_with(log, "v00002"))

        produce(topics, later)
        wait_for("the later days to be scored", lambda: count(engine) == len(payments))
        with engine.connect() as c:
            later_versions = set(
                c.execute(
                    select(scored_payments.c.model_version).where(
                        scored_payments.c.transaction_id.in_([p.transaction_id for p in later])
                    )
                ).scalars()
            )
        assert later_versions and all(v >= "v00002" for v in later_versions), later_versions

        produce(topics, later_labels)

        def lineage_two() -> list[tuple[str, str | None]]:
            with engine.connect() as c:
                rows = c.execute(
                    select(model_versions.c.version, model_versions.c.parent_version).where(
                        model_versions.c.version > "v00002"
                    )
                )
                return sorted((r[0], r[1]) for r in rows)

        wait_for("the learner to publish from the retrained version", lambda: bool(lineage_two()))
        assert lineage_two()[0] == ("v00002.000001", "v00002")
    finally:
        stop(flow)
