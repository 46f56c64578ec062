"""A failing flow process exits 1, never 134 (issue 20, item 2): two Bytewax processes, process
1's sink raises, its finalization is slow and process 0 closes its sockets meanwhile. Without
:mod:`dataflows.exiting`, Bytewax's left-over communication thread re-entered the finalizing
interpreter and glibc aborted the process (``FATAL: exception not rethrown``, exit 134)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dataflows import exiting, scoring
from test_data.ports import free_ports

ROOT = Path(__file__).resolve().parent.parent


def run_two(tmp_path: Path, **env: str) -> list[tuple[int, str]]:
    """Both processes of ``tests/exiting_flow.py``: their exit status and output."""
    port = free_ports(2)
    addresses = f"127.0.0.1:{port};127.0.0.1:{port + 1}"
    procs = []
    for i in (0, 1):
        out = (tmp_path / f"p{i}.log").open("wb")
        command = [sys.executable, "-m", "bytewax.run", "tests.exiting_flow:flow"]
        command += ["-w", "1", "-i", str(i), "-a", addresses]
        settings = {"TEST_PROCESS": str(i), "FINALIZE_SECONDS": "4"}
        procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ | settings | env,
            )
        )
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(code, (tmp_path / f"p{i}.log").read_text()) for i, code in enumerate(codes)]


def test_failing_processes_exit_1_and_say_so(tmp_path: Path) -> None:
    """Without :mod:`dataflows.exiting` the process that fails second aborted (3 runs in 3).
    Each process whose sink raised logged the cause with its step first
    (:mod:`dataflows.failures`), then that it stops."""
    for i, (code, out) in enumerate(run_two(tmp_path)):
        assert "FATAL" not in out, out
        assert code == 1, f"exit status {code}:\n{out}"
        stops = out.index("the flow process stops: ")
        cause = out.find(f"RuntimeError: MySQL refused the batch (a test, process {i})")
        if cause >= 0:  # the other process may have stopped on this one's going first
            assert "CRITICAL dataflows.failures: exiting.store" in out[:cause], out
            assert cause < stops, out
        # The last CRITICAL line names the cause, not Bytewax's panic alone: this process's
        # failure (logged above it), or that no step of this process failed.
        last = [line for line in out.splitlines() if " CRITICAL " in line][-1]
        assert "the flow process stops: " in last, out
        if cause >= 0:
            assert (
                f"exiting.store failed: RuntimeError: MySQL refused the batch (a test, process "
                f"{i})" in last
            ), last
        else:
            assert "no step of this process failed: another process of the flow" in last, last
        assert "Bytewax reports it as PanicException" in last, last


def test_the_flows_entry_point_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "build", lambda config, stop, **options: None)
    monkeypatch.setenv("PAYSCORE_METRICS_PORT", "0")  # 3030 may be taken (by a flow, a test)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        scoring.flow()
        assert sys.excepthook is exiting.exit_at_once
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)


def test_an_error_outside_any_step_is_named_as_it_is_not_as_another_process_s(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A flow that fails while it is built (no step ran, no panic) names its own error, never
    "another process of the flow failed"."""
    import logging

    monkeypatch.setattr(exiting.failures, "_first", None)
    monkeypatch.setattr(exiting.os, "_exit", lambda status: None)
    monkeypatch.setattr(exiting.logging, "shutdown", lambda: None)
    error = ValueError("model signing key /k must hold 64 hex digits")
    with caplog.at_level(logging.CRITICAL, logger=exiting.__name__):
        exiting.exit_at_once(ValueError, error, None)
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "the flow process stops: ValueError: model signing key /k must hold 64 hex digits; "
        "exit 1 at once"
    ], said


def test_a_full_disk_under_the_recovery_directory_is_named_with_the_remedy(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What Bytewax raised when a snapshot did not fit (seen on a 400 kB tmpfs as ``-r``): a
    Rust ``unwrap`` on SQLite's DiskFull, naming no folder and no remedy."""
    import logging

    monkeypatch.setattr(exiting.failures, "_first", None)
    monkeypatch.setattr(exiting.os, "_exit", lambda status: None)
    monkeypatch.setattr(exiting.logging, "shutdown", lambda: None)
    error = RuntimeError(
        "(src/run.rs:167:13) called `Result::unwrap()` on an `Err` value: SqliteFailure(Error "
        '{ code: DiskFull, extended_code: 13 }, Some("database or disk is full"))'
    )
    with caplog.at_level(logging.CRITICAL, logger=exiting.__name__):
        exiting.exit_at_once(RuntimeError, error, None)
    (said,) = [r.getMessage() for r in caplog.records]
    assert "DiskFull" in said and "the disk of the recovery directory (-r) is full" in said
    assert "resumes from its last snapshot" in said and said.endswith("exit 1 at once")
