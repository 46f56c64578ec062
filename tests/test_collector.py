"""The garbage collector's settings for a built flow (``dataflows/collector.py``), in a fresh
interpreter so that this test run's own collector is left alone."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
before = gc.get_threshold()
kept = [object() for _ in range(1000)]
from dataflows import collector
collector.settle()
print(before, gc.get_threshold(), gc.get_freeze_count() >= 1000)
"""


def test_settle_freezes_what_exists_and_raises_the_thresholds() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout.split(")")
    assert out[0].strip() + ")" == "(700, 10, 10)"  # CPython's defaults before
    assert out[1].strip() + ")" == "(50000, 20, 100)"
    assert out[2].strip() == "True"  # at least the objects made before are frozen
