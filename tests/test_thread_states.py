"""The flow's Kafka source keeps a Python thread state in each worker thread that reads a
partition (``dataflows/thread_states.py``), checked on Bytewax itself in one process: a
``threading.local`` set in one activation of a step downstream is still there in the next only
when the worker thread's state lives on (``tests/test_bytewax_costs.py`` shows it is otherwise
gone). No broker: Bytewax's Kafka partition is replaced by one over a list."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from bytewax import operators as op
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.inputs import StatefulSourcePartition
from bytewax.testing import TestingSink, cluster_main

from dataflows import thread_states
from dataflows.sources import FlowKafkaSource


class _Unasked:
    """A Kafka consumer nothing here asks: the partition's reads come from ``_Listed``, and the
    partition watch's first check is 30 s after the build (longer than the test)."""

    def consume(self, *args: object, **kwargs: object) -> list[object]:
        raise AssertionError("the fake partition's reads asked the fake consumer")

    def list_topics(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the partition watch asked the fake consumer")


class _Listed(StatefulSourcePartition):
    """One item a batch, then the end; with a ``_consumer`` as Bytewax 0.21's Kafka reader has
    (``dataflows/sources.py`` wraps it)."""

    def __init__(self, items: list[int]) -> None:
        self._items = items
        self._consumer = _Unasked()

    def next_batch(self) -> list[int]:
        if not self._items:
            raise StopIteration
        return [self._items.pop(0)]

    def snapshot(self) -> None:
        return None


def test_a_worker_that_reads_a_partition_keeps_its_thread_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FlowKafkaSource, "list_parts", lambda self: ["0-payments"])
    monkeypatch.setattr(
        KafkaSource, "build_part", lambda self, step, part, resume: _Listed(list(range(10)))
    )
    local = threading.local()
    kept: list[bool] = []

    def remember(x: Any) -> Any:
        kept.append(getattr(local, "mark", None) == "set")
        local.mark = "set"
        return x

    source = FlowKafkaSource(["127.0.0.1:1"], ["payments"], stop=threading.Event())
    flow = Dataflow("pinned")
    items = op.input("read", flow, source)
    op.output("out", op.map("remember", items, remember), TestingSink([]))
    cluster_main(flow, None, 0, worker_count_per_proc=1)
    assert kept == [False] + [True] * 9


def test_pinning_a_thread_twice_pins_it_once() -> None:
    results: list[bool] = []

    def twice() -> None:
        results.append(thread_states.pin())
        results.append(thread_states.pin())

    worker = threading.Thread(target=twice)
    worker.start()
    worker.join()
    assert results == [True, False]
