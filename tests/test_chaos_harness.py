"""The crash drill's own helpers (``test_data/chaos.py``), without services."""

import socket
from pathlib import Path

import pytest

from test_data.chaos import FlowProcess, current_run, ports_taken
from test_data.ports import free_ports


def test_a_partition_file_removed_while_listed_counts_as_not_written(tmp_path: Path) -> None:
    # SQLite removes a partition's -wal file when it checkpoints; between the listing and the
    # stat it is gone. A dangling link is such a file: listed, and FileNotFoundError on stat.
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    written = recovery / "part-0.sqlite3"
    written.write_bytes(b"snapshot")
    (recovery / "part-1.sqlite3-wal").symlink_to(recovery / "gone")
    flow = FlowProcess({}, recovery, tmp_path / "flow.log", base_port=2600)
    assert flow.snapshots_written() == written.stat().st_mtime


def test_no_partition_files_yet_reads_as_never_written(tmp_path: Path) -> None:
    flow = FlowProcess({}, tmp_path, tmp_path / "flow.log", base_port=2600)
    assert flow.snapshots_written() == 0.0


def test_a_process_built_before_a_supervised_restart_does_not_count_for_the_run_now(
    tmp_path: Path,
) -> None:
    # Under run_flow.sh --supervise the flow's processes are started again after a failure,
    # within one start of FlowProcess: lines of the run that ended are not this run's.
    log = tmp_path / "flow.log"
    flow = FlowProcess({}, tmp_path / "recovery", log, processes=2, base_port=2600)
    flow.starts = 2
    log.write_text(
        "\n==== start 1 at 1.000\nflow built: a\nflow built: b\n"
        "\n==== start 2 at 2.000\nflow built: a\nflow built: b\n"
        "[run_flow] process 11 exited with status 1; stopping the others\n"
        "[run_flow] the flow exited with status 1; restarting in 5 s (supervised)\n"
        "flow built: a\n"
    )
    assert flow.built() == 1
    with log.open("a") as out:
        out.write("flow built: b\n")
    assert flow.built() == 2


def test_lines_of_an_earlier_start_do_not_count_for_the_current_one(tmp_path: Path) -> None:
    log = tmp_path / "flow.log"
    flow = FlowProcess({}, tmp_path / "recovery", log, processes=2, base_port=2600)
    flow.starts = 2
    log.write_text("\n==== start 1 at 1.000\nflow built: a\nflow built: b\n\n==== start 2 at 2.0\n")
    assert "flow built" not in current_run(log.read_text(), 2)
    assert flow.built() == 0


def test_a_start_on_a_cluster_port_another_process_listens_on_fails_naming_it(
    tmp_path: Path,
) -> None:
    port = free_ports(2)
    with socket.socket() as other:
        other.bind(("127.0.0.1", port + 1))
        other.listen()
        flow = FlowProcess({}, tmp_path / "recovery", tmp_path / "flow.log", base_port=port)
        with pytest.raises(AssertionError, match=rf"cluster ports {port + 1} \(.*\) are taken"):
            flow.start()
    assert flow.proc is None and flow.starts == 0 and not (tmp_path / "flow.log").exists()
    assert ports_taken(port, 2) == []  # free again once the other process lets it go


def test_supervised_restarts_are_the_supervisors_restart_lines_of_every_start(
    tmp_path: Path,
) -> None:
    log = tmp_path / "flow.log"
    flow = FlowProcess({}, tmp_path / "recovery", log, base_port=2600, supervise=True)
    assert flow.supervised_restarts() == []  # no log yet
    restart = "[run_flow] the flow exited with status 1; restarting in 5 s (supervised)"
    log.write_text(
        f"\n==== start 1 at 1.000\nflow built: a\n{restart}\nflow built: a\n"
        "[run_flow] process 11 exited with status 1; stopping the others\n"
        f"\n==== start 2 at 2.000\n  {restart} (quoted, not the supervisor's)\n{restart}\n"
    )
    assert flow.supervised_restarts() == [restart, restart]
