"""Property tests: every feature equals a brute-force recomputation from the full event list.

The oracle keeps every payment and label it has seen and recomputes each window from scratch,
with exact rational arithmetic for the window starts, following the definitions written in
``features.card``, ``features.entity`` and ``features.windows``: sawtooth windows, payments
later than the lateness placed at ``watermark - lateness``, labels known only when reported by
the payment's time. Streams mix several cards, terminals and merchants, bursts at equal times,
gaps longer than every window, payments late within and beyond the lateness, and labels
delivered early, late, twice, for unknown payments or with the wrong card, and repeated
payments. The stated error bound is zero: amounts are
whole euro cents, so sums are exact in any order; the only tolerance (relative 1e-12) is for a
ratio the oracle writes as ``a / (b / c)`` and the features as ``a * c / b``.
"""

from __future__ import annotations

import copy
import math
import pickle
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.calendar import calendar_features
from features.card import CardHistory
from features.catalog import (
    CARD_WINDOWS,
    DAY,
    ENTITY_COUNT_WINDOWS,
    ENTITY_FRAUD_WINDOWS,
    ENTITY_SETTLED_WINDOWS,
    FEATURE_NAMES,
    LATENESS_SECONDS,
    MIN_TRAVEL_SECONDS,
    PREVIOUS_PAYMENT_HORIZON,
    SETTLED_DELAY,
    assemble,
)
from features.contract import FraudLabel, Payment
from features.currency import eur_cents
from features.entity import EntityHistory
from features.geo import haversine_km
from features.replay import replay
from features.windows import Window

L = LATENESS_SECONDS
BASE = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # a UTC midnight: on every tile boundary

# ---------------------------------------------------------------------------------------------
# The oracle


@dataclass(frozen=True)
class Seen:
    """A payment as the oracle remembers it: placed time and what the features read."""

    t: float
    cents: int
    merchant: str
    country: str
    lat: float | None
    lon: float | None


