"""Backtests started from the review queue: off the event loop, bounded in time, one at a time
per user and a few at a time in all.

A backtest (:func:`rules.backtest.backtest`) reads every stored payment of its range and can
take seconds. The page's request waits for it in Starlette's thread pool, never on the event
loop; the backtest itself runs in a new interpreter that is killed after ``timeout`` seconds
(``PAYSCORE_REVIEW_BACKTEST_SECONDS``), so a thread never waits longer than that. A user who has
a backtest running, or a request that comes while ``at_once`` backtests run, is refused at once
with :class:`BacktestBusyError` (the page answers 429): nothing queues up behind a slow one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from starlette.concurrency import run_in_threadpool

from rules import backtest as backtests
from rules.ruleset import RuleSpec

Runner = Callable[..., backtests.BacktestReport]


class BacktestBusyError(RuntimeError):
    """A backtest refused because the user has one running, or too many run at once."""


class Backtests:
    """The backtests of one review application (see the module)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        at_once: int = 2,
        runner: Runner = backtests.backtest,
    ) -> None:
        if timeout <= 0 or at_once < 1:
            raise ValueError(
                f"backtests: expected timeout > 0 and at_once >= 1; got {timeout}, {at_once}"
            )
        self._url = url
        self.timeout = timeout
        self.at_once = at_once
        self._runner = runner
        self._lock = threading.Lock()
        self._running: set[str] = set()

    @contextmanager
    def _slot(self, user: str) -> Iterator[None]:
        with self._lock:
            if user in self._running:
                raise BacktestBusyError(
                    f"{user} has a backtest running: wait for its result before starting another"
                )
            if len(self._running) >= self.at_once:
                raise BacktestBusyError(
                    f"{len(self._running)} backtests are running (at most {self.at_once} at "
                    "once): try again in a moment"
                )
            self._running.add(user)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(user)

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    async def run(
        self,
        user: str,
        draft: Sequence[RuleSpec],
        *,
        since: datetime,
        until: datetime,
        replace: bool = False,
    ) -> backtests.BacktestReport:
        """``draft`` backtested for ``user`` (see the module); ValueError for a refused draft,
        :class:`rules.backtest.BacktestTimeoutError` when it ran out of time."""
        with self._slot(user):
            return await run_in_threadpool(
                self._runner,
                self._url,
                list(draft),
                since=since,
                until=until,
                replace=replace,
                timeout=self.timeout,
            )
