"""``ops/create_topics.py`` returns only once the broker reports the payments topic's new
timestamp type: the broker applies an altered setting a moment after answering, and a flow
started in between refused to start (review of the test races, this round). A fake admin client
that goes on reporting the old value for a while (the broker's part is the integration test's,
``tests/test_reused_ids_integration.py``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "create_topics", ROOT / "ops" / "create_topics.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


create_topics = _load()


class _Done:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> Any:
        return self._value


class _Entry:
    def __init__(self, value: str) -> None:
        self.value = value


class _Keyed(dict):
    """Any resource answers (the real client keys its futures by the resource passed)."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self._value = value

    def __getitem__(self, key: object) -> Any:
        return self._value


class _Broker:
    """Reports ``CreateTime`` until ``lag`` descriptions after the alteration."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.altered = False
        self.described = 0

    def describe_configs(self, resources: list[object]) -> _Keyed:
        self.described += 1
        applied = self.altered and self.lag <= 0
        if self.altered:
            self.lag -= 1
        value = "LogAppendTime" if applied else "CreateTime"
        return _Keyed(_Done({"message.timestamp.type": _Entry(value)}))

    def incremental_alter_configs(self, resources: list[object]) -> _Keyed:
        self.altered = True
        return _Keyed(_Done(None))


@pytest.mark.parametrize("lag", [0, 1, 5])
def test_returns_only_once_the_broker_reports_append_time(
    lag: int, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = _Broker(lag)
    create_topics.append_time_on(broker, "payments", poll=0)
    assert broker.altered and broker.lag < 0  # the last description showed the change
    assert "altered from CreateTime to LogAppendTime" in capsys.readouterr().err


def test_a_change_the_broker_never_applies_fails_naming_the_topic() -> None:
    broker = _Broker(10**9)
    with pytest.raises(RuntimeError, match=r"'payments' still reports message.timestamp.type="):
        create_topics.append_time_on(broker, "payments", within=0.05, poll=0.01)


def test_a_topic_already_on_append_time_is_left_alone() -> None:
    broker = _Broker(0)
    broker.altered = True  # reports LogAppendTime from the start
    create_topics.append_time_on(broker, "payments", poll=0)
    assert broker.described == 1


class _PolicyBroker(_Broker):
    """Reports ``cleanup.policy`` ``before`` until altered (then ``compact``)."""

    def __init__(self, before: str) -> None:
        super().__init__(0)
        self.before = before

    def describe_configs(self, resources: list[object]) -> _Keyed:
        self.described += 1
        value = "compact" if self.altered else self.before
        return _Keyed(_Done({"cleanup.policy": _Entry(value)}))


@pytest.mark.parametrize(("before", "altered"), [("delete", True), ("compact,delete", False)])
def test_an_existing_decisions_topic_is_compacted_and_a_compacting_one_left_alone(
    before: str, altered: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = _PolicyBroker(before)
    create_topics.compaction_on(broker, "decisions", poll=0)
    assert broker.altered is altered
    said = capsys.readouterr().err
    assert ("cleanup.policy altered from delete to compact" in said) is altered


@pytest.mark.parametrize(("argv", "status"), [(["--help"], 0), (["--partitions", "8"], 2)])
def test_the_script_takes_no_argument_and_reaches_no_broker_for_one(
    argv: list[str], status: int
) -> None:
    """Before: every argument was ignored (``python ops/create_topics.py --help`` made the
    topics); here no broker listens, so a run that went on would fail on it."""
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PAYSCORE_KAFKA_BROKERS": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "ops/create_topics.py", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == status, done.stderr
    assert "[topics]" not in done.stderr
    assert (done.stdout if status == 0 else done.stderr).startswith("usage: ")


@pytest.mark.parametrize(
    ("env", "status", "said"),
    [
        ({"PAYSCORE_TOPIC_PARTITIONS": "four"}, 2, "PAYSCORE_TOPIC_PARTITIONS='four'"),
        # Nothing listens on port 1: the broker is named, and where it came from.
        ({"PAYSCORE_KAFKA_BROKERS": "127.0.0.1:1"}, 1, "127.0.0.1:1 (PAYSCORE_KAFKA_BROKERS)"),
    ],
)
def test_a_setting_or_a_broker_it_cannot_use_is_one_line_not_a_traceback(
    env: dict[str, str], status: int, said: str
) -> None:
    """Before: a traceback ending in ``RuntimeError: creating Kafka topic 'payments' failed:
    ... Timed out``, naming no broker (ops/services.sh runs it)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "ops" / "create_topics.py")],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == status, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("[topics]")]
    assert len(lines) == 1 and said in lines[0], done.stderr[-2000:]
    assert lines[0].startswith("[topics] refused: ") or lines[0].startswith("[topics] failed: ")
