"""The call trace (``PAYSCORE_CALL_TRACE_DIR``, ``dataflows/call_trace.py``) and what
``benchmarks/epoch_close_trace.py`` reads from it: every guarded call of a real Bytewax flow
is written once, and an epoch close's pause splits into parts that add up."""

from __future__ import annotations

import sys
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows import call_trace
from dataflows.call_trace import CallTrace
from dataflows.failures import log_failures

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from epoch_close_trace import READER, Call, closes_of, read_calls, split


def test_a_missing_folder_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a folder this process can write to") as caught:
        CallTrace(tmp_path / "nowhere")
    assert "nowhere" in str(caught.value)


def test_every_call_kept_is_written_once_and_the_rest_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(call_trace, "MAX_CALLS", 1000)
    trace = CallTrace(tmp_path)
    assert trace.path.exists()  # made at start: a folder it cannot write to fails then
    for i in range(1234):
        trace.record(float(i), i + 0.5, "step\twith a tab" if i % 2 else "other", "on_batch", i % 7)
    trace.close()
    trace.close()  # again: nothing more
    calls = read_calls(trace.path)
    assert [c.started for c in calls] == [float(i) for i in range(1000)]
    assert [c.step for c in calls[:2]] == ["other", "step with a tab"]
    assert [c.items for c in calls] == [i % 7 for i in range(1000)]
    assert trace.path.read_text().endswith("# 234 later calls not kept (MAX_CALLS)\n")


def test_a_guarded_flow_writes_each_step_call(tmp_path: Path) -> None:
    """A real Bytewax flow, guarded with a trace: its mapper, stateful logic (batches and
    snapshots) and sink calls are in the file, with their batches' lengths."""
    flow = Dataflow("traced")
    numbers = op.input("read", flow, TestingSource(list(range(10)), batch_size=5))
    doubled = op.map("double", numbers, lambda x: 2 * x)
    keyed = op.key_on("key", doubled, lambda x: str(x % 3))
    summed = op.stateful_map("sum", keyed, lambda s, x: ((s or 0) + x, (s or 0) + x))
    out: list = []
    op.output("out", summed, TestingSink(out))
    trace = CallTrace(tmp_path)
    run_main(log_failures(flow, trace))
    trace.close()
    calls = read_calls(trace.path)
    by = {(c.step, c.what) for c in calls}
    assert ("traced.double.flat_map_batch", "mapper_batch") in by
    assert any(step.startswith("traced.sum") and what == "on_batch" for step, what in by)
    assert any(step.startswith("traced.sum") and what == "snapshot" for step, what in by)
    assert ("traced.out", "write_batch") in by
    mapped = [c.items for c in calls if c.step == "traced.double.flat_map_batch"]
    assert sum(mapped) == 10
    running: dict[int, int] = {}
    expected = []
    for y in (2 * x for x in range(10)):
        running[y % 3] = running.get(y % 3, 0) + y
        expected.append((str(y % 3), running[y % 3]))
    assert sorted(out) == sorted(expected)  # the trace changes nothing the flow computes
    assert all(c.ended >= c.started for c in calls)


spans = st.lists(
    st.tuples(
        st.floats(0, 1), st.floats(0, 0.2), st.sampled_from(["snapshot", "write_batch", "on_batch"])
    ),
    max_size=40,
)


@given(spans, st.floats(0.05, 1.0))
@settings(max_examples=200, deadline=None)
def test_the_pause_splits_into_parts_that_add_up(calls: list, pause: float) -> None:
    """Outside Python is the pause less the time some call ran (overlaps counted once): never
    negative, never more than the pause; the parts' busy time covers the rest."""
    made = [Call(a, a + d, 1, f"s{i % 3}", what, 1) for i, (a, d, what) in enumerate(calls)]
    close = split(0.0, pause, made)
    busy = sum(close.snapshots.values()) + close.sink + close.other
    assert -1e-9 <= close.outside <= pause + 1e-9
    assert busy + close.outside >= pause - 1e-9  # the busy parts may overlap, never fall short
    assert 0.0 <= close.tail <= pause + 1e-9


def test_a_close_is_found_with_its_pause(tmp_path: Path) -> None:
    """Two readers close at 10.000 and 10.002, the steps snapshot, reads come back at 10.200:
    one close, a pause of 200 ms, the card step's keys counted."""
    part = f"{READER} 0-payments)"
    calls = [
        Call(9.9, 9.91, 1, part, "next_batch", 5),
        Call(9.95, 9.99, 1, "store", "write_batch", 5),
        Call(10.0, 10.0, 1, part, "snapshot", -1),
        Call(10.002, 10.002, 1, f"{READER} 2-payments)", "snapshot", -1),
        Call(10.01, 10.03, 1, "store", "write_batch", 3),
        *[Call(10.05 + i / 1e3, 10.0505 + i / 1e3, 1, "card", "snapshot", -1) for i in range(50)],
        Call(10.15, 10.16, 1, part, "next_batch", 0),
        Call(10.2, 10.21, 1, part, "next_batch", 7),
    ]
    (close,) = closes_of(calls, 0.0, 100.0)
    assert close.at == 10.0
    assert close.pause == pytest.approx(0.2)
    assert close.tail == pytest.approx(0.03)
    assert close.keys == {"card": 50}
    assert close.snapshots["card"] == pytest.approx(0.025)
    assert close.sink == pytest.approx(0.02)
