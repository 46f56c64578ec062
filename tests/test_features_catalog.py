"""The catalogue, calendar, currency, distance and window arithmetic, and the replay's routing."""

from __future__ import annotations

import pickle
import re
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from features.calendar import calendar_features
from features.card import CardHistory
from features.catalog import (
    CALENDAR_FEATURE_NAMES,
    FEATURE_NAMES,
    NO_HISTORY,
    assemble,
    entity_feature_names,
)
from features.contract import CURRENCIES, FraudLabel, PaymentDecoder
from features.currency import EUR_REFERENCE_RATES, eur_cents
from features.entity import EntityHistory
from features.geo import haversine_km
from features.replay import replay
from features.windows import AmountTiles, CountTiles, Window
from tests.builders import BASE, payment

PLAIN = payment(transaction_id="t-1")


def test_feature_names_are_unique_snake_case_and_stable() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == 42
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in FEATURE_NAMES)
    assert FEATURE_NAMES[:5] == (
        "amount_eur",
        "card_count_1h",
        "card_amount_sum_1h",
        "card_amount_mean_1h",
        "card_amount_max_1h",
    )
    assert FEATURE_NAMES[-3:] == CALENDAR_FEATURE_NAMES


def test_first_payment_gets_the_neutral_value_of_every_history_feature() -> None:
    ((_, features),) = replay([PLAIN])
    assert tuple(features) == FEATURE_NAMES
    assert {name: features[name] for name in NO_HISTORY} == dict(NO_HISTORY)


def test_assemble_names_the_parts_when_they_come_in_the_wrong_order() -> None:
    card = CardHistory().observe(PLAIN)
    terminal = EntityHistory("terminal").observe(PLAIN)
    merchant = EntityHistory("merchant").observe(PLAIN)
    calendar = calendar_features(PLAIN)
    assert tuple(assemble(card, terminal, merchant, calendar)) == FEATURE_NAMES
    with pytest.raises(ValueError, match=r"pass the parts in this order, from CardHistory, Entity"):
        assemble(card, merchant, terminal, calendar)
    with pytest.raises(ValueError, match=r"missing \['terminal_count_1d'"):
        assemble(card, {}, merchant, calendar)


def test_entity_feature_names_follow_the_prefix() -> None:
    assert entity_feature_names("terminal") == (
        "terminal_count_1d",
        "terminal_count_7d",
        "terminal_count_30d",
        "terminal_fraud_rate_7d",
        "terminal_fraud_rate_30d",
        "terminal_settled_fraud_rate_1d",
        "terminal_settled_fraud_rate_7d",
        "terminal_settled_fraud_rate_30d",
    )


CALENDAR = [
    # event time as the producer sends it, hour, night, weekend
    ("2026-11-06T23:30:00-05:00", 23.0, 0.0, 0.0),  # Friday night in New York, Saturday in UTC
    ("2026-11-07T00:30:00+01:00", 0.0, 1.0, 1.0),  # Saturday 00:30 in Paris, Friday in UTC
    ("2026-11-08T05:59:59+05:30", 5.0, 1.0, 1.0),  # Sunday, last second of the night
    ("2026-11-09T06:00:00+00:00", 6.0, 0.0, 0.0),  # Monday, first second of the day
    ("2026-11-08T23:59:59+14:00", 23.0, 0.0, 1.0),  # Sunday at UTC+14
    ("2026-11-09T00:00:00-12:00", 0.0, 1.0, 0.0),  # Monday at UTC-12
]


@pytest.mark.parametrize(("when", "hour", "night", "weekend"), CALENDAR)
def test_calendar_features_are_in_the_payments_own_time_zone(
    when: str, hour: float, night: float, weekend: float
) -> None:
    raw = PaymentDecoder().decode(
        b'{"transaction_id": "t", "card_id": "c", "merchant_id": "m", "terminal_id": "p", '
        b'"amount_minor": 100, "currency": "EUR", "event_time": "' + when.encode() + b'", '
        b'"mcc": "5411", "channel": "pos", "country": "FR"}'
    )
    expected = {"hour_of_day": hour, "is_night": night, "is_weekend": weekend}
    assert calendar_features(raw) == expected
    assert calendar_features(replace(PLAIN, event_time=datetime.fromisoformat(when))) == expected


def test_calendar_follows_a_named_zone_across_daylight_saving() -> None:
    paris = ZoneInfo("Europe/Paris")
    summer = replace(PLAIN, event_time=datetime(2026, 7, 4, 5, 30, tzinfo=paris))  # UTC+2
    winter = replace(PLAIN, event_time=datetime(2026, 1, 3, 5, 30, tzinfo=paris))  # UTC+1
    assert calendar_features(summer)["hour_of_day"] == calendar_features(winter)["hour_of_day"]


def test_every_contract_currency_has_a_reference_rate() -> None:
    assert set(CURRENCIES) <= set(EUR_REFERENCE_RATES), sorted(
        set(CURRENCIES) - set(EUR_REFERENCE_RATES)
    )
    assert all(rate > 0 for rate in EUR_REFERENCE_RATES.values())


@pytest.mark.parametrize(
    ("amount_minor", "currency", "cents"),
    [
        (1250, "EUR", 1250),
        (1, "EUR", 1),
        (16_000, "JPY", 10_000),  # no minor unit
        (1100, "USD", 1000),
        (3380, "KWD", 1000),  # three decimals: 3.380 KWD
        (1000, "XAF", 152),  # fixed parity 655.957
        (500, "ZZZ", 500),  # unknown: 1:1, never an error
    ],
)
def test_eur_cents(amount_minor: int, currency: str, cents: int) -> None:
    assert eur_cents(amount_minor, currency) == cents


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        ((48.8566, 2.3522), (51.5074, -0.1278), 343.6),  # Paris, London
        ((0.0, 0.0), (0.0, 180.0), 20_015.1),  # half the equator
        ((90.0, 0.0), (-90.0, 0.0), 20_015.1),  # pole to pole
        ((10.0, 179.9), (10.0, -179.9), 21.9),  # across the antimeridian
    ],
)
def test_haversine(a: tuple[float, float], b: tuple[float, float], km: float) -> None:
    assert haversine_km(*a, *b) == pytest.approx(km, abs=0.1)


