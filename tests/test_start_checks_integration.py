"""Operator mistakes stop the real flow at start (``ops/run_flow.sh``, the real broker and
server), with what failed, where, what was expected and what came; nothing is read or stored.

A recovery directory of another flow (``dataflows/recovery_dir.py``) and a dead-letter topic
that was never created (``dataflows/output_topics.py``) each used to be found late or never:
the first resumed the other flow's state without a word, the second stopped the flow only at
the first bad message, five minutes after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from bytewax.recovery import init_db_dir
from confluent_kafka import Producer
from sqlalchemy import Engine, func, select

from settings.config import Config
from storage.tables import dead_letters, scored_payments
from test_data.hostile import _label, valid_payment
from test_data.ports import free_ports
from tests.flowrun import BROKERS, ROOT, flow_env, stop
from tests.test_recovery_dir import run_with_recovery
from tests.test_schema_check_integration import revoke_from_the_flow

pytestmark = pytest.mark.integration


def start_fails(env: dict[str, str], extra: list[str]) -> str:
    """Run the flow (1 process, 1 worker) to its end; it must exit non-zero. Its output."""
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1", *extra],
        env=env | {"FLOW_BASE_PORT": str(free_ports(1))},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0, f"the flow ran:\n{done.stderr[-3000:]}"
    return done.stderr


def stored(engine: Engine) -> tuple[int, int]:
    with engine.connect() as c:
        return (
            c.execute(select(func.count()).select_from(scored_payments)).scalar_one(),
            c.execute(select(func.count()).select_from(dead_letters)).scalar_one(),
        )


def one_good_one_bad(topics: dict[str, str]) -> None:
    producer = Producer({"bootstrap.servers": BROKERS})
    producer.produce(topics["payments_topic"], msgspec.json.encode(valid_payment()))
    producer.produce(topics["payments_topic"], b"not json")
    assert producer.flush(30) == 0


def test_a_recovery_directory_of_another_flow_stops_the_start(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path, tmp_path: Path
) -> None:
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    run_with_recovery(recovery, "payscore", "payments-of-another-bank", "labels-of-another-bank")
    one_good_one_bad(topics)
    said = start_fails(
        flow_env(topics, mysql_url, models), ["-r", str(recovery), "-s", "1", "-b", "10"]
    )
    assert (
        f"recovery directory '{recovery}' holds Kafka offsets of topic "
        f"'labels-of-another-bank' for step read_labels; expected topic "
        f"'{topics['labels_topic']}'"
    ) in said
    assert stored(engine) == (0, 0)


def test_a_dead_letter_topic_never_created_stops_the_start(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    missing = f"test-{uuid.uuid4().hex[:8]}-no-such-dead-letters"
    one_good_one_bad(topics)
    env = flow_env(topics | {"dead_letters_topic": missing}, mysql_url, models)
    said = start_fails(env, [])
    assert f"Kafka topic '{missing}' (PAYSCORE_DEAD_LETTERS_TOPIC) cannot be described" in said
    assert stored(engine) == (0, 0)


@pytest.mark.parametrize("field", ["labels_topic", "decisions_topic"])
def test_a_labels_or_decisions_topic_never_created_stops_the_start_naming_its_variable(
    field: str, topics: dict[str, str], mysql_url: str, engine: Engine, models: Path
) -> None:
    """Before, a missing labels topic stopped the flow as Bytewax built its input, naming the
    topic alone; a missing decisions topic at the first batch of payments, a dead letter stored
    already, without the variable or the remedy."""
    missing = f"test-{uuid.uuid4().hex[:8]}-no-such-topic"
    one_good_one_bad(topics)
    said = start_fails(flow_env(topics | {field: missing}, mysql_url, models), [])
    variable = f"PAYSCORE_{field.upper()}"
    assert f"Kafka topic '{missing}' ({variable}) cannot be described" in said, said[-3000:]
    assert "create it with ops/create_topics.py" in said
    assert stored(engine) == (0, 0)


def test_a_right_the_flow_s_account_lacks_stops_the_start(
    topics: dict[str, str],
    mysql_url: str,
    engine: Engine,
    admin_engine: Engine,
    database_config: Config,
    models: Path,
) -> None:
    """Before, the flow stored the good payment, then met the refusal at the bad message's dead
    letter, retried it as an outage, and stopped only after PAYSCORE_MYSQL_OUTAGE_SECONDS."""
    revoke_from_the_flow(admin_engine, database_config, "REVOKE INSERT ON {db}.dead_letters")
    one_good_one_bad(topics)
    said = start_fails(flow_env(topics, mysql_url, models, mysql_outage_seconds="5"), [])
    assert "RightsError" in said and "INSERT on dead_letters" in said, said[-3000:]
    assert stored(engine) == (0, 0)


def test_a_second_flow_on_a_recovery_directory_in_use_stops_at_start(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path, tmp_path: Path
) -> None:
    """Before: the second flow resumed from the first one's snapshots and both wrote theirs
    into the directory, both scoring and learning everything, without a word. Once the first
    has stopped, the directory is free again (the kernel drops the lock)."""
    recovery = tmp_path / "recovery"
    one_good_one_bad(topics)
    env = flow_env(topics, mysql_url, models)
    args = ["-r", str(recovery), "-s", "1", "-b", "10"]
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1", *args],
            env=env | {"PAYSCORE_TAIL": "true", "FLOW_BASE_PORT": str(free_ports(1))},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: stored(engine) == (1, 1), first)
        said = start_fails(env, args)
        assert f"recovery directory '{recovery}' is in use by another flow: its process 0" in said
        assert "give this one its own recovery directory" in said
    finally:
        stop(first)
    assert first.returncode == 0, log.read_text()[-3000:]
    subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1", *args],
        env=env | {"FLOW_BASE_PORT": str(free_ports(1))},
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert stored(engine) == (1, 1)


def wait_until(done: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    """Poll ``done`` while ``process`` runs (at most 120 s)."""
    for _ in range(600):
        if done():
            return
        assert process.poll() is None, "the flow ended"
        time.sleep(0.2)
    raise AssertionError("not reached in 120 s")


@pytest.fixture
def read_only_models(models: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of ``models`` on a file system mounted read-only (root: a tmpfs remounted ``ro``;
    another user: a folder of mode 0500)."""
    folder = tmp_path / "read-only-models"
    folder.mkdir()
    mounted = os.geteuid() == 0
    if mounted and subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder)]).returncode:
        pytest.skip("root, and no tmpfs can be mounted here")
    try:
        for version in models.iterdir():
            shutil.copytree(version.resolve(), folder / version.name)
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            folder.chmod(0o500)
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)
        else:
            folder.chmod(0o700)


