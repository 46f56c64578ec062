"""The label join resumed with held labels hands them on to state that has been restored too.

Real Bytewax (0.21.1), two processes of one worker, recovery on disk, ``kill -9``; no Kafka or
MySQL (the flow is ``tests/label_join_resume_flow.py``). Sixteen labels are held by the join
(a gather time of an hour) while every terminal's state takes payments epoch after epoch, so
the join's snapshots are older than the terminals'. The flow is killed, then resumed: the join
comes back with the held labels and hands them on, and every terminal must learn its label
once.

Why this can fail (it did, before ``join_labels`` woke resumed groups with a batch): Bytewax
0.21.1's ``stateful_batch`` loads each key's state in the epoch of its snapshot and means to
move its output on to the resume epoch afterwards, but that step acts on an emptied list of
capabilities (``src/operators.rs``, ``init_caps.downgrade_all`` after both were popped), so the
output stays at the loaded epochs until the operator next processes the resume epoch. A logic
whose ``notify_at`` is due at once when it is loaded is called back in the next activation, and
the first epoch that activation processes is that older epoch: its output is stamped before
the resume epoch. A stateful step downstream processes that epoch before it loads its own state
for a later epoch, so it takes the items into a state built anew, which its load then replaces:
they are lost. The old label join retried resumed labels only after ``retry_seconds``, by which
time the operator had moved on; the gather phase made a resumed join due at once.

Before the fix (the join without wake-ups), 2 of 3 attempts lost all sixteen labels, in each of
two runs. Where Bytewax places the input partition and the snapshots decides the race: with the
partition named otherwise, the same flow passed six attempts of six before the fix, so the name
``"p"`` of ``tests/label_join_resume_flow.py`` is kept as it is.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from test_data.chaos import wait_for
from test_data.ports import free_ports
from tests.label_join_resume_flow import LABELS, terminal

ROOT = Path(__file__).resolve().parent.parent


def _start(directory: Path, run: int, port: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.label_join_resume_flow", str(directory), str(run),
             str(proc), str(port)],
            cwd=ROOT,
            stdout=(directory / f"run{run}-{proc}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for proc in (0, 1)
    ]  # fmt: skip


def _held_and_passed(directory: Path) -> bool:
    """The recovery store holds the join's snapshots with the held labels, and both workers
    have written a frontier at least five epochs past the newest of them (the terminals'
    snapshots are of those later epochs)."""
    join: list[int] = []
    fronts: list[int] = []
    for part in directory.glob("part-*.sqlite3"):
        try:
            with sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1) as c:
                join += [
                    e
                    for (e,) in c.execute(
                        "SELECT snap_epoch FROM snaps WHERE step_id LIKE '%.join' "
                        "AND ser_change IS NOT NULL"
                    )
                ]
                fronts += [f for (f,) in c.execute("SELECT worker_frontier FROM fronts")]
        except sqlite3.OperationalError:  # being written: look again
            return False
    return bool(join) and len(fronts) >= 2 and min(fronts) > max(join) + 5


@pytest.mark.parametrize("attempt", range(4))
def test_a_join_resumed_with_held_labels_hands_them_to_restored_state(
    tmp_path: Path, attempt: int
) -> None:
    init_db_dir(tmp_path, 2)
    port = free_ports(2)
    run1 = _start(tmp_path, 1, port)
    try:
        wait_for("the held labels in a committed snapshot", lambda: _held_and_passed(tmp_path), 120)
    finally:
        for p in run1:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
    run2 = _start(tmp_path, 2, port)
    try:
        for p in run2:
            assert p.wait(timeout=120) == 0, (tmp_path / f"run2-{run2.index(p)}.log").read_text()
    finally:
        for p in run2:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    learned: dict[str, int] = {}
    for proc in (0, 1):
        for line in (tmp_path / f"learned-{proc}.csv").read_text().splitlines():
            key, labels = line.split(",")
            learned[key] = int(labels)
    assert learned == {terminal(i): 1 for i in range(LABELS)}, (
        "each terminal has one claimed label and must have learned it once"
    )
