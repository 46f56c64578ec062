"""What the throughput research (``benchmarks/THROUGHPUT-DESIGN.md``) relies on in Bytewax 0.21.1,
checked on Bytewax itself, in one process (no services):

- a ``stateful_batch`` key goes to worker ``SipHash-1-3(key + 0xFF) % workers``
  (``benchmarks/cpu_meter.py``; ``src/operators.rs`` and ``src/timely.rs`` of Bytewax), the same
  in every run and process;
- a worker thread keeps no Python thread state between activations (each ``with_gil`` makes one
  and deletes it), so a ``threading.local`` set in one activation is gone in the next --
  unless the thread state is pinned (``cpu_meter.pin_thread_state``).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSink, cluster_main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import cpu_meter

KEYS = [
    "",
    "0",
    "15",
    "model",
    "card-0000123",
    "ü-ß-€",
    "k" * 7,
    "k" * 8,
    "k" * 9,
    "x" * 300,
    *(f"c{i * 7919}" for i in range(200)),
]


class _Part(StatefulSourcePartition):
    def __init__(self, items: list[Any], batch: int, pin: bool) -> None:
        self._items, self._batch, self._pin = items, batch, pin

    def next_batch(self) -> list[Any]:
        if self._pin:
            cpu_meter.pin_thread_state()
        if not self._items:
            raise StopIteration
        out, self._items = self._items[: self._batch], self._items[self._batch :]
        return out

    def snapshot(self) -> None:
        return None


class _Source(FixedPartitionedSource):
    def __init__(self, items: list[Any], batch: int = 1000, pin: bool = False) -> None:
        self._items, self._batch, self._pin = items, batch, pin

    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Part:
        return _Part(list(self._items), self._batch, self._pin)


class _HandOn(StatefulBatchLogic):
    def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
        return values, False

    def snapshot(self) -> None:
        return None


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_a_stateful_key_goes_to_the_worker_siphash13_names(workers: int) -> None:
    seen: list[tuple[str, int]] = []
    flow = Dataflow("routing")
    keyed = op.key_on("key", op.input("in", flow, _Source(KEYS)), lambda k: k)
    handed = op.stateful_batch("hand_on", keyed, lambda _: _HandOn())
    op.inspect_debug(
        "where", handed, lambda _step, item, _epoch, worker: seen.append((item[0], worker))
    )
    op.output("out", handed, TestingSink([]))
    cluster_main(flow, None, 0, worker_count_per_proc=workers)
    assert sorted(seen) == sorted((k, cpu_meter.bytewax_worker(k, workers)) for k in KEYS)
    assert len({w for _, w in seen}) == workers  # the keys do spread: not all on one worker


def test_siphash13_matches_the_reference_vector() -> None:
    # SipHash-1-3 of the empty input with zero keys, as Rust's DefaultHasher::new() gives it.
    assert cpu_meter.siphash13(b"") == 0xD1FBA762150C532C


@pytest.mark.parametrize("pin", [False, True])
def test_a_worker_thread_keeps_its_thread_locals_only_when_pinned(pin: bool) -> None:
    local = threading.local()
    kept: list[bool] = []

    def remember(x: int) -> int:
        kept.append(getattr(local, "mark", None) == "set")
        local.mark = "set"
        return x

    flow = Dataflow("thread_state")
    items = op.input("in", flow, _Source(list(range(10)), batch=1, pin=pin))
    op.output("out", op.map("remember", items, remember), TestingSink([]))
    cluster_main(flow, None, 0, worker_count_per_proc=1)
    assert len(kept) == 10
    # The first call finds nothing; every later one (a later activation) finds the mark only
    # if the thread state lived on.
    assert kept == [False] + [pin] * 9
