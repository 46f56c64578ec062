"""A flow of two processes that fail a moment after they start (a sink raises, as the flow's
sinks do when MySQL refuses a write), run by ``tests/test_exiting.py``.

Both processes install :mod:`dataflows.exiting` as the flow's entry point does (unless
``PAYSCORE_TEST_PLAIN_EXIT`` is set), and guard their steps with
:func:`dataflows.failures.log_failures` as the scoring flow does. Their Python finalization is
slow (an object whose ``__del__`` takes ``FINALIZE_SECONDS``, as the flow's large heap does),
and process 0 fails 1.5 s after process 1: one process's sockets close while the other
finalizes.
"""

from __future__ import annotations

import os
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from dataflows import exiting, logs
from dataflows.failures import log_failures

PROCESS = os.environ.get("TEST_PROCESS", "0")
FAILS_AFTER = {"1": 2.0, "0": 3.5}  # seconds after the start: one ends while the other finalizes
STARTED = time.monotonic()


class _SlowToFinalize:
    def __del__(self) -> None:
        time.sleep(float(os.environ.get("FINALIZE_SECONDS", "0")))


_SLOW = _SlowToFinalize()


class _Ticks(StatelessSourcePartition):
    def next_batch(self) -> list[int]:
        time.sleep(0.01)
        return [int(time.monotonic() * 100)]


class Ticks(DynamicSource):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Ticks:
        return _Ticks()


class _Refusing(StatelessSinkPartition):
    def write_batch(self, items: list[tuple[str, int]]) -> None:
        if time.monotonic() - STARTED > FAILS_AFTER[PROCESS]:
            raise RuntimeError(f"MySQL refused the batch (a test, process {PROCESS})")


class Refusing(DynamicSink):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Refusing:
        return _Refusing()


def flow() -> Dataflow:
    logs.configure()
    if not os.environ.get("PAYSCORE_TEST_PLAIN_EXIT"):
        exiting.install()
    built = Dataflow("exiting")
    ticks = op.key_on("key", op.input("ticks", built, Ticks()), lambda t: str(t % 7))
    op.output("store", ticks, Refusing())
    return log_failures(built)
