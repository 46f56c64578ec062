"""The review queue's backtest limits (one at a time per user, a few in all, off the event
loop) and the inline SVG line chart its backtest page draws."""

from __future__ import annotations

import asyncio
import threading
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from review.backtests import BacktestBusyError, Backtests
from rules.ruleset import RuleSpec
from storage.svg_charts import MARKED_POINTS, line_chart

SINCE, UNTIL = datetime(2026, 1, 1), datetime(2026, 2, 1)
DRAFT = [RuleSpec("r", "review if amount_eur > 1")]


class Gate:
    """A runner that waits for the test to open it (in a worker thread, never the loop)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started = threading.Semaphore(0)
        self.threads: list[int] = []
        self.calls: list[dict[str, Any]] = []

    def __call__(self, url: str, draft: list[RuleSpec], **options: Any) -> str:
        self.threads.append(threading.get_ident())
        self.calls.append({"url": url, "draft": draft, **options})
        self.started.release()
        assert self.opened.wait(10)
        return "report"


async def _started(gate: Gate) -> None:
    assert await asyncio.to_thread(gate.started.acquire, True, 10)


def test_one_backtest_per_user_and_at_most_at_once_in_all_each_in_a_thread() -> None:
    async def scenario() -> None:
        gate = Gate()
        runs = Backtests("mysql://u", timeout=7.5, at_once=2, runner=gate)
        first = asyncio.create_task(runs.run("alice", DRAFT, since=SINCE, until=UNTIL))
        await _started(gate)
        with pytest.raises(BacktestBusyError, match="alice has a backtest running"):
            await runs.run("alice", DRAFT, since=SINCE, until=UNTIL)
        second = asyncio.create_task(runs.run("bob", DRAFT, since=SINCE, until=UNTIL))
        await _started(gate)
        with pytest.raises(BacktestBusyError, match=r"2 backtests are running \(at most 2"):
            await runs.run("carol", DRAFT, since=SINCE, until=UNTIL)
        assert runs.running() == 2
        gate.opened.set()
        assert await first == "report"
        assert await second == "report"
        assert runs.running() == 0
        assert await runs.run("alice", DRAFT, since=SINCE, until=UNTIL) == "report"
        assert threading.main_thread().ident not in gate.threads
        assert gate.calls[0] == {
            "url": "mysql://u", "draft": DRAFT, "since": SINCE, "until": UNTIL,
            "replace": False, "timeout": 7.5,
        }  # fmt: skip

    asyncio.run(scenario())


def test_a_failed_backtest_frees_the_users_slot() -> None:
    def failing(*args: Any, **kwargs: Any) -> None:
        raise ValueError("refused: rule r: no")

    async def scenario() -> None:
        runs = Backtests("mysql://u", timeout=1, runner=failing)
        for _ in range(2):
            with pytest.raises(ValueError, match="refused"):
                await runs.run("alice", DRAFT, since=SINCE, until=UNTIL)
        assert runs.running() == 0

    asyncio.run(scenario())


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout > 0"):
        Backtests("u", timeout=0)
    with pytest.raises(ValueError, match="at_once >= 1"):
        Backtests("u", timeout=1, at_once=0)


names = st.text(max_size=30)


@given(
    st.lists(names, max_size=MARKED_POINTS + 20).flatmap(
        lambda columns: st.tuples(
            st.just(columns),
            st.dictionaries(
                names,
                st.lists(
                    st.floats(0, 1e9, allow_nan=False),
                    min_size=len(columns),
                    max_size=len(columns),
                ),
                max_size=4,
            ),
        )
    ),
    names,
)
def test_a_line_chart_is_well_formed_svg_whatever_its_text(case, title) -> None:
    columns, series = case
    try:
        svg = line_chart(columns, series, ["#123456", "red"], title=title)
    except ValueError:
        pytest.fail("a chart of matching lengths must be drawn")

    def shown(t: str) -> str:
        return "".join(c if c.isprintable() else "?" for c in t)

    root = ET.fromstring(svg)  # well-formed: every text escaped
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == len(series)
    markers = root.findall(f"{ns}circle")
    assert len(markers) == (len(columns) * len(series) if len(columns) <= MARKED_POINTS else 0)
    assert not root.findall(f".//{ns}script")
    texts = "".join(root.itertext())
    assert shown(title) in texts
    assert all(shown(name) in texts for name in series)
    if series and len(columns) <= MARKED_POINTS:
        assert all(shown(column) in texts for column in columns)


def test_a_line_chart_refuses_series_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="series 'a' has 1 values, expected one per column"):
        line_chart(["d1", "d2"], {"a": [1]}, ["red"], title="t")
