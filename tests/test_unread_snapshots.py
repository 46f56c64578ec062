"""A flow run without a recovery directory takes no snapshot (``dataflows/unread_snapshots.py``)
and computes exactly what it computed with them: real Bytewax flows, run both ways."""

from __future__ import annotations

import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import scoring
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


@pytest.mark.parametrize(
    ("options", "environ", "read"),
    [
        ([], {}, False),
        (["-r", "RECOVERY"], {}, True),
        (["--recovery-dir", "RECOVERY", "-s", "10"], {}, True),  # an abbreviation Bytewax takes
        ([], {"BYTEWAX_RECOVERY_DIRECTORY": "RECOVERY"}, True),
    ],
)
def test_the_entry_point_skips_them_only_without_a_recovery_directory(
    options: list[str],
    environ: dict[str, str],
    read: bool,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``dataflows.scoring.flow`` finds the recovery directory as ``bytewax.run`` does (its
    command line, then its environment) and builds a flow that snapshots only with one."""
    built: list[bool] = []
    monkeypatch.setattr(
        scoring, "build", lambda config, stop, **kw: built.append(kw["snapshots_read"])
    )
    monkeypatch.setattr(scoring, "require_own_recovery", lambda *args: None)  # its own tests
    monkeypatch.setenv("PAYSCORE_METRICS_PORT", "0")
    monkeypatch.delenv("BYTEWAX_RECOVERY_DIRECTORY", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value.replace("RECOVERY", str(tmp_path)))
    argv = ["bytewax.run", "dataflows.scoring:flow"]
    monkeypatch.setattr(sys, "argv", argv + [o.replace("RECOVERY", str(tmp_path)) for o in options])
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        scoring.flow()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert built == [read]
