"""``python -m review`` takes no argument: ``--help`` says what it serves and exits, anything
else is refused. Before, every argument was ignored: ``python -m review --help`` started the
review queue (or, without a model key, stopped with "cannot start")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    # A model key file that does not exist: had the command gone on, it would say so.
    env = {"PATH": "/usr/bin:/bin", "PAYSCORE_MODEL_KEY_FILE": str(ROOT / "no-such.key")}
    return subprocess.run(
        [sys.executable, "-m", "review", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_help_says_what_it_serves_and_starts_nothing() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m review")
    assert "PAYSCORE_REVIEW_HOST" in done.stdout
    assert "cannot start" not in done.stderr


@pytest.mark.parametrize("argv", [["--port", "9000"], ["x" * 5000]])
def test_an_argument_is_refused_before_anything_starts(argv: list[str]) -> None:
    done = run(*argv)
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr
    assert "cannot start" not in done.stderr
    assert len(done.stderr) < 1000
