"""Outages and poison pills on the real broker and server.

- A drain run (``PAYSCORE_TAIL=false``) whose labels reach the flow before their payments are
  stored waits for them: every label is claimed, none is given up.
- MySQL down for longer than ``PAYSCORE_MYSQL_OUTAGE_SECONDS``: the flow exits non-zero with a
  message that says so; under ``ops/run_flow.sh --supervise`` it is started again and, once
  MySQL is back, stores everything with nothing lost.
- The flow account's grants reset (revoked, granted again) right after MySQL comes back: the
  refusals meanwhile are ridden out like an outage.
- A bad message larger than the dead-letter topic takes is one dead letter: whole in MySQL, cut
  (and marked) on the topic; the flow goes on with the rest of its partition.
- Model versions are ordered as numbers under the collation the project ships.

The drills stop and start MariaDB and reset grants (``ops/services.sh``): run them against
private services, whose ``SERVICES_*`` settings and ``PAYSCORE_*`` URLs and broker the tests
pass on (the README's *Outages*), never against shared ones.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer
from sqlalchemy import Engine, func, insert, select, text

from storage.labels import SAMPLED_OUT
from storage.rows import model_version_row
from storage.tables import dead_letters, fraud_labels, model_versions, scored_payments
from storage.versions import newer_rows
from test_data.chaos import FlowProcess, services, wait_for
from test_data.generator import simulate
from test_data.hostile import valid_payment
from test_data.spec import LabelDelays, SimulationSpec
from test_data.topic_end import read_to_end
from tests.builders import model_metadata
from tests.flowrun import BROKERS, flow_env, produce, run_flow

pytestmark = [pytest.mark.integration, pytest.mark.restarts_services]


def count(engine: Engine, table=scored_payments, where=None) -> int:
    query = select(func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    with engine.connect() as c:
        return int(c.execute(query).scalar_one())


def written(log: Path) -> str:
    """What the flow has written to ``log`` so far, read while it may be writing: a character
    the read cuts in two (the flow logs "…" in bounded texts) reads as U+FFFD, not as a
    UnicodeDecodeError."""
    return log.read_text(errors="replace")


def small_stream() -> tuple[list, list]:
    sim = simulate(
        SimulationSpec(
            seed=52,
            days=2,
            cards=600,
            merchants=60,
            fraud_rate=0.02,
            label_delays=LabelDelays(fraud_median_days=0.5, legit_maturity_days=1.0),
        )
    )
    return list(sim.payments()), list(sim.labels())


def test_a_drain_run_waits_for_the_payments_of_its_labels(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    payments, labels = small_stream()
    produce(topics, labels)  # every label is read before its payment
    produce(topics, payments)
    run_flow(flow_env(topics, mysql_url, models, label_retry_seconds="1"), processes=2, workers=1)
    assert count(engine) == len(payments)
    claimed = count(engine, fraud_labels, fraud_labels.c.status == "claimed")
    assert claimed == len({label.transaction_id for label in labels})
    assert count(engine, fraud_labels) == len(labels), "a label message left no row"


def test_mysql_down_past_the_bound_stops_the_flow_and_the_supervisor_brings_it_back(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path, tmp_path: Path
) -> None:
    payments, labels = small_stream()
    env = flow_env(
        topics,
        mysql_url,
        models,
        tail="true",
        mysql_outage_seconds="3",
        label_retry_seconds="1",
        model_refresh_seconds="1",
    ) | {"FLOW_SUPERVISE": "1"}
    log = tmp_path / "flow.log"
    flow = FlowProcess(env, tmp_path / "recovery", log)
    flow.start()
    try:
        half = len(payments) // 2
        produce(topics, payments[:half])
        wait_for("the first half", lambda: count(engine) == half, 90)
        services("mysql-down")
        try:
            produce(topics, payments[half:])
            produce(topics, labels)
            wait_for(
                "the flow to give up on MySQL",
                lambda: "MySQL unavailable for more than 3 s" in written(log),
                60,
            )
            wait_for("the supervisor to restart it", lambda: "restarting in" in written(log), 30)
        finally:
            services("mysql-up")
        wait_for("every payment", lambda: count(engine) == len(payments), 120)
        wait_for(
            "every label",
            lambda: count(engine, fraud_labels, fraud_labels.c.status != "waiting") == len(labels),
            120,
        )
        assert flow.running
        assert flow.stop() == 0
    finally:
        if flow.running:
            flow.kill9()
    claimed = count(engine, fraud_labels, fraud_labels.c.status == "claimed")
    assert claimed == len({label.transaction_id for label in labels})
    # negative downsampling (0.1 by default) learns every claimed label but the sampled-out ones
    sampled_out = count(
        engine,
        fraud_labels,
        (fraud_labels.c.status == "claimed") & fraud_labels.c.reason.startswith(SAMPLED_OUT),
    )
    assert 0 < sampled_out < claimed
    with engine.connect() as c:
        newest = c.execute(
            select(model_versions.c.labels_learned)
            .order_by(model_versions.c.lineage.desc(), model_versions.c.sequence.desc())
            .limit(1)
        ).scalar_one()
    assert newest == claimed - sampled_out


def test_a_grant_reset_right_after_mysql_comes_back_is_ridden_out(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path, tmp_path: Path
) -> None:
    """MySQL restarts, and the flow account's grants are applied again the way DBAs' tools do
    it (and ``ops/services.sh mysql-up`` did after every start): REVOKE ALL, GRANT 10 s later.
    Every connection is new after the restart, and is refused meanwhile (1044). A flow MySQL
    let in before rides it out like an outage: not supervised, it never exits, and stores
    everything once (issue 20: it stopped, and one process aborted)."""
    payments, labels = small_stream()
    env = flow_env(
        topics, mysql_url, models, tail="true", label_retry_seconds="1", model_refresh_seconds="1"
    )
    log = tmp_path / "flow.log"
    flow = FlowProcess(env, tmp_path / "recovery", log)
    flow.start()
    try:
        half = len(payments) // 2
        produce(topics, payments[:half])
        wait_for("the first half", lambda: count(engine) == half, 90)
        services("mysql-down")
        try:
            down = log.stat().st_size
            produce(topics, payments[half:])
            produce(topics, labels)
            # The flow meets the stopped server and retries, with new connections: logged after
            # the outage began (not a retry of the first half's).
            wait_for(
                "the flow to retry against the stopped server",
                lambda: b"; retrying" in log.read_bytes()[down:],
                60,
            )
        finally:
            services("mysql-up")
        services("reset-grants", "10")

        def stored(table, where, expected: int) -> bool:
            assert flow.running, f"the flow exited:\n{written(log)[-3000:]}"
            return count(engine, table, where) == expected

        wait_for("every payment", lambda: stored(scored_payments, None, len(payments)), 120)
        resolved = fraud_labels.c.status != "waiting"
        wait_for("every label", lambda: stored(fraud_labels, resolved, len(labels)), 120)
        assert flow.stop() == 0
    finally:
        if flow.running:
            flow.kill9()
    retried = [line for line in written(log).splitlines() if "retrying" in line]
    assert any("(1044" in line or "(1142" in line for line in retried), "never refused"
    claimed = count(engine, fraud_labels, fraud_labels.c.status == "claimed")
    assert claimed == len({label.transaction_id for label in labels})


def test_a_dead_letter_larger_than_its_topic_takes_is_stored_whole_and_cut_on_the_topic(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    huge = b'{"transaction_id": "' + b"x" * 1_040_200 + b'"}'  # the size the review sent
    after = msgspec.json.encode(valid_payment(transaction_id="after-the-huge-one"))
    producer = Producer({"bootstrap.servers": BROKERS, "message.max.bytes": 2_000_000})
    for value in (huge, after):
        producer.produce(topics["payments_topic"], value=value, key=b"card", partition=0)
    assert producer.flush(30) == 0
    env = flow_env(topics, mysql_url, models, dead_letter_max_bytes="100000")
    run_flow(env, processes=1, workers=1)
    run_flow(env, processes=1, workers=1)  # a rerun replays it: still one dead letter, no crash

    with engine.connect() as c:
        letters = c.execute(select(dead_letters)).all()
        stored = c.execute(select(scored_payments.c.transaction_id)).scalars().all()
    assert len(letters) == 1 and bytes(letters[0].raw_value) == huge
    assert stored == ["after-the-huge-one"]
    # Every letter on the topic (each run published before it ended), not the first two read
    # within a while: a third, or one in a partition read late, counts too.
    client = {"bootstrap.servers": BROKERS, "group.id": f"letters-{topics['dead_letters_topic']}"}
    messages = list(read_to_end(client, topics["dead_letters_topic"], seconds=60))
    assert messages, "no dead letter on the topic"
    keys = {m.key() for m in messages}
    assert keys == {f"{topics['payments_topic']}/0/0".encode()}, "replays share one key"
    headers = dict(messages[0].headers())
    assert int(headers["truncated"]) == len(huge)
    assert huge.startswith(messages[0].value()) and len(messages[0].value()) < 100_000


def test_versions_are_ordered_as_numbers_under_the_shipped_collation(engine: Engine) -> None:
    rows = [
        model_version_row(
            metadata=msgspec.to_builtins(model_metadata(name, parent_version=parent)),
            payload=b"x",
            artifact_path=name,
        )
        for name, parent in [
            ("v00001", None),
            ("v00001.000009", "v00001"),
            ("v00001.000123", "v00001.000009"),
            ("v00001.1000000", "v00001.000123"),
            ("v00002", None),
        ]
    ]
    with engine.begin() as c:
        c.execute(insert(model_versions), rows)
        # The trap: under the database's collation '~' sorts below the digits.
        assert c.execute(
            text("SELECT 'v00001.000123' > 'v00001.~' COLLATE utf8mb4_unicode_ci")
        ).scalar_one()
        newest = {
            after: (rows[0].metadata["version"] if (rows := newer_rows(c, after)) else None)
            for after in ["v00001", "v00001.000123", "v00001.1000000", "v00002", None]
        }
    assert newest == {
        "v00001": "v00002",
        "v00001.000123": "v00002",
        "v00001.1000000": "v00002",
        "v00002": None,
        None: "v00002",
    }