def in_window(s: float, t: float, window: Window) -> bool:
    """``start(t) <= s <= t`` with the start computed in exact rational arithmetic."""
    start = (Fraction(t) // window.hop - window.length // window.hop) * window.hop
    return Fraction(s) >= start and s <= t


def placed(s: float, earlier: list[float]) -> float:
    """Where a payment at ``s`` is placed, given the event times its key saw before."""
    return max(s, max(earlier) - L) if earlier else s


def oracle_card(p: Payment, t: float, prior: list[Seen]) -> dict[str, float]:
    cents = eur_cents(p.amount_minor, p.currency)
    out: dict[str, float] = {"amount_eur": cents / 100}
    paid30 = total30 = 0
    for w in CARD_WINDOWS:
        inside = [e.cents for e in prior if in_window(e.t, t, w)]
        paid = sum(1 for c in inside if c)  # a verification (0) is an event, not money
        total = sum(inside)
        out[f"card_count_{w.name}"] = len(inside)
        out[f"card_amount_sum_{w.name}"] = total / 100
        out[f"card_amount_mean_{w.name}"] = total / paid / 100 if paid else 0.0
        out[f"card_amount_max_{w.name}"] = max(inside) / 100 if inside else 0.0
        paid30, total30 = paid, total
    before = [(e.t, i) for i, e in enumerate(prior) if e.t <= t]
    speed = 0.0
    if before and t - max(before)[0] <= PREVIOUS_PAYMENT_HORIZON:
        prev = prior[max(before)[1]]
        gap = t - prev.t
        out["card_seconds_since_prev"] = gap
        if None not in (prev.lat, prev.lon, p.latitude, p.longitude):
            km = haversine_km(prev.lat, prev.lon, p.latitude, p.longitude)  # type: ignore[arg-type]
            speed = km / (max(gap, MIN_TRAVEL_SECONDS) / 3600)
    else:
        out["card_seconds_since_prev"] = PREVIOUS_PAYMENT_HORIZON
    out["card_amount_to_mean_30d"] = cents / (total30 / paid30) if total30 else 1.0
    w24 = next(w for w in CARD_WINDOWS if w.name == "24h")
    w30 = next(w for w in CARD_WINDOWS if w.name == "30d")
    out["card_distinct_merchants_24h"] = len({e.merchant for e in prior if in_window(e.t, t, w24)})
    recent = [e for e in prior if in_window(e.t, t, w30)]
    out["card_merchant_new_30d"] = 0.0 if p.merchant_id in {e.merchant for e in recent} else 1.0
    tally: dict[str, int] = {}
    for e in recent:
        tally[e.country] = tally.get(e.country, 0) + 1
    usual = {c for c, k in tally.items() if k == max(tally.values())}
    out["card_country_unusual"] = 1.0 if tally and p.country not in usual else 0.0
    out["card_speed_kmh"] = speed
    return out


def oracle_entity(
    prefix: str, t: float, prior: list[float], frauds: list[tuple[float, float]]
) -> dict[str, float]:
    """``prior``: placed times of earlier payments; ``frauds``: (payment time, reported at)."""
    out: dict[str, float] = {}
    counts = {}
    for w in ENTITY_COUNT_WINDOWS:
        counts[w.name] = sum(in_window(s, t, w) for s in prior)
        out[f"{prefix}_count_{w.name}"] = counts[w.name]
    for w in ENTITY_FRAUD_WINDOWS:
        f = sum(
            max(r, p) <= t and in_window(p, t, w)  # reported by t, paid in the window
            for p, r in frauds
        )
        out[f"{prefix}_fraud_rate_{w.name}"] = f / max(counts[w.name], f) if f else 0.0
    for w in ENTITY_SETTLED_WINDOWS:
        end = (t // w.hop) * w.hop - SETTLED_DELAY  # whole tiles only, D before t's own tile
        lo = end - w.length
        paid = sum(lo <= s < end for s in prior)
        f = sum(max(r, p) <= t and lo <= p < end for p, r in frauds)
        out[f"{prefix}_settled_fraud_rate_{w.name}"] = f / max(paid, f) if f else 0.0
    return out


Event = Payment | FraudLabel


def oracle(stream: list[Event]) -> list[dict[str, float]]:
    """Features of every payment of ``stream`` (arrival order), recomputed from scratch."""
    cards: dict[str, list[Seen]] = {}
    card_times: dict[str, list[float]] = {}
    entities: dict[tuple[str, str], list[float]] = {}
    entity_times: dict[tuple[str, str], list[float]] = {}
    frauds: dict[tuple[str, str], list[tuple[float, float]]] = {}
    first_payment: dict[str, Payment] = {}
    labelled: set[str] = set()
    rows = []
    for event in stream:
        if isinstance(event, FraudLabel):
            pay = first_payment.get(event.transaction_id)
            if pay is None or event.transaction_id in labelled or pay.card_id != event.card_id:
                continue
            labelled.add(event.transaction_id)
            if event.is_fraud:
                for key in (("terminal", pay.terminal_id), ("merchant", pay.merchant_id)):
                    item = (pay.event_timestamp, event.reported_at.timestamp())
                    frauds.setdefault(key, []).append(item)
            continue
        p = event
        if p.transaction_id in first_payment:
            continue  # a repeated transaction id
        first_payment[p.transaction_id] = p
        s = p.event_timestamp
        t = placed(s, card_times.setdefault(p.card_id, []))
        features = oracle_card(p, t, cards.setdefault(p.card_id, []))
        cards[p.card_id].append(Seen(t, eur_cents(p.amount_minor, p.currency), p.merchant_id,
                                     p.country, p.latitude, p.longitude))  # fmt: skip
        card_times[p.card_id].append(s)
        for key in (("terminal", p.terminal_id), ("merchant", p.merchant_id)):
            te = placed(s, entity_times.setdefault(key, []))
            features |= oracle_entity(key[0], te, entities.setdefault(key, []), frauds.get(key, []))
            entities[key].append(te)
            entity_times[key].append(s)
        features |= calendar_features(p)
        rows.append(features)
    return rows


# ---------------------------------------------------------------------------------------------
# Streams

OFFSETS = st.sampled_from([0, 60, -300, 330, -480, 840, -720])
# Steps between consecutive arrivals' event times, relative to the latest time so far.
FORWARD = st.one_of(
    st.sampled_from([0.0, 1.0, 299.0, 300.0, 301.0, 3599.0, 3600.0, 3601.0, 86_400.0]),
    st.sampled_from([7 * DAY, 30 * DAY, 30 * DAY + 1.0, 31 * DAY, 40 * DAY]).map(float),
    st.floats(0, 900, allow_nan=False).map(lambda x: round(x, 6)),
    st.integers(0, 3 * DAY).map(float),
)
BACKWARD = st.one_of(  # late arrivals: within the lateness, at it, beyond it, far beyond
    st.floats(0, L, allow_nan=False).map(lambda x: -round(x, 3)),
    st.sampled_from([-L, -L - 1, -2 * L, -DAY, -8 * DAY]),
)
LABEL_DELAY = st.one_of(
    st.sampled_from([-60.0, 0.0, 1.0, L, 3600.0, DAY, 8 * DAY, 31 * DAY]),
    st.integers(0, 10 * DAY).map(float),
)


def payment(i: int, t: float, offset: int, **fields: Any) -> Payment:
    zone = timezone(timedelta(minutes=offset))
    return Payment(
        **{
            "transaction_id": f"t-{i}",
            "card_id": "c-0",
            "merchant_id": "m-0",
            "terminal_id": "p-0",
            "amount_minor": 1000,
            "currency": "EUR",
            "event_time": datetime.fromtimestamp(t, zone),
            "mcc": "5411",
            "channel": "pos",
            "country": "FR",
            **fields,
        }
    )


@st.composite
def streams(draw: st.DrawFn, max_events: int = 40) -> list[Event]:
    """Payments and labels in arrival order, as described in the module docstring."""
    n_cards = draw(st.integers(1, 3))
    merchants = [f"m-{i}" for i in range(draw(st.integers(1, 4)))]
    terminals = [f"p-{i}" for i in range(draw(st.integers(1, 3)))]
    latest = BASE + draw(st.integers(0, 2 * DAY))
    out: list[Event] = []
    paid: list[Payment] = []
    for _ in range(draw(st.integers(1, max_events))):
        if paid and draw(st.integers(0, 12)) == 0:  # a repeated payment
            out.append(draw(st.sampled_from(paid)))
            continue
        if paid and draw(st.integers(0, 4)) == 0:  # a label
            target = draw(st.sampled_from(paid))
            txn, when, card = target.transaction_id, target.event_timestamp, target.card_id
            if draw(st.integers(0, 7)) == 0:
                txn = "unknown"
            if draw(st.integers(0, 7)) == 0:
                card = "c-other"
            out.append(
                FraudLabel(
                    transaction_id=txn,
                    card_id=card,
                    is_fraud=draw(st.integers(0, 3)) > 0,
                    reported_at=datetime.fromtimestamp(when + draw(LABEL_DELAY), UTC),
                )
            )
            continue
        step = draw(BACKWARD if paid and draw(st.integers(0, 5)) == 0 else FORWARD)
        t = latest + step
        latest = max(latest, t)
        located = draw(st.booleans())
        p = payment(
            len(out),
            t,
            draw(OFFSETS),
            card_id=f"c-{draw(st.integers(0, n_cards - 1))}",
            merchant_id=draw(st.sampled_from(merchants)),
            terminal_id=draw(st.sampled_from(terminals)),
            amount_minor=draw(st.integers(1, 500_000) | st.just(0)),  # 0: a verification
            currency=draw(st.sampled_from(["EUR", "EUR", "USD", "JPY", "KWD"])),
            country=draw(st.sampled_from(["FR", "FR", "DE", "US"])),
            latitude=draw(st.floats(-60, 60)) if located else None,
            longitude=draw(st.floats(-170, 170)) if located else None,
        )
        out.append(p)
        paid.append(p)
    return out


def assert_same(got: list[dict[str, float]], expected: list[dict[str, float]]) -> None:
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert tuple(g) == FEATURE_NAMES, f"payment {i}: keys out of order"
        assert all(isinstance(v, float) and math.isfinite(v) for v in g.values())
        for name in FEATURE_NAMES:
            assert g[name] == pytest.approx(e[name], rel=1e-12, abs=1e-12), (
                f"payment {i}: {name} = {g[name]!r}, oracle says {e[name]!r}"
            )


PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Tests


@PROPERTY
@given(streams())
def test_replay_equals_the_brute_force_oracle(stream: list[Event]) -> None:
    got = [features for _, features in replay(stream)]
    assert_same(got, oracle(stream))


@PROPERTY
@given(streams())
def test_sawtooth_windows_hold_the_sliding_window_and_at_most_one_hop_more(
    stream: list[Event],
) -> None:
    """The stated bound against plain sliding windows: ``exact(W) <= feature <= exact(W+R)``."""
    times: dict[str, list[float]] = {}
    for p, features in replay(stream):
        earlier = times.setdefault(p.card_id, [])
        t = placed(p.event_timestamp, [s for s, _ in earlier])
        for w in CARD_WINDOWS:
            ages = [t - s_t for _, s_t in earlier if s_t <= t]
            exact = sum(a <= w.length for a in ages)
            wider = sum(a < w.length + w.hop for a in ages)
            assert exact <= features[f"card_count_{w.name}"] <= wider
        earlier.append((p.event_timestamp, t))


def run(
    stream: list[Event], at: set[int], interrupt: Callable[[dict[Any, Any], float], None]
) -> list[dict[str, float]]:
    """Like ``replay``, but calls ``interrupt(states, now)`` before the events in ``at``.

    ``now`` is the earliest event time still to come plus the lateness (the most a caller of
    ``expire`` may promise), or 100 days after the last payment when none is left.
    """
    states: dict[Any, Any] = {}
    routes: dict[str, tuple[str, str, str, float] | None] = {}
    rows = []
    times = [e.event_timestamp if isinstance(e, Payment) else math.inf for e in stream]
    end = max(t for t in times if t != math.inf) + 100 * DAY
    for i, event in enumerate(stream):
        if i in at:
            interrupt(states, min(*times[i:], end) + L)
        if isinstance(event, Payment):
            if event.transaction_id in routes:
                continue
            card = states.setdefault(("card", event.card_id), CardHistory())
            terminal = states.setdefault(("terminal", event.terminal_id), EntityHistory("terminal"))
            merchant = states.setdefault(("merchant", event.merchant_id), EntityHistory("merchant"))
            rows.append(
                assemble(
                    card.observe(event),
                    terminal.observe(event),
                    merchant.observe(event),
                    calendar_features(event),
                )
            )
            routes[event.transaction_id] = (
                event.card_id,
                event.terminal_id,
                event.merchant_id,
                event.event_timestamp,
            )
        elif (route := routes.get(event.transaction_id)) and route[0] == event.card_id:
            routes[event.transaction_id] = None
            for kind, key in (("terminal", route[1]), ("merchant", route[2])):
                entity = states.setdefault((kind, key), EntityHistory(kind))
                entity.learn_label(route[3], event.reported_at.timestamp(), event.is_fraud)
    return rows


def pickled(states: dict[Any, Any], now: float) -> None:
    for key, state in states.items():
        states[key] = pickle.loads(pickle.dumps(state, pickle.HIGHEST_PROTOCOL))


def scramble(state: object) -> None:
    """Empty every list, array and dict the state holds, so a copy that shares any of them goes
    wrong."""
    for name in type(state).__slots__:
        value = getattr(state, name, None)
        if isinstance(value, list | dict):
            value.clear()
        elif isinstance(value, array):
            del value[:]
        elif isinstance(value, tuple):
            for tiles in value:
                for field in ("index", "count", "total", "peak"):
                    del getattr(tiles, field, [])[:]


def deep_copied(states: dict[Any, Any], now: float) -> None:
    for key, state in states.items():
        states[key] = copy.deepcopy(state)
        scramble(state)


def expired(states: dict[Any, Any], now: float) -> None:
    for key in list(states):
        if states[key].expire(now):
            del states[key]


@PROPERTY
@given(streams(), st.data())
@pytest.mark.parametrize("interrupt", [pickled, deep_copied], ids=["pickle", "deepcopy"])
def test_snapshot_and_restore_anywhere_changes_nothing(
    interrupt: Callable[[dict[Any, Any], float], None], stream: list[Event], data: st.DataObject
) -> None:
    at = data.draw(st.sets(st.integers(0, len(stream))))
    expected = [features for _, features in replay(stream)]
    assert_same(run(stream, at, interrupt), expected)


@PROPERTY
@given(streams(), st.data())
def test_expiry_is_invisible_to_payments_it_promises_to_serve(
    stream: list[Event], data: st.DataObject
) -> None:
    at = data.draw(st.sets(st.integers(0, len(stream))))
    expected = [features for _, features in replay(stream)]
    assert_same(run(stream, at, expired), expected)


def test_expire_empties_idle_keys_and_reports_it() -> None:
    card, terminal = CardHistory(), EntityHistory("terminal")
    for i in range(5):
        p = payment(i, BASE + i * 600, 0)
        card.observe(p)
        terminal.observe(p)
    terminal.learn_label(BASE, BASE + DAY, True)
    last = BASE + 4 * 600
    # A terminal keeps its payments SETTLED_DELAY longer: its settled rates look that far back.
    for state, kept in ((card, 0.0), (terminal, SETTLED_DELAY)):
        assert not state.expire(last + 30 * DAY + kept)  # the first payment is still in reach
        assert state.expire(last + 32 * DAY + kept + L)