WINDOW_STARTS = [
    # window, t (seconds), expected start
    (Window("1h", 3600, 300), 7_200.0, 3_600.0),  # on a hop boundary: exactly W
    (Window("1h", 3600, 300), 7_499.999, 3_600.0),  # just before the next hop: W + R - 0.001
    (Window("1h", 3600, 300), 7_500.0, 3_900.0),
    (Window("24h", 86_400, 3_600), 1_767_571_200.0, 1_767_484_800.0),  # 2026-01-05 00:00 UTC
    (Window("30d", 2_592_000, 86_400), -1.0, -2_678_400.0),  # before the epoch: floors down
]


@pytest.mark.parametrize(("window", "t", "start"), WINDOW_STARTS)
def test_window_start(window: Window, t: float, start: float) -> None:
    assert window.start(t) == start
    assert window.length <= t - window.start(t) < window.length + window.hop


def test_window_length_must_be_whole_hops() -> None:
    with pytest.raises(ValueError, match=r"window '7d': length must be a positive whole number"):
        Window("7d", 7 * 86_400, 7_000)


def test_tiles_take_events_in_any_order() -> None:
    tiles = AmountTiles(3600)
    events = [(7_300.0, 5), (100.0, 7), (3_700.0, 1), (7_200.0, 9), (150.0, 2), (3_650.0, 0)]
    for t, cents in events:
        tiles.add(t, cents)
    assert list(tiles.index) == [0, 1, 2]
    assert tiles.aggregate_from(0) == (6, 5, 24, 9)  # the 0 is an event, not a payment of money
    assert tiles.aggregate_from(1) == (4, 3, 15, 9)
    assert tiles.aggregate_from(3) == (0, 0, 0, 0)
    tiles.drop_before(2)
    assert tuple(map(list, (tiles.index, tiles.count, tiles.paid, tiles.total, tiles.peak))) == (
        [2],
        [2],
        [2],
        [14],
        [9],
    )
    counts = CountTiles(60)
    for t in (200.0, 10.0, 70.0, 65.0):
        counts.add(t)
    assert (list(counts.index), list(counts.count), counts.count_from(1)) == (
        [0, 1, 3],
        [1, 2, 1],
        3,
    )


@given(
    st.lists(
        st.tuples(
            st.one_of(st.floats(-1e6, 1e6), st.floats(-1e30, 1e30)),  # indices past 64 bits
            st.one_of(st.integers(1, 3), st.integers(1, 2**70)),
        ),
        max_size=40,
    ),
    st.integers(-(2**80), 2**80),
    st.integers(-(2**80), 2**80),
)
def test_count_tiles_count_exactly_what_they_were_given_however_large(
    events: list[tuple[float, int]], first: int, end: int
) -> None:
    """Exact for any times and counts, including tile indices and counts past 64 bits."""
    tiles, reference = CountTiles(300), Counter[int]()
    for t, n in events:
        tiles.add(t, n)
        reference[int(t // 300)] += n
    assert list(tiles.index) == sorted(reference) and len(tiles) == len(reference)
    assert list(tiles.count) == [reference[i] for i in sorted(reference)]
    assert tiles.count_from(first) == sum(n for i, n in reference.items() if i >= first)
    assert tiles.count_between(first, end) == sum(
        n for i, n in reference.items() if first <= i < end
    )
    again = CountTiles(300)
    again.restore(pickle.loads(pickle.dumps(tiles.state())))
    copied = tiles.copy()
    tiles.drop_before(first)
    assert (list(again.index), list(again.count)) == (sorted(reference), list(copied.count))
    assert list(tiles.index) == [i for i in sorted(reference) if i >= first]


def test_replay_skips_repeated_payments_and_routes_one_label_per_payment() -> None:
    later = replace(PLAIN, transaction_id="t-2", event_time=BASE + timedelta(days=2))
    fraud = FraudLabel(
        transaction_id="t-1", card_id="c-1", is_fraud=True, reported_at=BASE + timedelta(days=1)
    )
    unknown = replace(fraud, transaction_id="t-9")
    other_card = replace(fraud, transaction_id="t-11", card_id="c-2")
    more = [
        replace(PLAIN, transaction_id=f"t-1{i}", event_time=BASE + timedelta(minutes=i))
        for i in (1, 2, 3)
    ]
    stream = [PLAIN, *more, unknown, other_card, fraud, fraud, more[0], later]
    rows = list(replay(stream))
    # One fraud among the four earlier payments: the unknown, wrong-card and repeated labels are
    # ignored, and the repeated payment t-11 is neither scored nor counted.
    assert [features["merchant_fraud_rate_7d"] for _, features in rows] == [0, 0, 0, 0, 0.25]
    assert [p.transaction_id for p, _ in rows] == ["t-1", "t-11", "t-12", "t-13", "t-2"]
    assert rows[-1][1]["merchant_count_7d"] == 4


def test_replay_rejects_other_events_and_says_what_it_wants() -> None:
    with pytest.raises(TypeError, match=r"Payment and FraudLabel events; got a dict"):
        list(replay([{"transaction_id": "t-1"}]))  # type: ignore[list-item]
