"""A recovery directory of another flow is refused at start (``dataflows/recovery_dir.py``).

The snapshots are real: a small Bytewax dataflow with the flow's id and reader step ids, whose
source names its partitions as Bytewax's Kafka source does (``<partition>-<topic>``), runs with
recovery into a directory made by ``bytewax.recovery.init_db_dir``; no broker is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.recovery_dir import (
    RecoveryDirectoryError,
    check_snapshots,
    recovery_directory,
    require_own_recovery,
    snapshot_keys,
)
from dataflows.scoring import FLOW_ID, kafka_readers
from settings.config import Config


class _Part(StatefulSourcePartition[int, int]):
    def __init__(self, resume: int | None) -> None:
        self._next = resume or 0

    def next_batch(self) -> list[int]:
        if self._next >= 3:
            raise StopIteration
        self._next += 1
        return [self._next]

    def snapshot(self) -> int:
        return self._next


class _Topic(FixedPartitionedSource[int, int]):
    """Partitions named as bytewax.connectors.kafka names them."""

    def __init__(self, topic: str) -> None:
        self._topic = topic

    def list_parts(self) -> list[str]:
        return [f"{i}-{self._topic}" for i in range(2)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Part:
        return _Part(resume_state)


def run_with_recovery(directory: Path, flow_id: str, payments: str, labels: str) -> None:
    flow = Dataflow(flow_id)
    out: list[int] = []
    for step, topic in (("read_payments", payments), ("read_labels", labels)):
        op.output(f"out_{step}", op.input(step, flow, _Topic(topic)), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(seconds=0), recovery_config=RecoveryConfig(directory))
    assert len(out) == 12


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    made = tmp_path / "recovery"
    made.mkdir()
    init_db_dir(made, 1)
    return made


def config(payments: str = "pay-a", labels: str = "lab-a") -> Config:
    return Config.from_env({"PAYSCORE_PAYMENTS_TOPIC": payments, "PAYSCORE_LABELS_TOPIC": labels})


def test_the_flow_s_own_directory_is_taken_empty_and_after_a_run(directory: Path) -> None:
    argv = ["bytewax.run", "dataflows.scoring:flow", "-r", str(directory), "-s", "1"]
    require_own_recovery(argv, {}, FLOW_ID, kafka_readers(config()))  # empty: no run yet
    run_with_recovery(directory, FLOW_ID, "pay-a", "lab-a")
    keys = snapshot_keys(directory, FLOW_ID, [f"{FLOW_ID}.read_payments"])
    assert keys[f"{FLOW_ID}.read_payments"] == {"0-pay-a", "1-pay-a"}  # as the check reads them
    require_own_recovery(argv, {}, FLOW_ID, kafka_readers(config()))


@pytest.mark.parametrize(
    ("payments", "labels", "says"),
    [
        ("pay-b", "lab-a", "topic 'pay-a' for step read_payments; expected topic 'pay-b'"),
        ("pay-a", "lab-b", "topic 'lab-a' for step read_labels; expected topic 'lab-b'"),
    ],
)
def test_a_directory_of_a_flow_on_other_topics_is_refused(
    directory: Path, payments: str, labels: str, says: str
) -> None:
    run_with_recovery(directory, FLOW_ID, "pay-a", "lab-a")
    environ = {"BYTEWAX_RECOVERY_DIRECTORY": str(directory)}  # as bytewax.run reads it too
    with pytest.raises(RecoveryDirectoryError, match=f"{directory}.*holds Kafka offsets of {says}"):
        require_own_recovery(["run"], environ, FLOW_ID, kafka_readers(config(payments, labels)))


def test_a_directory_of_another_dataflow_is_refused(directory: Path) -> None:
    run_with_recovery(directory, "other_flow", "pay-a", "lab-a")
    with pytest.raises(RecoveryDirectoryError, match=r"steps of another dataflow \(other_flow\."):
        require_own_recovery(
            ["run", "--recovery-directory", str(directory)],
            {},
            FLOW_ID,
            kafka_readers(config()),
        )


def test_a_partition_that_is_not_a_recovery_database_is_named(directory: Path) -> None:
    (directory / "part-1.sqlite3").write_bytes(b"not a database, a copied log file\n" * 100)
    with pytest.raises(RecoveryDirectoryError, match=r"part-1\.sqlite3' cannot be read: "):
        require_own_recovery(["run", "-r", str(directory)], {}, FLOW_ID, kafka_readers(config()))


def test_a_relative_directory_as_the_readme_gives_it_is_read(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ops/run_flow.sh 2 2 -r model_state/recovery`: a relative path has no file URI of its own."""
    run_with_recovery(directory, FLOW_ID, "pay-a", "lab-a")
    monkeypatch.chdir(directory.parent)
    for argv in (["run", "-r", directory.name], ["run", "--recovery", directory.name]):
        assert recovery_directory(argv, {}) == Path(directory.name)  # abbreviated, as bytewax.run
        require_own_recovery(argv, {}, FLOW_ID, kafka_readers(config()))
        with pytest.raises(RecoveryDirectoryError, match="expected topic 'pay-b'"):
            require_own_recovery(argv, {}, FLOW_ID, kafka_readers(config("pay-b")))


