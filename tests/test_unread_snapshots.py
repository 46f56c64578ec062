"""A flow run without a recovery directory takes no snapshot (``dataflows/unread_snapshots.py``)
and computes exactly what it computed with them: real Bytewax flows, run both ways."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.failures import log_failures
from dataflows.unread_snapshots import skip_unread_snapshots


class Totals(StatefulBatchLogic):
    """A running total per key, counting the snapshots Bytewax asks of it."""

    taken: ClassVar[list[int]] = []

    def __init__(self, resume: Any) -> None:
        self.total = resume or 0

    def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
        out = []
        for value in values:
            self.total += value
            out.append(self.total)
        return out, self.RETAIN

    def snapshot(self) -> int:
        Totals.taken.append(self.total)
        return self.total


def numbers_flow(numbers: list[int], out: list[Any]) -> Dataflow:
    """Two stateful steps, one of them inside a composite operator (``stateful_map``)."""
    flow = Dataflow("numbers")
    read = op.input("read", flow, TestingSource(numbers, batch_size=3))
    keyed = op.key_on("key", read, lambda x: str(x % 4))
    totals = op.stateful_batch("totals", keyed, Totals)
    counted = op.stateful_map("count", totals, lambda n, _: ((n or 0) + 1, (n or 0) + 1))
    op.output("out", counted, TestingSink(out))
    return flow


def run(numbers: list[int], *, skip: bool) -> tuple[list[Any], int]:
    """The flow's outputs and the snapshots its ``totals`` step took, each epoch one batch."""
    out: list[Any] = []
    Totals.taken = []
    flow = numbers_flow(numbers, out)
    if skip:
        flow = skip_unread_snapshots(flow)
    run_main(log_failures(flow), epoch_interval=timedelta(0))
    return out, len(Totals.taken)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=40))
def test_the_outputs_are_those_of_a_flow_that_snapshots(numbers: list[int]) -> None:
    taken_out, taken = run(numbers, skip=False)
    skipped_out, skipped = run(numbers, skip=True)
    assert skipped_out == taken_out
    assert taken >= 1  # the flow as Bytewax runs it snapshots at each epoch's close
    assert skipped == 0


def test_every_stateful_step_is_reached_composite_ones_included() -> None:
    """``stateful_map`` is a composite around a ``stateful_batch``: its logic skips too."""
    out: list[Any] = []
    flow = skip_unread_snapshots(numbers_flow([1, 2, 3], out))
    builders = []

    def visit(steps: list[Any]) -> None:
        for step in steps:
            if step.substeps:
                visit(step.substeps)
            elif hasattr(step, "builder"):
                builders.append(step)

    visit(flow.substeps)
    assert len(builders) == 2
    for step in builders:
        assert step.builder(None).snapshot() is None
