"""When payments happen: the simulated days, each city's local midnights and its UTC offsets.

Times are integer milliseconds since the epoch (UTC) throughout the generator; an event gets its
local offset only when it is written out, from the city it happened in.

>>> from datetime import date
>>> t = Timeline.build(date(2026, 3, 28), days=3)
>>> berlin = geography.CITY_NAMES.index("Berlin")
>>> noon = t.midnight_ms[berlin] + 12 * HOUR_MS
>>> (t.offset_seconds(np.full(3, berlin), noon) // 3600).tolist()
[1, 2, 2]
>>> t.weekday.tolist()
[5, 6, 0]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from test_data import geography

IntArray = npt.NDArray[np.int64]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Offsets are tabulated from two days before the first day to this many days after the last, enough
# for every place's local days and for fraud that runs on past the last day.
_PAD_BEFORE_DAYS = 2
_PAD_AFTER_DAYS = 5


@dataclass(frozen=True, eq=False)
class Timeline:
    """The simulated days: ``days`` local days from ``start`` in every city."""

    start: date
    days: int
    midnight_ms: IntArray  # (N_CITIES, days) local midnight of each day in each city
    weekday: IntArray  # (days,) Monday is 0
    start_ms: int  # the first local midnight anywhere: no event comes earlier
    end_ms: (
        int  # the last local midnight that ends the last day anywhere: no event comes at or after
    )
    _first_hour_ms: int
    _offsets: IntArray  # (N_CITIES, hours) UTC offset in seconds per whole UTC hour

    @classmethod
    def build(cls, start: date, days: int) -> Timeline:
        first_hour = geography.start_of_day_utc(start - timedelta(days=_PAD_BEFORE_DAYS))
        hours = 24 * (days + _PAD_BEFORE_DAYS + _PAD_AFTER_DAYS)
        midnight_ms = geography.local_midnights(start, days + 1) * 1000
        return cls(
            start=start,
            days=days,
            midnight_ms=midnight_ms[:, :days],
            weekday=(start.weekday() + np.arange(days, dtype=np.int64)) % 7,
            start_ms=int(midnight_ms[:, 0].min()),
            end_ms=int(midnight_ms[:, days].max()),
            _first_hour_ms=int(first_hour.timestamp()) * 1000,
            _offsets=geography.utc_offsets(first_hour, hours),
        )

    def offset_seconds(self, city: IntArray, at_ms: IntArray) -> IntArray:
        """UTC offset in seconds of ``city`` at the instants ``at_ms``."""
        hour = (np.asarray(at_ms) - self._first_hour_ms) // HOUR_MS
        if hour.size and (hour.min() < 0 or hour.max() >= self._offsets.shape[1]):
            last_ms = self._first_hour_ms + self._offsets.shape[1] * HOUR_MS
            raise ValueError(
                "instant outside the simulated period: UTC offsets are known from "
                f"{self._first_hour_ms} to {last_ms} ms; got {hour.min()}..{hour.max()} hours in"
            )
        return np.asarray(self._offsets[city, hour], dtype=np.int64)

    def local_times(
        self, city: IntArray, day: IntArray, hour: IntArray, rng: np.random.Generator
    ) -> IntArray:
        """Instants on local ``day`` at local ``hour`` (a random moment within it) in ``city``."""
        within = rng.integers(0, HOUR_MS, len(city))
        return np.asarray(self.midnight_ms[city, day] + hour * HOUR_MS + within, dtype=np.int64)
