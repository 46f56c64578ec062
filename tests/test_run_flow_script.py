"""ops/run_flow.sh collects every process, however soon it ends: processes that exit at once (the
flow refused to start, before it was built) make the script exit promptly with their status. It
used to loop forever on ``wait: PID: no such job`` (2.5 million log lines in one chaos run): bash
files an ended process's status away when it starts the next one, and ``wait -n`` with that pid
then fails at once, every time."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_script(python: Path, processes: int, timeout: float = 60.0) -> tuple[int, str]:
    """run_flow.sh with FLOW_PYTHON=``python``: its exit status and output; killed (with every
    process it started) if it has not ended within ``timeout`` seconds."""
    script = subprocess.Popen(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), str(processes), "1"],
        env=os.environ | {"FLOW_PYTHON": str(python), "FLOW_BASE_PORT": "2990"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = script.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(script.pid, signal.SIGKILL)
        output, _ = script.communicate()
        tail = output[-600:].decode(errors="replace")
        raise AssertionError(f"run_flow.sh still running after {timeout} s: ...{tail}") from None
    return script.returncode, output.decode(errors="replace")


def test_processes_that_exit_at_once_end_the_script_promptly_with_their_status(
    tmp_path: Path,
) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexit 7\n")
    python.chmod(0o755)
    for _ in range(12):  # the race is lost in most runs of 6 processes; 12 makes it certain
        status, output = run_script(python, processes=6)
        assert status == 7, output[-2000:]
        assert "no such job" not in output, output[-2000:]
        assert "exited with status 7; stopping the others" in output


def test_one_process_exiting_at_once_ends_the_script_with_its_status(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexit 3\n")
    python.chmod(0o755)
    status, output = run_script(python, processes=1)
    assert status == 3, output


@pytest.mark.parametrize(
    ("counts", "said"),
    [
        (["0", "2"], "PROCESSES is 0"),
        (["-1", "1"], "PROCESSES is -1"),
        (["x", "2"], "PROCESSES is x"),
        (["2", "0"], "WORKERS is 0"),
        (["1", "two"], "WORKERS is two"),
    ],
)
def test_counts_that_are_not_whole_numbers_from_1_are_refused(
    tmp_path: Path, counts: list[str], said: str
) -> None:
    """Before: ``0 2`` started no process and exited 0 (a supervisor saw a clean end), ``x 2``
    stopped at bash's ``x: unbound variable``."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho started\n")
    python.chmod(0o755)
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), *counts],
        env={**os.environ, "FLOW_PYTHON": str(python), "FLOW_BASE_PORT": "2901"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"[run_flow] refused: {said}; expected a whole number from 1" in done.stderr
    assert "started" not in done.stdout


@pytest.mark.parametrize(
    ("base", "processes"),
    [("abc", "1"), ("PROCESSES[$(touch {witness})]", "1"), ("65535", "2"), ("0", "1"), ("", "1")],
)
def test_a_base_port_that_is_not_a_port_for_every_process_is_refused(
    tmp_path: Path, base: str, processes: str
) -> None:
    """FLOW_BASE_PORT went into bash's arithmetic unchecked: ``abc`` stopped at ``abc: unbound
    variable`` (status 1), ``65535`` with 2 processes gave the address ``127.0.0.1:65536``, and
    ``PROCESSES[$(command)]`` ran the command."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho started\n")
    python.chmod(0o755)
    witness = tmp_path / "ran"
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), processes, "1"],
        env={
            **os.environ,
            "FLOW_PYTHON": str(python),
            "FLOW_BASE_PORT": base.format(witness=witness),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if base == "":  # empty: the default port
        assert done.returncode == 0 and "started" in done.stdout, done.stderr
        return
    assert done.returncode == 2, done.stderr
    assert "[run_flow] refused: FLOW_BASE_PORT is " in done.stderr
    assert "expected a port from 1 to" in done.stderr
    assert "started" not in done.stdout and not witness.exists()
