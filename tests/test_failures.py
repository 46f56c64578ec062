"""Whatever stops the flow is logged with its Python cause first, also where Bytewax prints only
``PanicException: Send thread panic`` (several processes)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow, Operator
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSource, run_main
from confluent_kafka import Producer
from sqlalchemy import Engine, text

from dataflows.core_steps import replace_in_core_steps
from dataflows.failures import log_failures
from test_data.chaos import wait_for
from test_data.ports import free_ports
from tests import failing_flow
from tests.flowrun import BROKERS, flow_env, logged, stop

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("where", ["mapper", "logic", "source", "sink"])
def test_a_failure_anywhere_is_logged_once_with_its_step_and_bounded_traceback(
    where: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(failing_flow, "FAIL_AT", where)
    flow = failing_flow.build(configure_logs=False)
    with pytest.raises(Exception, match="error"):  # Bytewax's own error, ours its cause
        run_main(flow)
    failures = [r for r in caplog.records if getattr(r, "event", "") == "step_failed"]
    assert len(failures) == 1, [r.getMessage()[:200] for r in failures]
    text = failures[0].getMessage()
    assert f"ValueError: {where} broke: the cause is xxx" in text
    assert "Traceback (most recent call last)" in text and "failing_flow.py" in text
    assert "characters cut]" in text and len(text) < 9_000  # bounded, whatever the message
    assert "\x00" not in text and "\\x00" in text
    assert failures[0].reason.startswith("failing.")  # the step's id


def test_every_step_of_a_built_flow_is_guarded_once() -> None:
    flow = failing_flow.build(configure_logs=False)
    names = [step.step_id for step in _core_steps(flow.substeps)]
    assert "failing.check.flat_map_batch" in names and "failing.out" in names
    again = log_failures(flow)  # guarding twice must not log twice either: see above
    assert [step.step_id for step in _core_steps(again.substeps)] == names


def _core_steps(steps: list) -> list:
    out = []
    for step in steps:
        out += _core_steps(step.substeps) if step.substeps else [step]
    return out


@pytest.mark.parametrize("where", ["mapper", "sink"])
def test_with_two_processes_the_cause_is_logged_before_bytewax_s_panic(
    where: str, tmp_path: Path
) -> None:
    port = free_ports(2)
    addresses = f"127.0.0.1:{port};127.0.0.1:{port + 1}"
    env = os.environ | {"FAIL_AT": where, "PYTHONPATH": str(ROOT)}
    # Each process's error output in a file: with pipes read one process after the other, the
    # second could fill its pipe and block while the first waits for it; and both are killed
    # if they outlive the bound, not left to the next test.
    logs = [tmp_path / f"p{i}.err" for i in range(2)]
    procs = []
    try:
        for i in range(2):
            command = [sys.executable, "-m", "bytewax.run", "tests.failing_flow:flow",
                       "-w", "1", "-i", str(i), "-a", addresses]  # fmt: skip
            with logs[i].open("wb") as err:
                procs.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
                    )
                )
        for p in procs:
            p.wait(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    errors = [log.read_text(errors="replace") for log in logs]
    assert all(p.returncode != 0 for p in procs)
    assert all("PanicException: Send thread panic" in err for err in errors)  # all Bytewax says
    failed = [err for err in errors if f"ValueError: {where} broke" in err]
    assert failed, errors
    for err in failed:  # the process that failed logged the cause, before Bytewax's panic
        assert "CRITICAL dataflows.failures: failing." in err
        assert err.index(f"ValueError: {where} broke") < err.index("PanicException")


@pytest.mark.integration
def test_the_scoring_flow_logs_why_it_stops_before_bytewax_s_panic(
    topics: dict[str, str], mysql_url: str, admin_engine: Engine, models: Path, tmp_path: Path
) -> None:
    """A deployment error (the dead-letter table dropped while the flow runs) under two
    processes: each process that met it logs the MySQL error, bounded, with the step, before
    Bytewax's panic. (Dropped before the start, the table is refused by the start's schema
    check, dataflows/schema_check.py, before any step runs.)"""
    env = {"FLOW_METRICS": "0", "FLOW_BASE_PORT": str(free_ports(2))}
    log = tmp_path / "flow.log"
    with log.open("wb") as out:
        flow = subprocess.Popen(
            ["bash", str(ROOT / "ops" / "run_flow.sh"), "2", "2"],
            env=flow_env(topics, mysql_url, models, tail="true") | env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    try:
        wait_for("both processes built", lambda: len(logged(log, "flow built:")) >= 2, 180)
        with admin_engine.begin() as c:
            c.execute(text("DROP TABLE dead_letters"))
        producer = Producer({"bootstrap.servers": BROKERS})
        for partition in range(4):
            producer.produce(topics["payments_topic"], value=b"not json", partition=partition)
        assert producer.flush(30) == 0
        flow.wait(timeout=300)
    finally:
        stop(flow)
    done = subprocess.CompletedProcess(
        flow.args, flow.returncode, "", log.read_text("utf-8", "replace")
    )
    assert done.returncode != 0
    cause = done.stderr.find("CRITICAL dataflows.failures: payscore.store_payments_dead_letters")
    assert cause >= 0, done.stderr[-3000:]
    assert "dead_letters' doesn't exist" in done.stderr[cause:]
    panic = done.stderr.find("PanicException")
    assert panic == -1 or cause < panic


class _Counter(StatefulBatchLogic):
    def __init__(self, resume: int | None) -> None:
        self.n = resume or 0

    def on_batch(self, values: list[int]) -> tuple[Iterator[int], bool]:
        self.n += len(values)
        return iter([self.n]), self.RETAIN  # a generator's values: listed inside the guard

    def snapshot(self) -> int:
        return self.n


def test_a_guarded_key_logic_costs_the_collector_one_object_a_key() -> None:
    """A process holds one logic per key of every stateful step, and a full collection walks
    every object they hold: the guard adds the wrapper itself, no closures per key."""
    flow = Dataflow("guarded_logic")
    keyed = op.key_on("key", op.input("in", flow, TestingSource([1])), str)
    op.stateful_batch("count", keyed, _Counter)
    builders: list = []

    def take(step: Operator) -> dict:
        if hasattr(step, "builder"):
            builders.append(step.builder)
        return {}

    replace_in_core_steps(log_failures(flow).substeps, take)
    (build,) = builders
    logic = build(2)
    assert logic.on_batch([7, 8]) == ([4], logic.RETAIN) and logic.snapshot() == 4

    def tracked_per_key(make: Callable[[], object]) -> float:
        gc.collect()
        before = len(gc.get_objects())
        held = [make() for _ in range(500)]
        gc.collect()
        grown = len(gc.get_objects()) - before
        del held
        return grown / 500

    bare, guarded = tracked_per_key(lambda: _Counter(None)), tracked_per_key(lambda: build(None))
    assert guarded - bare <= 1.1, (bare, guarded)
