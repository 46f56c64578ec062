"""The helpers that run the flow for the tests (``tests/flowrun.py``), without services."""

from pathlib import Path

from tests.flowrun import logged


def test_a_line_still_being_written_is_not_matched(tmp_path: Path) -> None:
    log = tmp_path / "flow.log"
    log.write_text("deciding with ruleset version 3 (was 2)\ndeciding with ruleset version 1")
    pattern = r"deciding with ruleset version (\d+)"
    assert [m[1] for m in logged(log, pattern)] == ["3"]
    with log.open("a") as out:  # the process finishes its line
        out.write("2 (was 3)\n")
    assert [m[1] for m in logged(log, pattern)] == ["3", "12"]


def test_no_log_yet_matches_nothing(tmp_path: Path) -> None:
    assert logged(tmp_path / "flow.log", "anything") == []
