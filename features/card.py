"""Per-card history: point-in-time behavioural features, exact, in state bounded by time.

Semantics
---------
*Event time.* Everything is placed by the payment's ``event_time``, never by arrival. A payment
at time ``t`` sees the payments of the same card that arrived **before** it and whose (placed)
time is ``<= t``; its own amount is never in its windows. Payments with equal times are visible
to those that arrive after them. An out-of-order payment sees the earlier arrivals dated at or
before it, not those dated after it; a payment never sees one that arrives after it.

*Windows.* Sawtooth windows (:mod:`features.windows`): the window ``w`` of a payment at ``t``
spans ``[start_w(t), t]`` with ``start_w`` the hop boundary ``W`` before the hop of ``t``:
1h (hop 5 min), 24h (hop 1 h), 7d (hop 1 h) and 30d (hop 1 day). Distinct merchants use the
24h window; the new-merchant flag, the usual country (the most frequent ones; ties are all
usual) and the 30-day mean use the 30d window. The previous payment is the latest (by placed
time, then arrival) earlier arrival placed at or before ``t`` and at most 30 days before it;
speed is the haversine distance to it over ``max(gap, 60 s)``, when both have coordinates.

*Error bound.* Zero: every feature is computed exactly for these definitions (property tests
compare every value with a brute-force recomputation from all events), with one stated limit:
a card remembers its 64 most recently paid merchants (``CARD_MERCHANT_MEMORY``), so a card with
more distinct merchants in 30 days sees the oldest as new and counts at most 64 of them plus
those of the last 15 minutes. Against a sliding window of exactly ``W`` the sawtooth window
also holds the events between ``W`` and ``W + (t mod hop)`` old, and no others.

*Card verifications.* A payment of amount 0 (an account verification, as card testers send in
bursts) is an event of the card like any other: it counts in ``card_count_*``, moves the
previous payment, the merchants and the countries. It is kept apart from the money: it adds
nothing to the sums and maxima, and the means (and ``card_amount_to_mean_30d``) are over the
payments with an amount.

*Lateness.* ``watermark`` is the latest event time this card has seen (or was told of by
:meth:`CardHistory.expire`). A payment at most ``lateness`` (default 15 min) behind it is
placed at its own time and scored exactly like an in-order one. A later one is still scored,
never dropped, but *placed* at ``watermark - lateness``: its features and its part in later
windows are those of a payment at that time (its calendar features keep its real local time).

*State.* Payments of the last ``lateness`` of event time are kept exactly (the tail); older ones
are folded into 5-minute, hourly and daily tiles of count, count with an amount, total and peak
(in euro cents), kept
only while some window of a payment at ``watermark - lateness`` or later can reach them; the
card also keeps, per remembered merchant, the time it was last paid, per day the count of
payments per country, and the time and place of the latest folded payment. So a card holds at
most 13 + 169 + 31 tiles, 64 merchants and 31 days of country counts, whatever its traffic;
only the tail grows with the payments of the last 15 minutes. Pickled, a card paying 10 times
a day for 30 days takes about 1.8 KB (``benchmarks/bench_features.py``).

*Expiry.* :meth:`CardHistory.expire` advances the watermark to an event time ``now`` and
forgets what no payment placed at ``now - lateness`` or later can see: the features of such
payments are the same with or without calls to ``expire`` (a property test checks it).

*Snapshots.* ``pickle`` and ``copy.deepcopy`` round-trip the state exactly (flat tuples of ints,
floats and strings); a restored card gives the same features as one never interrupted.

>>> from datetime import datetime, timedelta, timezone
>>> from msgspec.structs import replace
>>> from features.contract import Payment
>>> base = Payment(transaction_id="t", card_id="c", merchant_id="m-1", terminal_id="p",
...                amount_minor=2000, currency="EUR", mcc="5411", channel="pos", country="FR",
...                event_time=datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc))
>>> card = CardHistory()
>>> card.observe(base)["card_count_24h"]  # first payment: no history
0.0
>>> later = replace(base, amount_minor=6000,
...                 event_time=base.event_time + timedelta(minutes=10))
>>> f = card.observe(later)
>>> f["card_count_24h"], f["card_amount_sum_24h"], f["card_seconds_since_prev"]
(1.0, 20.0, 600.0)
>>> f["card_amount_to_mean_30d"], f["card_merchant_new_30d"]
(3.0, 0.0)
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import Any

from features.catalog import (
    CARD_FEATURE_NAMES,
    CARD_MERCHANT_MEMORY,
    CARD_WINDOWS,
    DAY,
    LATENESS_SECONDS,
    MIN_TRAVEL_SECONDS,
    PREVIOUS_PAYMENT_HORIZON,
)
from features.contract import Payment
from features.currency import eur_cents
from features.geo import haversine_km
from features.windows import AmountTiles

_HOPS = tuple(sorted({w.hop for w in CARD_WINDOWS}))
# (hop, hops, level) per window, in CARD_WINDOWS order.
_PLAN = tuple((w.hop, w.hops, _HOPS.index(w.hop)) for w in CARD_WINDOWS)
# Tiles each level must keep: the most hops of any window at that level.
_KEEP = tuple(max(w.hops for w in CARD_WINDOWS if w.hop == hop) for hop in _HOPS)
_NAMES = [w.name for w in CARD_WINDOWS]
_W24 = CARD_WINDOWS[_NAMES.index("24h")]
_W30 = CARD_WINDOWS[_NAMES.index("30d")]
_I24, _I30 = _NAMES.index("24h"), _NAMES.index("30d")
_NO_TIME = float("-inf")

__all__ = ["CardHistory"]


class CardHistory:
    """The state of one card, and the features of each payment it makes (see module docstring).

    Parameters
    ----------
    lateness
        Seconds a payment may lag behind the card's latest event time and still be placed at its
        own time (and scored exactly); later ones are placed at that bound.
    """

    __slots__ = (
        "_cents",
        "_country",
        "_country_code",
        "_country_count",
        "_country_day",
        "_country_total",
        "_last_lat",
        "_last_lon",
        "_last_time",
        "_lat",
        "_lateness",
        "_lon",
        "_merchant",
        "_merchant_seen",
        "_merchants",
        "_tiles",
        "_ts",
        "_watermark",
    )

    def __init__(self, lateness: float = LATENESS_SECONDS) -> None:
        if not 0 <= lateness < math.inf:
            raise ValueError(
                f"CardHistory: lateness must be a finite number of seconds >= 0; got {lateness!r}"
            )
        self._lateness = float(lateness)
        self._watermark = _NO_TIME
        # The exact tail, sorted by (time, arrival): payments at or after watermark - lateness.
        self._ts: list[float] = []
        self._cents: list[int] = []
        self._merchant: list[str] = []
        self._country: list[str] = []
        self._lat: list[float | None] = []
        self._lon: list[float | None] = []
        # Folded payments (all earlier than watermark - lateness, so than any later payment).
        self._tiles = tuple(AmountTiles(hop) for hop in _HOPS)
        self._merchants: list[str] = []  # by latest folded payment, oldest first
        self._merchant_seen: list[float] = []
        self._country_day: list[int] = []  # per (UTC day, country): payments; by day
        self._country_code: list[str] = []
        self._country_count: list[int] = []
        self._country_total: dict[str, int] = {}  # derived: the sum of the above per country
        self._last_time = _NO_TIME  # the latest folded payment
        self._last_lat: float | None = None
        self._last_lon: float | None = None

    @property
    def watermark(self) -> float:
        """The latest event time seen or expired to (POSIX seconds); ``-inf`` at first."""
        return self._watermark

    def observe(self, payment: Payment) -> dict[str, float]:
        """Features of ``payment`` from the payments seen before it, then remember it.

        Returns the card part of :data:`features.catalog.CARD_FEATURE_NAMES`, in that order.
        """
        s = payment.event_timestamp
        horizon = self._watermark - self._lateness
        t = s if s >= horizon else horizon
        cents = eur_cents(payment.amount_minor, payment.currency)
        ts, tail_cents = self._ts, self._cents
        hi = bisect_right(ts, t)  # the tail payments at or before t: ts[:hi]

        values: list[float] = [cents / 100]
        firsts: list[int] = []  # per window: its first tile
        lows: list[int] = []  # per window: its first tail payment
        n = paid = total = 0
        for hop, hops, level in _PLAN:
            first = int(t // hop) - hops
            n, paid, total, peak = self._tiles[level].aggregate_from(first)
            lo = bisect_left(ts, first * hop, 0, hi)
            firsts.append(first)
            lows.append(lo)
            if lo < hi:
                segment = tail_cents[lo:hi]
                n += hi - lo
                paid += hi - lo - segment.count(0)
                total += sum(segment)
                peak = max(peak, max(segment))
            values += (float(n), total / 100, total / paid / 100 if paid else 0.0, peak / 100)
        # n, paid and total are now those of the 30-day window (the last of CARD_WINDOWS).
        since, speed = self._previous(t, hi, payment)
        first24, first30, lo30 = firsts[_I24], firsts[_I30], lows[_I30]
        distinct, new = self._merchant_features(
            payment.merchant_id, first24 * _W24.hop, lows[_I24], first30 * _W30.hop, lo30, hi
        )
        values += (
            since,
            cents * paid / total if total else 1.0,
            distinct,
            new,
            self._country_unusual(payment.country, first30, lo30, hi),
            speed,
        )

        ts.insert(hi, t)
        tail_cents.insert(hi, cents)
        self._merchant.insert(hi, payment.merchant_id)
        self._country.insert(hi, payment.country)
        self._lat.insert(hi, payment.latitude)
        self._lon.insert(hi, payment.longitude)
        if s > self._watermark:
            self._watermark = s
            self._settle(s - self._lateness)
        return dict(zip(CARD_FEATURE_NAMES, values, strict=True))

    def _previous(self, t: float, hi: int, payment: Payment) -> tuple[float, float]:
        """(seconds since the previous payment, km/h from it) for ``payment`` placed at ``t``."""
        if hi:
            prev, lat, lon = self._ts[hi - 1], self._lat[hi - 1], self._lon[hi - 1]
        else:
            prev, lat, lon = self._last_time, self._last_lat, self._last_lon
        gap = t - prev
        if gap > PREVIOUS_PAYMENT_HORIZON:
            return PREVIOUS_PAYMENT_HORIZON, 0.0
        if lat is None or lon is None or payment.latitude is None or payment.longitude is None:
            return gap, 0.0
        km = haversine_km(lat, lon, payment.latitude, payment.longitude)
        return gap, km * 3600 / max(gap, MIN_TRAVEL_SECONDS)

    def _merchant_features(
        self, merchant: str, start24: float, lo24: int, start30: float, lo30: int, hi: int
    ) -> tuple[float, float]:
        """(distinct merchants in the 24h window, 1.0 if ``merchant`` is not in the 30d one).

        The windows start at ``start24`` and ``start30``; their tail payments are
        ``[lo24:hi]`` and ``[lo30:hi]``.
        """
        seen, known = self._merchant_seen, self._merchants
        known24 = known[bisect_left(seen, start24) :]
        distinct = len(known24) + len(set(self._merchant[lo24:hi]).difference(known24))
        in_30d = (
            merchant in self._merchant[lo30:hi] or merchant in known[bisect_left(seen, start30) :]
        )
        return float(distinct), 0.0 if in_30d else 1.0

    def _country_unusual(self, country: str, first30: int, lo30: int, hi: int) -> float:
        """1.0 if the 30d window (from day ``first30``, tail ``[lo30:hi]``) has payments and
        ``country`` is not among its most frequent."""
        tally = self._country_total  # folded payments of every retained day
        k = bisect_left(self._country_day, first30)
        recent = self._country[lo30:hi]
        if k or recent:
            tally = tally.copy()
            for code, n in zip(self._country_code[:k], self._country_count[:k], strict=True):
                tally[code] -= n  # days retained but before this window
            for code in recent:
                tally[code] = tally.get(code, 0) + 1
        if not tally:
            return 0.0
        return 1.0 if tally.get(country, 0) < max(tally.values()) else 0.0

    def _settle(self, horizon: float) -> None:
        """Fold tail payments before ``horizon`` into the tiles; forget what is out of reach."""
        ts = self._ts
        k = bisect_left(ts, horizon)
        if k:
            for i in range(k):
                self._fold(ts[i], self._cents[i], self._merchant[i], self._country[i])
            self._last_time, self._last_lat, self._last_lon = (
                ts[k - 1],
                self._lat[k - 1],
                self._lon[k - 1],
            )
            del ts[:k], self._cents[:k], self._merchant[:k], self._country[:k]
            del self._lat[:k], self._lon[:k]
        self._forget_before(horizon)

    def _fold(self, s: float, cents: int, merchant: str, country: str) -> None:
        """Add one payment leaving the tail; folds happen in event-time order."""
        for tiles in self._tiles:
            tiles.add(s, cents)
        known, seen = self._merchants, self._merchant_seen
        if known and known[-1] == merchant:
            seen[-1] = s
        else:
            if merchant in known:
                j = known.index(merchant)
                del known[j], seen[j]
            known.append(merchant)
            seen.append(s)
            if len(known) > CARD_MERCHANT_MEMORY:
                del known[0], seen[0]
        self._country_total[country] = self._country_total.get(country, 0) + 1
        day = int(s // DAY)
        days, codes = self._country_day, self._country_code
        j = len(days) - 1
        while j >= 0 and days[j] == day:
            if codes[j] == country:
                self._country_count[j] += 1
                return
            j -= 1
        days.append(day)
        codes.append(country)
        self._country_count.append(1)

    def _forget_before(self, base: float) -> None:
        """Drop the folded state no payment placed at ``base`` or later can see."""
        for tiles, hop, keep in zip(self._tiles, _HOPS, _KEEP, strict=True):
            tiles.drop_before(int(base // hop) - keep)
        seen = self._merchant_seen
        if seen and seen[0] < (reach := _W30.start(base)):  # the 30d window reaches farthest
            k = bisect_left(seen, reach)
            del self._merchants[:k], seen[:k]
        days = self._country_day
        if days and days[0] < (first := _W30.start_index(base)):
            k = bisect_left(days, first)
            total = self._country_total
            for code, n in zip(self._country_code[:k], self._country_count[:k], strict=True):
                total[code] -= n
                if not total[code]:
                    del total[code]
            del days[:k], self._country_code[:k], self._country_count[:k]
        if base - self._last_time > PREVIOUS_PAYMENT_HORIZON:
            self._last_time, self._last_lat, self._last_lon = _NO_TIME, None, None

    def expire(self, now: float) -> bool:
        """Advance the watermark to ``now``; fold and forget what no later payment can see.

        ``now`` is event time (POSIX seconds), e.g. the flow's event-time watermark, never the
        wall clock: the caller promises that later payments of this card are dated at or after
        ``now - lateness``. For them, features are the same whether or not ``expire`` was called.
        A payment breaking the promise still scores, placed at ``now - lateness`` like any
        payment later than the lateness. Returns True when nothing is left: the caller may then
        discard the card (a new :class:`CardHistory` gives the promised payments the same
        features).
        """
        if not math.isfinite(now):
            raise ValueError(f"CardHistory.expire: now must be finite POSIX seconds; got {now!r}")
        if now > self._watermark:
            self._watermark = now
        self._settle(self._watermark - self._lateness)
        return not (
            self._ts
            or any(self._tiles)
            or self._merchants
            or self._country_day
            or self._last_time != _NO_TIME
        )

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self._lateness,
            self._watermark,
            tuple(self._ts),
            tuple(self._cents),
            tuple(self._merchant),
            tuple(self._country),
            tuple(self._lat),
            tuple(self._lon),
            tuple(tiles.state() for tiles in self._tiles),
            tuple(self._merchants),
            tuple(self._merchant_seen),
            tuple(self._country_day),
            tuple(self._country_code),
            tuple(self._country_count),
            self._last_time,
            self._last_lat,
            self._last_lon,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (
            self._lateness,
            self._watermark,
            ts,
            cents,
            merchant,
            country,
            lat,
            lon,
            tiles,
            merchants,
            seen,
            days,
            codes,
            counts,
            self._last_time,
            self._last_lat,
            self._last_lon,
        ) = state
        self._ts, self._cents, self._merchant = list(ts), list(cents), list(merchant)
        self._country, self._lat, self._lon = list(country), list(lat), list(lon)
        self._tiles = tuple(AmountTiles(hop) for hop in _HOPS)
        for level, level_state in zip(self._tiles, tiles, strict=True):
            level.restore(level_state)
        self._merchants, self._merchant_seen = list(merchants), list(seen)
        self._country_day, self._country_code = list(days), list(codes)
        self._country_count = list(counts)
        self._country_total = {}
        for code, n in zip(codes, counts, strict=True):
            self._country_total[code] = self._country_total.get(code, 0) + n

    def __copy__(self) -> CardHistory:
        new = CardHistory.__new__(CardHistory)
        new._lateness, new._watermark = self._lateness, self._watermark
        new._ts, new._cents = self._ts.copy(), self._cents.copy()
        new._merchant, new._country = self._merchant.copy(), self._country.copy()
        new._lat, new._lon = self._lat.copy(), self._lon.copy()
        new._tiles = tuple(tiles.copy() for tiles in self._tiles)
        new._merchants, new._merchant_seen = self._merchants.copy(), self._merchant_seen.copy()
        new._country_day, new._country_code = self._country_day.copy(), self._country_code.copy()
        new._country_count = self._country_count.copy()
        new._country_total = self._country_total.copy()
        new._last_time, new._last_lat, new._last_lon = (
            self._last_time,
            self._last_lat,
            self._last_lon,
        )
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> CardHistory:
        # Every list holds immutable values (numbers, strings, None): copying the lists suffices.
        return self.__copy__()

    def __repr__(self) -> str:
        return (
            f"CardHistory(watermark={self._watermark}, tail={len(self._ts)}, "
            f"tiles={[len(t) for t in self._tiles]}, merchants={len(self._merchants)})"
        )
