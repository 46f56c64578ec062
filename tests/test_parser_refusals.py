"""The command lines' parsers refuse bad arguments in bounded text (settings.arguments.Parser):
argparse quotes the value it refuses whole, so ``python -m rules status r1 <100,000 characters>``
printed 100,190 characters, ``rules diff <5,000 digits>`` 5,114, ``review.users add alice
--role <100,000 characters>`` 100,273."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HUGE = "a" * 100_000


@pytest.mark.parametrize(
    "argv",
    [
        ["rules", "status", "r1", HUGE],  # invalid choice
        ["rules", "diff", "9" * 5_000],  # invalid int value (past Python's 4,300 digits)
        ["rules", "show", HUGE],  # unrecognized arguments
        ["rules", HUGE],  # invalid choice of a command
        ["review.users", "add", "alice", "--role", HUGE],
        ["review.users", "unlock", "alice", "--by", "x\n" * 50_000],
        ["model_state.train", "--family", HUGE],
        ["model_state.retrain", "--family", HUGE],
        ["model_state.evaluate", "--stream", HUGE],
        ["model_state.shadow", HUGE],
        ["storage.schema", HUGE],
        ["rules.backtest", HUGE],
    ],
)
def test_a_refused_argument_is_quoted_bounded_and_printable(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert "error: " in done.stderr
    message = done.stderr.split("error: ", 1)[1]
    assert len(message) < 600, message[:300]
    assert message.count("\n") == 1  # one line: a line break that came is escaped