def test_a_model_folder_the_flow_cannot_write_stops_the_start(
    topics: dict[str, str], mysql_url: str, engine: Engine, read_only_models: Path
) -> None:
    """Before: the flow scored, recorded its first version in MySQL and stopped at the folder
    (``OSError: Read-only file system`` from the version sink), again at every restart."""
    producer = Producer({"bootstrap.servers": BROKERS})
    producer.produce(topics["payments_topic"], msgspec.json.encode(valid_payment()))
    producer.produce(topics["labels_topic"], _label())
    assert producer.flush(30) == 0
    said = start_fails(flow_env(topics, mysql_url, read_only_models, legit_sample_rate="1"), [])
    assert f"PAYSCORE_MODEL_DIR='{read_only_models}' cannot be written" in said
    assert "the learner writes every version it publishes there" in said
    assert stored(engine) == (0, 0)


@pytest.mark.parametrize(
    ("shape", "said"),
    [
        (["-w", "0"], "is 0; expected 1 or more worker threads per process"),
        (["-w", "2", "-i", "2", "-a", "127.0.0.1:1;127.0.0.1:2"], "is 2, but -a names 2"),
    ],
)
def test_a_cluster_shape_bytewax_cannot_run_stops_the_start(
    topics: dict[str, str],
    mysql_url: str,
    engine: Engine,
    models: Path,
    shape: list[str],
    said: str,
) -> None:
    """Before: ``-w 0`` read nothing and exited 0; ``-i 2`` of two addresses (counted from 1)
    panicked in Bytewax and hung, retrying to connect."""
    one_good_one_bad(topics)
    done = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "bytewax.run",
            "dataflows.scoring:flow",
            *shape,
        ],
        env=flow_env(topics, mysql_url, models),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and said in done.stderr, done.stderr[-3000:]
    assert stored(engine) == (0, 0)
