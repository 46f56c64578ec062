"""A new attack pattern that starts after go-live: the drift scenario of both simulators.

``cash_out_burst``: from ``start_day`` on, every day ``cards_per_day`` cards are taken over and
cashed out in person, near the cardholder's home, in one burst: ``payments`` (4 to 8) payments a
few minutes apart (``gap_minutes``, 2 to 10) at as many different shops or terminals, each of an
everyday amount (``amount_eur``, 40 to 120 EUR), in the daytime (``hours``, 8:00 to 20:00 UTC).
Neither simulator has anything like it before ``start_day``: the handbook's frauds are amounts
over a threshold, compromised terminals and compromised customers' multiplied amounts, and this
project's generator's bursts are card tests of tiny amounts, online and at night. What gives it
away is the card's count, sum and distinct merchants over the last hour and day and the seconds
since its previous payment, features every model has, but whose meaning for fraud a model
pre-trained before ``start_day`` never saw.

:func:`bursts` draws the bursts (which card, when, which of its places, what amount) with a
generator of its own, so that switching the drift on leaves the rest of a stream's randomness
as it was. Each simulator places them in its own world (:mod:`test_data.handbook`,
:mod:`test_data.generator`).

>>> plan = bursts(DriftSpec(start_day=2, cards_per_day=3), days=4, cards=np.arange(50),
...               rng=np.random.default_rng(0))
>>> int(plan.day.min()), int(plan.day.max()), len(np.unique(plan.burst))
(2, 3, 6)
>>> bool((plan.amount_eur >= 40).all() and (plan.amount_eur <= 120).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NEW_PATTERN = "cash_out_burst"
DAY_SECONDS = 86_400


@dataclass(frozen=True, kw_only=True)
class DriftSpec:
    """When the new pattern starts and how it looks (see the module docstring)."""

    start_day: int = 46
    cards_per_day: int = 10
    payments: tuple[int, int] = (4, 8)
    gap_minutes: tuple[float, float] = (2.0, 10.0)
    amount_eur: tuple[float, float] = (40.0, 120.0)
    hours: tuple[float, float] = (8.0, 20.0)

    def __post_init__(self) -> None:
        problems = []
        if self.start_day < 0:
            problems.append(f"start_day must be >= 0; got {self.start_day}")
        if self.cards_per_day < 1:
            problems.append(f"cards_per_day must be >= 1; got {self.cards_per_day}")
        for name in ("payments", "gap_minutes", "amount_eur", "hours"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                problems.append(f"{name} must be (low, high) with 0 < low <= high; got {low, high}")
        if self.payments[0] < 2:
            problems.append(f"a burst needs at least 2 payments; got {self.payments}")
        if self.hours[1] > 23.0:
            problems.append(f"hours must end by 23:00 (a burst stays in its day); got {self.hours}")
        if problems:
            raise ValueError("DriftSpec: " + "; ".join(problems))


@dataclass(frozen=True, eq=False)
class Bursts:
    """One row per payment of the pattern: its burst, card, day, second of the day (from
    midnight UTC), rank in its burst and amount in EUR (cents rounded)."""

    burst: npt.NDArray[np.int64]
    card: npt.NDArray[np.int64]
    day: npt.NDArray[np.int64]
    second: npt.NDArray[np.int64]
    rank: npt.NDArray[np.int64]
    amount_eur: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.burst)


def bursts(
    spec: DriftSpec, *, days: int, cards: npt.NDArray[np.int64], rng: np.random.Generator
) -> Bursts:
    """Every burst from ``spec.start_day`` to the last of ``days``, on cards drawn from ``cards``
    (distinct within a day)."""
    burst_days = np.arange(spec.start_day, days, dtype=np.int64)
    per_day = min(spec.cards_per_day, len(cards))
    if not len(burst_days) or per_day == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Bursts(empty, empty, empty, empty, empty, np.zeros(0))
    card = np.concatenate([rng.choice(cards, per_day, replace=False) for _ in burst_days])
    day = np.repeat(burst_days, per_day)
    n = len(card)
    size = rng.integers(spec.payments[0], spec.payments[1] + 1, n)
    begin = rng.uniform(spec.hours[0], spec.hours[1], n) * 3600.0
    total = int(size.sum())
    burst = np.repeat(np.arange(n, dtype=np.int64), size)
    gaps = rng.uniform(spec.gap_minutes[0], spec.gap_minutes[1], total) * 60.0
    first = np.r_[0, np.cumsum(size)[:-1]]
    rank = np.arange(total, dtype=np.int64) - np.repeat(first, size)
    gaps[rank == 0] = 0.0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[first], size)
    second = np.minimum(begin[burst] + offset, DAY_SECONDS - 1).astype(np.int64)
    amount = np.round(rng.uniform(spec.amount_eur[0], spec.amount_eur[1], total), 2)
    return Bursts(burst, card[burst], day[burst], second, rank, amount)
