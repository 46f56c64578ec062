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
only the tail grows with the payments of the last 15 minutes. A merchant's last time is kept
floored to the hour: the windows that read it start on whole hours, so no feature changes.

*Expiry.* :meth:`CardHistory.expire` advances the watermark to an event time ``now`` and
forgets what no payment placed at ``now - lateness`` or later can see: the features of such
payments are the same with or without calls to ``expire`` (a property test checks it).

*Snapshots.* ``pickle`` and ``copy.deepcopy`` round-trip the state exactly; a restored card
gives the same features as one never interrupted. The card keeps its numbers packed all the time
(``array.array`` columns of doubles and machine integers: the tail's times, cents and
coordinates, the tiles, the merchants' last times, the country counts). A missing coordinate is
held as NaN (the contract admits no NaN coordinate). Integer columns start narrow and widen when
a value would not fit (to 64 bits, then to Python lists), so the features stay exact whatever
the amounts. ``__getstate__`` writes each integer column in the narrowest width its values fit
(1, 2, 3, 4 or 8 bytes), sorted columns (tile indices, days, merchants' last hours) as small
offsets or gaps, a tile's peak only when it holds two amounts or more (else it is its total),
each country once; about 560 bytes for a card of the benchmark's traffic after 30 days
(``benchmarks/bench_throughput.py`` part 6 prints where the bytes go). That costs a pass over
the values per snapshot (tens of µs a card, ``benchmarks/bench_snapshot.py``), where a join of
the in-memory buffers cost about 10. Snapshots of earlier releases (the packed columns of
7fcbb1a, flat tuples of ints, floats and strings before) still restore.

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
import operator
import pickle
import sys
from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate, pairwise
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
_NAN = float("nan")  # a missing coordinate in the tail's columns
_SEP = "\x00"  # between the strings of a snapshot (no identifier or country code holds one)
_OLD_STATE = 17  # the length of the state tuple of earlier releases
_PACKED_STATE = 11  # the length of the packed state tuple of the release before (7fcbb1a)
# A merchant's last time is kept floored to this many seconds: the features only compare it with
# the starts of the 24h and 30d windows, multiples of it, so the floor changes no feature and
# the time fits a narrow offset in a snapshot.
_SEEN_QUANTUM = math.gcd(_W24.hop, _W30.hop)
# Typecodes of unsigned, then signed, machine integers, narrowest first, and their ranges.
_LITTLE = sys.byteorder == "little"
_SAME = "="  # a tile level's paid column equal to its count column, stored once
_MANY = "+"  # a tile level's peak column holding only the tiles of two amounts or more
_THREE = "T"  # integers below 2**24 in 3 bytes each
_NIBBLE = "BHIQbhiq" + _THREE + _SAME + _MANY  # the codes, as 4-bit numbers in a snapshot
_NIBBLE_OF = {code: j for j, code in enumerate(_NIBBLE)}
_EMPTY_LEVEL = ("B", "B", _SAME, "B", _MANY, "B")  # the codes of a tile level without tiles
_SHAPE = 12  # the lengths and offsets in a snapshot's header

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
        self._ts: Any = array("d")
        self._cents: Any = array("q")  # a list if a value passed 2**63 (never, in practice)
        self._merchant: list[str] = []
        self._country: list[str] = []
        self._lat: Any = array("d")  # NaN: no coordinate
        self._lon: Any = array("d")
        # Folded payments (all earlier than watermark - lateness, so than any later payment).
        self._tiles = tuple(AmountTiles(hop) for hop in _HOPS)
        self._merchants: list[str] = []  # by latest folded payment, oldest first
        self._merchant_seen: Any = array("d")
        self._country_day: Any = array("i")  # per (UTC day, country): payments; by day
        self._country_code: list[str] = []
        self._country_count: Any = array("H")  # widened to "q", then a list, when full
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

        try:
            tail_cents.insert(hi, cents)
        except OverflowError:  # beyond 64 bits: the tail's amounts as Python ints
            self._cents = tail_cents = list(tail_cents)
            tail_cents.insert(hi, cents)
        ts.insert(hi, t)
        self._merchant.insert(hi, payment.merchant_id)
        self._country.insert(hi, payment.country)
        lat, lon = payment.latitude, payment.longitude
        self._lat.insert(hi, _NAN if lat is None else lat)
        self._lon.insert(hi, _NAN if lon is None else lon)
        if s > self._watermark:
            self._watermark = s
            self._settle(s - self._lateness)
        return dict(zip(CARD_FEATURE_NAMES, values, strict=True))

    def _previous(self, t: float, hi: int, payment: Payment) -> tuple[float, float]:
        """(seconds since the previous payment, km/h from it) for ``payment`` placed at ``t``."""
        if hi:
            prev, lat, lon = self._ts[hi - 1], self._lat[hi - 1], self._lon[hi - 1]
            if lat != lat or lon != lon:  # NaN: no coordinates
                lat = lon = None
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
            lat, lon = self._lat[k - 1], self._lon[k - 1]
            self._last_time = ts[k - 1]
            self._last_lat = None if lat != lat else lat
            self._last_lon = None if lon != lon else lon
            del ts[:k], self._cents[:k], self._merchant[:k], self._country[:k]
            del self._lat[:k], self._lon[:k]
        self._forget_before(horizon)

    def _fold(self, s: float, cents: int, merchant: str, country: str) -> None:
        """Add one payment leaving the tail; folds happen in event-time order."""
        for tiles in self._tiles:
            tiles.add(s, cents)
        known, seen = self._merchants, self._merchant_seen
        s = s // _SEEN_QUANTUM * _SEEN_QUANTUM  # the windows' starts are multiples of it
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
                counts = self._country_count
                try:
                    counts[j] += 1
                except OverflowError:
                    self._country_count = counts = _wider(counts)
                    counts[j] += 1
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
        """The packed state: ``(lateness, watermark, last time, last latitude, last longitude,
        shape, codes, blob, strings)``. ``blob`` joins the columns' buffers, each integer column
        in the narrowest machine type its values fit (``codes``, one typecode a column); the
        sorted columns (tile indices, days, merchants' last hours) as offsets from their first
        value, which ``shape`` gives (with the lengths) as its distance back from the
        watermark's tile, day or hour: a small number. ``strings`` is one ``str``: the tail's
        merchants and countries, the remembered merchants, and each country of the day counts
        once (each day count is stored with its country's position as ``count * countries +
        position``). A card whose values outgrew the machine
        integers gives the tuples of earlier releases (:meth:`_loose_state`)."""
        return self._packed(None)

    def fast_state(self) -> tuple[Any, ...]:
        """The packed state of the release before (7fcbb1a), which :meth:`__setstate__` restores:
        the numbers as one ``bytes`` joining the columns' buffers as they are in memory, the
        strings as one ``str``; no pass over the values, so about five times faster than
        :meth:`__getstate__` and about 60 % larger (``PAYSCORE_CARD_SNAPSHOTS``). A card whose
        values outgrew the machine integers gives the loose tuples (:meth:`_loose_state`)."""
        cents, counts = self._cents, self._country_count
        if type(cents) is not array or type(counts) is not array:
            return self._loose_state()
        strings: str | tuple[tuple[str, ...], ...]
        listed = self._merchant + self._country + self._merchants + self._country_code
        strings = _SEP.join(listed)
        if strings.count(_SEP) != len(listed) - 1 and listed:  # a string holds the separator
            strings = (tuple(self._merchant), tuple(self._country), tuple(self._merchants))
            strings += (tuple(self._country_code),)
        numbers = (self._ts, cents, self._lat, self._lon, self._merchant_seen, self._country_day)
        return (
            self._lateness,
            self._watermark,
            self._last_time,
            self._last_lat,
            self._last_lon,
            len(self._ts),
            len(self._merchants),
            counts.typecode,
            b"".join((*numbers, counts)),
            strings,
            tuple(tiles.state() for tiles in self._tiles),
        )

    def state_parts(self) -> dict[str, int]:
        """Bytes of each part of the packed state's payload (:meth:`__getstate__`), for the
        benchmarks: the tail, the tiles of each level, the merchants, the country counts, and
        the rest (the header of lengths, typecodes and floats, and pickle's framing of the
        tuple)."""
        parts: dict[str, int] = {}
        state = self._packed(parts)
        whole = len(pickle.dumps(state, pickle.HIGHEST_PROTOCOL))
        parts["header and framing"] = whole - sum(parts.values())
        return parts

    def _packed(self, parts: dict[str, int] | None) -> tuple[Any, ...]:
        """:meth:`__getstate__`; with ``parts``, the payload bytes of each part added to it."""
        try:
            return self._narrow_state(parts)
        except OverflowError:  # a column (or a day count with its country) beyond 64 bits
            return self._loose_state()

    def _narrow_state(self, parts: dict[str, int] | None) -> tuple[Any, ...]:
        cents, counts, levels = self._cents, self._country_count, self._tiles
        if (
            type(cents) is not array
            or type(counts) is not array
            or not all(t.codes for t in levels)
        ):
            return self._loose_state()
        table = list(dict.fromkeys(self._country_code))  # the card's countries, once each
        strings: str | tuple[tuple[str, ...], ...]
        listed = self._merchant + self._country + self._merchants + table
        strings = _SEP.join(listed)
        if listed and strings.count(_SEP) != len(listed) - 1:  # a string holds the separator
            strings = (tuple(self._merchant), tuple(self._country), tuple(self._merchants))
            strings += (tuple(table),)
        watermark = self._watermark
        finite = watermark != _NO_TIME
        codes: list[str] = []
        blob: list[Any] = [self._ts, self._lat, self._lon]
        shape = [len(self._ts), len(self._merchants), len(self._country_day), len(table)]

        def put(values: Any, part: str) -> None:
            code, packed = _narrowest(values)
            codes.append(code)
            blob.append(packed)
            if parts is not None:
                parts[part] = parts.get(part, 0) + len(packed)

        q = _SEEN_QUANTUM

        def put_offsets(values: Any, ref: int, part: str) -> None:
            """A sorted column as offsets from its first value, that value as ``ref`` - it."""
            base = values[0] if values else ref
            shape.append(ref - base)
            put([v - base for v in values] if base else values, part)

        put(cents, "tail")
        seen = self._merchant_seen  # sorted, whole multiples of q (so their gaps are exact)
        shape.append(int(watermark // q) - int(seen[-1] // q) if seen else 0)
        put([int(b - a) // q for a, b in pairwise(seen)], "merchants")  # the gaps, in q
        for tiles, hop in zip(levels, _HOPS, strict=True):
            part = f"tiles of {hop} s"
            if not tiles.index:  # (the 5-minute level, mostly): nothing to write
                shape += (0, 0)
                codes += _EMPTY_LEVEL
                continue
            index, ref = tiles.index, int(watermark // hop) if finite else 0
            base = index[0] if index else ref  # (an empty level's offset is 0: one byte)
            shape += (len(index), ref - base)
            put([v - base for v in index] if base else index, part)
            count, paid, total, peak = tiles.count, tiles.paid, tiles.total, tiles.peak
            put(count, part)
            if paid == count:
                codes.append(_SAME)
            else:
                put(paid, part)
            put(total, part)
            # A tile of at most one amount other than 0 has that amount as its total and its
            # peak, unless the amount is below 0 (no payment's is): then a total is below 0.
            if not total or min(total) >= 0:
                codes.append(_MANY)  # the peaks of the tiles of two amounts or more only
                many = max(paid, default=0) > 1
                put([p for p, k in zip(peak, paid, strict=True) if k > 1] if many else (), part)
            else:
                put(peak, part)
        put_offsets(self._country_day, int(watermark // DAY) if finite else 0, "countries")
        where = {code: j for j, code in enumerate(table)}  # a count and its country, as one:
        put(
            [k * len(table) + where[c] for k, c in zip(counts, self._country_code, strict=True)],
            "countries",
        )
        if parts is not None:
            n, m = len(self._ts), len(self._merchants)
            size = [len(s.encode()) + 1 for s in listed]  # with its separator
            parts["tail"] += 24 * n + sum(size[: 2 * n])
            parts["merchants"] += sum(size[2 * n : 2 * n + m])
            parts["countries"] += sum(size[2 * n + m :])
        shape_code, packed_shape = _narrowest(shape)
        codes.append(shape_code)
        nibbles = [_NIBBLE_OF[code] for code in codes] + [0]
        header = bytes([len(codes)])  # then the codes, two to a byte
        header += bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(codes), 2))
        return (
            None if self._lateness == LATENESS_SECONDS else self._lateness,
            watermark,
            self._last_time,
            self._last_lat,
            self._last_lon,
            b"".join((header, packed_shape, *blob)),
            strings,
        )

    def _loose_state(self) -> tuple[Any, ...]:
        """The state as earlier releases pickled it: flat tuples of numbers and strings."""
        return (
            self._lateness,
            self._watermark,
            tuple(self._ts),
            tuple(self._cents),
            tuple(self._merchant),
            tuple(self._country),
            tuple(None if v != v else v for v in self._lat),
            tuple(None if v != v else v for v in self._lon),
            tuple(tiles.tuples() for tiles in self._tiles),
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
        if len(state) == _OLD_STATE:
            self._restore_loose(state)
        elif len(state) == _PACKED_STATE:
            self._restore_packed(state)
        else:
            self._restore_narrow(state)
        self._country_total = {}
        for code, n in zip(self._country_code, self._country_count, strict=True):
            self._country_total[code] = self._country_total.get(code, 0) + n

    def _restore_narrow(self, state: tuple[Any, ...]) -> None:
        """A state of :meth:`__getstate__` (this release's)."""
        (
            lateness,
            self._watermark,
            self._last_time,
            self._last_lat,
            self._last_lon,
            blob,
            strings,
        ) = state
        self._lateness = LATENESS_SECONDS if lateness is None else lateness
        buffer = memoryview(blob)
        count = blob[0]
        at = 1 + (count + 1) // 2
        nibbles = [half for byte in blob[1:at] for half in (byte & 15, byte >> 4)]
        codes = [_NIBBLE[j] for j in nibbles[:count]]

        def take(code: str, size: int) -> Any:
            nonlocal at
            if code == _THREE:  # low 16 bits, then high 8
                low, high = take("H", size), take("B", size)
                return array("I", [a | b << 16 for a, b in zip(low, high, strict=True)])
            column = array(code)
            end = at + size * column.itemsize
            column.frombytes(buffer[at:end])
            at = end
            return column

        n, merchants, days, _, seen_back, *levels, day_back = take(codes.pop(), _SHAPE)

        self._ts, self._lat, self._lon = take("d", n), take("d", n), take("d", n)
        code = iter(codes)
        self._cents = _fitted("q", take(next(code), n))
        finite = self._watermark != _NO_TIME
        base = (int(self._watermark // _SEEN_QUANTUM) if finite else 0) - seen_back
        q = _SEEN_QUANTUM
        gaps = take(next(code), max(merchants - 1, 0))
        hours = list(accumulate(reversed(gaps), operator.sub, initial=base))[::-1]
        self._merchant_seen = array("d", [v * q for v in hours] if merchants else [])
        tiles = []
        for hop, size, back in zip(_HOPS, levels[::2], levels[1::2], strict=True):
            base = (int(self._watermark // hop) if finite else 0) - back
            index = [base + v for v in take(next(code), size)]
            count = take(next(code), size).tolist()
            paid_code = next(code)
            paid = count if paid_code == _SAME else take(paid_code, size).tolist()
            total, peak_code = take(next(code), size).tolist(), next(code)
            if peak_code == _MANY:
                many = iter(take(next(code), sum(1 for k in paid if k > 1)))
                peak = [next(many) if k > 1 else t for k, t in zip(paid, total, strict=True)]
            else:
                peak = take(peak_code, size).tolist()
            tiles.append(AmountTiles.restored(hop, (index, count, paid, total, peak)))
        self._tiles = tuple(tiles)
        base = (int(self._watermark // DAY) if finite else 0) - day_back
        self._country_day = array("i", [base + v for v in take(next(code), days)])
        both = take(next(code), days)  # count * countries + the country's position
        if isinstance(strings, str):
            listed = strings.split(_SEP) if strings else []
            self._merchant, self._country = listed[:n], listed[n : 2 * n]
            self._merchants = listed[2 * n : 2 * n + merchants]
            table = listed[2 * n + merchants :]
        else:
            self._merchant, self._country, self._merchants, table = map(list, strings)
        width = len(table)
        self._country_count = _fitted("H", [v // width for v in both])
        self._country_code = [table[v % width] for v in both]

    def _restore_packed(self, state: tuple[Any, ...]) -> None:
        """A packed state of the release before (7fcbb1a): 64-bit and 16-bit columns."""
        (
            self._lateness,
            self._watermark,
            self._last_time,
            self._last_lat,
            self._last_lon,
            n,
            merchants,
            count_code,
            blob,
            strings,
            tiles,
        ) = state
        buffer = memoryview(blob)
        counts = array(count_code)
        days = (len(blob) - 32 * n - 8 * merchants) // (4 + counts.itemsize)
        at = 0
        columns = []
        for code, size in (
            ("d", n), ("q", n), ("d", n), ("d", n), ("d", merchants), ("i", days)
        ):  # fmt: skip
            column = array(code)
            end = at + size * column.itemsize
            column.frombytes(buffer[at:end])
            columns.append(column)
            at = end
        counts.frombytes(buffer[at:])
        self._ts, self._cents, self._lat, self._lon, seen, self._country_day = columns
        self._merchant_seen = _floored(seen)
        self._country_count = counts
        if isinstance(strings, str):
            listed = strings.split(_SEP) if strings else []
            self._merchant, self._country = listed[:n], listed[n : 2 * n]
            self._merchants = listed[2 * n : 2 * n + merchants]
            self._country_code = listed[2 * n + merchants :]
        else:
            self._merchant, self._country, self._merchants, self._country_code = map(list, strings)
        self._tiles = tuple(
            AmountTiles.restored(hop, level) for hop, level in zip(_HOPS, tiles, strict=True)
        )

    def _restore_loose(self, state: tuple[Any, ...]) -> None:
        """A state of :meth:`_loose_state`, as earlier releases pickled it."""
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
        self._ts, self._cents = array("d", ts), _fitted("q", cents)
        self._merchant, self._country = list(merchant), list(country)
        self._lat = array("d", [_NAN if v is None else v for v in lat])
        self._lon = array("d", [_NAN if v is None else v for v in lon])
        self._tiles = tuple(
            AmountTiles.restored(hop, level) for hop, level in zip(_HOPS, tiles, strict=True)
        )
        self._merchants, self._merchant_seen = list(merchants), _floored(seen)
        self._country_day, self._country_code = array("i", days), list(codes)
        self._country_count = _fitted("H", counts)

    def __copy__(self) -> CardHistory:
        new = CardHistory.__new__(CardHistory)
        new._lateness, new._watermark = self._lateness, self._watermark
        new._ts, new._cents = self._ts[:], self._cents[:]
        new._merchant, new._country = self._merchant.copy(), self._country.copy()
        new._lat, new._lon = self._lat[:], self._lon[:]
        new._tiles = tuple(tiles.copy() for tiles in self._tiles)
        new._merchants, new._merchant_seen = self._merchants.copy(), self._merchant_seen[:]
        new._country_day, new._country_code = self._country_day[:], self._country_code.copy()
        new._country_count = self._country_count[:]
        new._country_total = self._country_total.copy()
        new._last_time, new._last_lat, new._last_lon = (
            self._last_time,
            self._last_lat,
            self._last_lon,
        )
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> CardHistory:
        # Every column holds immutable values (numbers, strings): copying the columns suffices.
        return self.__copy__()

    def __repr__(self) -> str:
        return (
            f"CardHistory(watermark={self._watermark}, tail={len(self._ts)}, "
            f"tiles={[len(t) for t in self._tiles]}, merchants={len(self._merchants)})"
        )


def _wider(column: Any) -> Any:
    """A column of integers with room for larger values: 64-bit, then a list."""
    if isinstance(column, array) and column.typecode != "q":
        return array("q", column)
    return list(column)


def _fitted(code: str, values: Any) -> Any:
    """``values`` as a column of ``code``, or wider when they do not fit."""
    for width in (code, "q"):
        try:
            return array(width, values)
        except OverflowError:
            continue
    return list(values)


def _floored(seen: Any) -> Any:
    """Merchants' last times of an earlier release, floored as this one keeps them."""
    q = _SEEN_QUANTUM
    return array("d", [v // q * q for v in seen])


def _narrowest(values: Any) -> tuple[str, bytes]:
    """``(typecode, buffer)`` of integer ``values`` in the narrowest machine type they fit, or
    in 3 bytes (``_THREE``: the low 16 bits of each, then the high 8) when that is it. Raises
    OverflowError beyond 64 bits."""
    if not values:
        return "B", b""
    low, high = min(values), max(values)
    if low >= 0:
        if high < 0x100:
            code = "B"
        elif high < 0x1_0000:
            code = "H"
        elif high < 0x100_0000 and _LITTLE:  # 32-bit halves, sliced in C: low, high, low...
            halves = array("H", array("I", values).tobytes())
            return _THREE, halves[::2].tobytes() + array("B", halves[1::2]).tobytes()
        elif high < 0x1_0000_0000:
            code = "I"
        elif high < 1 << 64:
            code = "Q"
        else:
            raise OverflowError(f"card state: integers up to {high} fit no 64-bit column")
    elif low >= -0x80 and high < 0x80:
        code = "b"
    elif low >= -0x8000 and high < 0x8000:
        code = "h"
    elif low >= -0x8000_0000 and high < 0x8000_0000:
        code = "i"
    elif low >= -(1 << 63) and high < 1 << 63:
        code = "q"
    else:
        raise OverflowError(f"card state: integers from {low} to {high} fit no 64-bit column")
    return code, array(code, values).tobytes()
