"""Pacing: a token bucket that spreads sends evenly at a target rate.

The bucket holds up to ``burst`` tokens and refills at ``rate`` per second. :meth:`TokenBucket.take`
never refuses: it takes the tokens (going into debt if need be) and says how long to wait before
sending, so a caller that sleeps as told sends at ``rate`` on average, and one that oversleeps
catches up from the tokens that accrued meanwhile. The clock is injected, so pacing is tested
without sleeping:

>>> now = [0.0]
>>> bucket = TokenBucket(rate=10.0, burst=2.0, clock=lambda: now[0])
>>> [bucket.take() for _ in range(4)]
[0.0, 0.0, 0.1, 0.2]
>>> now[0] = 1.0
>>> bucket.take()
0.0
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Paces events to ``rate`` per second, allowing bursts of up to ``burst`` events."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 events per second; got {rate}")
        capacity = max(1.0, rate / 20) if burst is None else burst  # default: 50 ms of events
        if capacity < 1:
            raise ValueError(f"burst must be >= 1 event; got {burst}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._last = clock()

    def take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens; return the seconds to wait before sending them (0.0: send now)."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else round(-self._tokens / self.rate, 9)
