"""Per-terminal and per-merchant history: payment counts and point-in-time fraud rates.

One class serves both keys; ``prefix`` ("terminal" or "merchant") names the features:
``{prefix}_count_1d``, ``_count_7d``, ``_count_30d``, ``{prefix}_fraud_rate_7d``, ``_30d`` and
``{prefix}_settled_fraud_rate_1d``, ``_7d``, ``_30d``.

Semantics
---------
*Counts* follow :mod:`features.card` exactly: event time, sawtooth windows (1d and 7d with an
hourly hop, 30d with a daily hop), the payment itself not counted, equal times visible to the
later arrival, the same ``lateness`` rule (a payment more than ``lateness`` behind the key's
latest event time is placed at that bound), an exact tail of the last ``lateness`` and
hourly/daily tiles behind it. Zero error relative to that definition.

*Fraud rate* of a payment placed at ``t`` over window ``w``::

    frauds_w(t) / max(payments_w(t), frauds_w(t))        (0.0 when both are 0)

``payments_w(t)`` is ``{prefix}_count_w`` above. ``frauds_w(t)`` counts the fraud labels learned
before this payment arrived whose payment time ``p`` (the labelled payment's own event time, as
the caller passes it) lies in the window (``start_w(t) <= p``) and whose
``reported_at <= t``: a label reported after the payment's event time is not known to it
(point-in-time; delayed feedback). A label reported "before" its own payment is taken as
reported at the payment time. Labels with ``is_fraud=False`` change nothing: with delays of days
to weeks most recent payments have no verdict yet, so the rate is frauds known per payment seen,
not per verdict. The ``max`` keeps the rate in [0, 1] when labels refer to payments this key no
longer counts.

*Settled fraud rate* over window ``w``: the same ratio over the payments made in the whole tiles
``[start_w(t) - D, floor(t / R) * R - D)`` (``D`` is :data:`features.catalog.SETTLED_DELAY`, ``R``
the window's hop): payments old enough for their verdicts to have come. Frauds count as above
(reported by ``t``), and only those whose payment lies in that span. This is the Fraud Detection
Handbook's terminal risk, on tiles: with a label delay near ``D`` the plain 7-day rate is almost
always 0 (no verdict on last week's payments has come), while the settled one is not.

Fraud labels reported before ``watermark - lateness`` are folded into hourly and daily tiles by
payment time; later ones are kept exactly until then.

*State.* At most 337 hourly and 38 daily tiles of payment counts (the settled windows reach back
``D`` further than the others), the same again of fraud counts, the exact tail (payment times of
the last ``lateness``: about 1,000 floats for a merchant taking 100,000 payments a day) and the
fraud labels not yet folded (reported within the last ``lateness`` of the key's event time, or
ahead of it). A label whose payment is older than every window of a payment at ``watermark -
lateness`` is dropped on arrival.

*Expiry and snapshots* as in :mod:`features.card`.

>>> from datetime import datetime, timedelta, timezone
>>> from msgspec.structs import replace
>>> from features.contract import Payment
>>> day = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
>>> base = Payment(transaction_id="t", card_id="c", merchant_id="m", terminal_id="p-1",
...                amount_minor=2000, currency="EUR", mcc="5411", channel="pos", country="FR",
...                event_time=day)
>>> terminal = EntityHistory("terminal")
>>> for minutes in (0, 10, 20, 30):
...     _ = terminal.observe(replace(base, event_time=day + timedelta(minutes=minutes)))
>>> terminal.learn_label(day.timestamp(), (day + timedelta(hours=2)).timestamp(), True)
>>> terminal.observe(replace(base, event_time=day + timedelta(hours=1)))["terminal_fraud_rate_7d"]
0.0
>>> terminal.observe(replace(base, event_time=day + timedelta(hours=3)))["terminal_fraud_rate_7d"]
0.2
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from functools import cache
from typing import Any

from features.catalog import (
    ENTITY_COUNT_WINDOWS,
    ENTITY_FRAUD_WINDOWS,
    ENTITY_SETTLED_WINDOWS,
    LATENESS_SECONDS,
    SETTLED_DELAY,
)
from features.catalog import entity_feature_names as _feature_names
from features.contract import Payment
from features.windows import CountTiles, Window

_HOPS = tuple(
    sorted({w.hop for w in (*ENTITY_COUNT_WINDOWS, *ENTITY_FRAUD_WINDOWS, *ENTITY_SETTLED_WINDOWS)})
)
_COUNT_PLAN = tuple((w.hop, w.hops, _HOPS.index(w.hop)) for w in ENTITY_COUNT_WINDOWS)
_COUNT_NAMES = [w.name for w in ENTITY_COUNT_WINDOWS]
# (hop, level, position of the count window of the same name) per fraud window.
_FRAUD_PLAN = tuple(
    (w.hop, _HOPS.index(w.hop), _COUNT_NAMES.index(w.name)) for w in ENTITY_FRAUD_WINDOWS
)
if any(
    ENTITY_COUNT_WINDOWS[i] != w
    for w, (*_, i) in zip(ENTITY_FRAUD_WINDOWS, _FRAUD_PLAN, strict=True)
):
    raise ValueError("every fraud window needs a count window of the same name, length and hop")
if any(SETTLED_DELAY % w.hop or SETTLED_DELAY <= LATENESS_SECONDS for w in ENTITY_SETTLED_WINDOWS):
    raise ValueError("SETTLED_DELAY must be a whole number of every settled window's hop")
# (hop, level, tiles to shift back, tiles in the window) per settled window.
_SETTLED_PLAN = tuple(
    (w.hop, _HOPS.index(w.hop), SETTLED_DELAY // w.hop, w.hops) for w in ENTITY_SETTLED_WINDOWS
)
# Every window as far back as it reaches: a settled one is its window shifted by the delay.
_ALL = (
    *ENTITY_COUNT_WINDOWS,
    *ENTITY_FRAUD_WINDOWS,
    *(Window(w.name, w.length + SETTLED_DELAY, w.hop) for w in ENTITY_SETTLED_WINDOWS),
)
_KEEP = tuple(max(w.hops for w in _ALL if w.hop == hop) for hop in _HOPS)
_LONGEST = max(_ALL, key=lambda w: w.length + w.hop)
_NO_TIME = float("-inf")

__all__ = ["EntityHistory"]


@cache
def _names(prefix: str) -> tuple[str, ...]:
    return _feature_names(prefix)


class EntityHistory:
    """The state of one terminal or merchant (see module docstring).

    Parameters
    ----------
    prefix
        Start of the feature names: ``"terminal"`` or ``"merchant"``.
    lateness
        As for :class:`features.card.CardHistory`.
    """

    __slots__ = (
        "_counts",
        "_frauds",
        "_label_payment",
        "_label_reported",
        "_lateness",
        "_prefix",
        "_ts",
        "_watermark",
    )

    def __init__(self, prefix: str, lateness: float = LATENESS_SECONDS) -> None:
        if not (prefix.isidentifier() and prefix.islower()):
            raise ValueError(
                f"EntityHistory: prefix must be a lower-case identifier such as 'terminal' or "
                f"'merchant'; got {prefix!r}"
            )
        if not 0 <= lateness < math.inf:
            raise ValueError(
                f"EntityHistory: lateness must be a finite number of seconds >= 0; got {lateness!r}"
            )
        self._prefix = prefix
        self._lateness = float(lateness)
        self._watermark = _NO_TIME
        self._ts: list[float] = []  # exact tail of placed payment times, sorted
        self._counts = tuple(CountTiles(hop) for hop in _HOPS)
        self._label_reported: list[float] = []  # fraud labels not yet folded, by reported_at
        self._label_payment: list[float] = []
        self._frauds = tuple(CountTiles(hop) for hop in _HOPS)  # folded, by payment time

    @property
    def prefix(self) -> str:
        """The start of this history's feature names."""
        return self._prefix

    @property
    def watermark(self) -> float:
        """The latest payment event time seen or expired to (POSIX seconds); ``-inf`` at first."""
        return self._watermark

    def observe(self, payment: Payment) -> dict[str, float]:
        """Features of ``payment`` from what this key saw before it, then count it."""
        s = payment.event_timestamp
        horizon = self._watermark - self._lateness
        t = s if s >= horizon else horizon
        ts = self._ts
        hi = bisect_right(ts, t)
        firsts: list[int] = []  # per count window: its first tile
        counts: list[int] = []
        for hop, hops, level in _COUNT_PLAN:
            first = int(t // hop) - hops
            firsts.append(first)
            counts.append(
                self._counts[level].count_from(first) + hi - bisect_left(ts, first * hop, 0, hi)
            )
        values: list[float] = [float(n) for n in counts]
        known = bisect_right(self._label_reported, t)  # unfolded labels reported by t
        for hop, level, position in _FRAUD_PLAN:
            first = firsts[position]  # the fraud window is its namesake count window
            frauds = self._frauds[level].count_from(first)
            if known:
                start = first * hop
                frauds += sum(p >= start for p in self._label_payment[:known])
            values.append(frauds / max(counts[position], frauds) if frauds else 0.0)
        for hop, level, shift, hops in _SETTLED_PLAN:
            end = int(t // hop) - shift  # whole tiles [end - hops, end): settled payments
            first = end - hops
            lo, up = first * hop, end * hop
            paid = self._counts[level].count_between(first, end)
            if ts and ts[0] < up:
                paid += bisect_left(ts, up, 0, hi) - bisect_left(ts, lo, 0, hi)
            frauds = self._frauds[level].count_between(first, end)
            if known:
                frauds += sum(lo <= p < up for p in self._label_payment[:known])
            values.append(frauds / max(paid, frauds) if frauds else 0.0)

        ts.insert(hi, t)
        if s > self._watermark:
            self._watermark = s
            self._settle(s - self._lateness)
        return dict(zip(_names(self._prefix), values, strict=True))

    def learn_label(self, payment_time: float, reported_at: float, is_fraud: bool) -> None:
        """Take in the verdict on a payment of this key made at ``payment_time``.

        Only frauds count (see module docstring); the label is visible to payments placed at
        ``max(reported_at, payment_time)`` or later. A label for a payment older than every
        window of a payment at ``watermark - lateness`` is ignored.
        """
        if not is_fraud:
            return
        reported = max(reported_at, payment_time)
        horizon = self._watermark - self._lateness
        if horizon != _NO_TIME and payment_time < _LONGEST.start(horizon):
            return
        if reported < horizon:
            for tiles in self._frauds:
                tiles.add(payment_time)
        else:
            k = bisect_right(self._label_reported, reported)
            self._label_reported.insert(k, reported)
            self._label_payment.insert(k, payment_time)

    def _settle(self, base: float) -> None:
        """Fold what happened (or was reported) before ``base``; forget what is out of reach."""
        ts = self._ts
        k = bisect_left(ts, base)
        if k:
            for s in ts[:k]:
                for tiles in self._counts:
                    tiles.add(s)
            del ts[:k]
        k = bisect_left(self._label_reported, base)
        if k:
            for p in self._label_payment[:k]:
                for tiles in self._frauds:
                    tiles.add(p)
            del self._label_reported[:k], self._label_payment[:k]
        for counts, frauds, hop, keep in zip(self._counts, self._frauds, _HOPS, _KEEP, strict=True):
            first = int(base // hop) - keep
            counts.drop_before(first)
            frauds.drop_before(first)
        if self._label_payment and min(self._label_payment) < (reach := _LONGEST.start(base)):
            kept = [i for i, p in enumerate(self._label_payment) if p >= reach]
            self._label_reported = [self._label_reported[i] for i in kept]
            self._label_payment = [self._label_payment[i] for i in kept]

    def expire(self, now: float) -> bool:
        """Advance the watermark to ``now``; fold and forget what no later payment can see.

        As :meth:`features.card.CardHistory.expire`: ``now`` is event time, and payments dated
        at or after ``now - lateness`` get the same features with or without the call. Returns
        True when nothing is left (the caller may discard the key).
        """
        if not math.isfinite(now):
            raise ValueError(f"EntityHistory.expire: now must be finite POSIX seconds; got {now!r}")
        if now > self._watermark:
            self._watermark = now
        self._settle(self._watermark - self._lateness)
        return not (self._ts or self._label_reported or any(self._counts) or any(self._frauds))

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self._prefix,
            self._lateness,
            self._watermark,
            tuple(self._ts),
            tuple(tiles.state() for tiles in self._counts),
            tuple(self._label_reported),
            tuple(self._label_payment),
            tuple(tiles.state() for tiles in self._frauds),
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (
            self._prefix,
            self._lateness,
            self._watermark,
            ts,
            counts,
            reported,
            payment,
            frauds,
        ) = state
        self._ts = list(ts)
        self._label_reported, self._label_payment = list(reported), list(payment)
        self._counts = tuple(CountTiles(hop) for hop in _HOPS)
        self._frauds = tuple(CountTiles(hop) for hop in _HOPS)
        for tiles, tiles_state in zip(
            (*self._counts, *self._frauds), (*counts, *frauds), strict=True
        ):
            tiles.restore(tiles_state)

    def __copy__(self) -> EntityHistory:
        new = EntityHistory.__new__(EntityHistory)
        new._prefix, new._lateness, new._watermark = self._prefix, self._lateness, self._watermark
        new._ts = self._ts.copy()
        new._label_reported = self._label_reported.copy()
        new._label_payment = self._label_payment.copy()
        new._counts = tuple(tiles.copy() for tiles in self._counts)
        new._frauds = tuple(tiles.copy() for tiles in self._frauds)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> EntityHistory:
        # Every list holds numbers: copying the lists suffices.
        return self.__copy__()

    def __repr__(self) -> str:
        return (
            f"EntityHistory({self._prefix!r}, watermark={self._watermark}, tail={len(self._ts)}, "
            f"tiles={[len(t) for t in self._counts]}, labels={len(self._label_reported)})"
        )
