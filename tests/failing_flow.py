"""A small flow that fails where ``FAIL_AT`` says (``mapper``, ``logic``, ``source``, ``sink``),
guarded by :func:`dataflows.failures.log_failures` as the scoring flow is; for
``tests/test_failures.py``, which runs it as two processes with ``python -m bytewax.run``."""

from __future__ import annotations

import os
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from dataflows import logs
from dataflows.failures import log_failures

FAIL_AT = os.environ.get("FAIL_AT", "mapper")
SECRET = "the cause is " + "x" * 20_000  # far longer than a log line may quote


def fail(where: str) -> None:
    if where == FAIL_AT:
        raise ValueError(f"{where} broke: {SECRET}\x00")


class _Numbers(StatelessSourcePartition[int]):
    def __init__(self) -> None:
        self._left = 20

    def next_batch(self) -> list[int]:
        if self._left == 0:
            raise StopIteration
        self._left -= 1
        if self._left == 10:
            fail("source")
        return [self._left]


class Numbers(DynamicSource[int]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Numbers:
        return _Numbers()


class _Count(StatefulBatchLogic[int, int, int]):
    def __init__(self, seen: int) -> None:
        self._seen = seen

    def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
        self._seen += len(values)
        if self._seen > 5:
            fail("logic")
        return values, self.RETAIN

    def snapshot(self) -> int:
        return self._seen


class _Out(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        fail("sink")


class Out(DynamicSink[Any]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Out:
        return _Out()


def mapped(x: int) -> int:
    if x < 15:
        fail("mapper")
    return x


def build(*, configure_logs: bool = True) -> Dataflow:
    if configure_logs:
        logs.configure()
    flow = Dataflow("failing")
    numbers = op.map("check", op.input("numbers", flow, Numbers()), mapped)
    counted = op.stateful_batch(
        "count", op.key_on("key", numbers, lambda _: "all"), lambda resume: _Count(resume or 0)
    )
    op.output("out", counted, Out())
    return log_failures(flow)


flow = build()