def test_the_directory_is_read_as_bytewax_run_reads_it(tmp_path: Path) -> None:
    assert recovery_directory(["run", "x:flow"], {}) is None
    assert recovery_directory(["run", "-r", "/a"], {"BYTEWAX_RECOVERY_DIRECTORY": "/b"}) == Path(
        "/a"
    )
    assert recovery_directory(["run"], {"BYTEWAX_RECOVERY_DIRECTORY": "/b"}) == Path("/b")
    # A directory that does not exist is Bytewax's to refuse (it says so itself).
    require_own_recovery(["run", "-r", str(tmp_path / "nope")], {}, FLOW_ID, {})


topic_names = st.text(alphabet="abcXYZ09._-", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    mine=topic_names,
    found=st.lists(st.tuples(st.integers(0, 99), topic_names), max_size=6),
    other_steps=st.lists(st.sampled_from([f"{FLOW_ID}.learn", f"{FLOW_ID}.card_features"])),
)
def test_snapshots_are_taken_exactly_when_every_reader_key_names_the_flow_s_topic(
    mine: str, found: list[tuple[int, str]], other_steps: list[str]
) -> None:
    """A topic may hold '-' itself: the partition is what comes before the first one."""
    keys = {f"{FLOW_ID}.read_payments": {f"{p}-{t}" for p, t in found}}
    keys |= {step: {"k"} for step in other_steps}
    readers = {f"{FLOW_ID}.read_payments": mine}
    if all(t == mine for _, t in found):
        check_snapshots(keys, FLOW_ID, readers, "/r")
    else:
        with pytest.raises(RecoveryDirectoryError, match=f"expected topic {mine!r}"):
            check_snapshots(keys, FLOW_ID, readers, "/r")


def test_a_partition_left_by_a_killed_process_is_read(directory: Path) -> None:
    """kill -9 leaves the partition's WAL and its index behind (a crash drill's restart); the
    check reads it as Bytewax does, and takes the flow's own."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(directory / "part-0.sqlite3")],
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"written\n"
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert (directory / "part-0.sqlite3-wal").exists()
    steps = [f"{FLOW_ID}.read_labels", f"{FLOW_ID}.read_payments"]
    assert snapshot_keys(directory, FLOW_ID, steps) == {f"{FLOW_ID}.read_payments": {"0-pay-a"}}
    require_own_recovery(["run", "-r", str(directory)], {}, FLOW_ID, kafka_readers(config()))


_KILLED_WRITER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("INSERT INTO snaps (step_id, state_key, snap_epoch) VALUES "
          "('payscore.read_payments', '0-pay-a', 1)")
c.commit()
print("written", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("holds", [[], ["notes.txt"]], ids=["empty", "other_files"])
def test_a_directory_without_partitions_is_refused_naming_it_and_the_remedy(
    tmp_path: Path, holds: list[str]
) -> None:
    """A folder that exists but holds no recovery partition (made with mkdir, or the mount point
    of a volume that is not mounted): Bytewax stopped with a Rust panic and "No recovery
    partitions found on any worker; can't resume", naming neither the folder nor what to do."""
    folder = tmp_path / "recovery"
    folder.mkdir()
    for name in holds:
        (folder / name).write_text("x")
    argv = ["bytewax.run", "dataflows.scoring:flow", "-r", str(folder)]
    with pytest.raises(RecoveryDirectoryError) as caught:
        require_own_recovery(argv, {}, FLOW_ID, kafka_readers(config()))
    said = str(caught.value)
    assert f"recovery directory {str(folder)!r} holds no recovery partition" in said, said
    assert "python -m bytewax.recovery" in said and "not mounted" in said, said


def test_a_cluster_process_without_partitions_warns_and_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In a cluster (``-a``) another host may hold the partitions (Bytewax counts them over every
    process and refuses the start itself when none holds any): a warning naming the folder."""
    folder = tmp_path / "recovery"
    folder.mkdir()
    argv = ["bytewax.run", "dataflows.scoring:flow", "-r", str(folder), "-i", "1"]
    argv += ["-a", "host-a:2101;host-b:2101"]
    with caplog.at_level("WARNING", logger="dataflows.recovery_dir"):
        require_own_recovery(argv, {}, FLOW_ID, kafka_readers(config()))
    assert f"recovery directory {str(folder)!r} holds no recovery partition" in caplog.text
    assert "other hosts" in caplog.text


def test_a_lock_file_names_the_holder_s_pid_and_host(tmp_path: Path) -> None:
    """Across hosts (a recovery directory on shared storage) a pid alone names nothing."""
    from dataflows.recovery_dir import _holder

    path = tmp_path / "lock"
    path.write_text("4242 flow-host-1\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _holder(fd) == " (pid 4242 on host 'flow-host-1')"
    finally:
        os.close(fd)
    path.write_text("4242\n")  # a lock file of the first version of the lock
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _holder(fd) == " (pid 4242)"
    finally:
        os.close(fd)
