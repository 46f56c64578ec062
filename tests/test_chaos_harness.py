"""The crash drill's own helpers (``test_data/chaos.py``), without services."""

from pathlib import Path

from test_data.chaos import FlowProcess


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
