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
    assert out[1].strip() + ")" == "(10000, 5, 100)"
    assert out[2].strip() == "True"  # at least the objects made before are frozen


TIMED = """
import gc, logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
from dataflows import collector
collector.SLOW_SECONDS = 0.0  # every collection is slow, so each is logged
collector.settle()
collector.settle()  # again: one callback still
junk = []
for _ in range(3):
    a = []; a.append(a); junk.append(a)  # a cycle only a collection frees
del junk, a
gc.collect(1)
from prometheus_client import REGISTRY
count = REGISTRY.get_sample_value("payscore_gc_pause_seconds_count", {"generation": "1"})
print("callbacks", gc.callbacks.count(collector.timed), "generation 1 timed", count)
"""


def test_each_collection_is_timed_and_a_slow_one_logged() -> None:
    out = subprocess.run(
        [sys.executable, "-c", TIMED], capture_output=True, text=True, check=True
    ).stdout
    assert "callbacks 1 generation 1 timed 1.0" in out, out
    assert "garbage collection of generation 1 held the process" in out, out
    assert "(3 objects freed)" in out, out
