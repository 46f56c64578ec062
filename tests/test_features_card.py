"""Card features, table-driven: window edges, first payment, ties, lateness, merchants, country."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest
from msgspec.structs import replace

from features.card import CardHistory
from features.catalog import CARD_MERCHANT_MEMORY, DAY, HOUR, MINUTE, NO_HISTORY
from features.contract import Payment
from tests.builders import BASE, payment

PLAIN = payment(merchant_id="m-A")
CARD_NO_HISTORY = {k: v for k, v in NO_HISTORY.items() if k.startswith("card_")}
PARIS = {"latitude": 48.8566, "longitude": 2.3522}
LONDON = {"latitude": 51.5074, "longitude": -0.1278}


def at(seconds: float, **fields: object) -> Payment:
    """A payment ``seconds`` after BASE (Monday 00:00 UTC), with other fields replaced."""
    return replace(PLAIN, event_time=BASE + timedelta(seconds=seconds), **fields)


def features(history: list[Payment], scored: Payment) -> dict[str, float]:
    card = CardHistory()
    for p in history:
        card.observe(p)
    return card.observe(scored)


CASES = [
    # id, earlier payments (arrival order), scored payment, expected subset
    ("first payment", [], at(0), {**CARD_NO_HISTORY, "amount_eur": 10.0}),
    (
        "equal times: the later arrival sees the earlier",
        [at(600)],
        at(600),
        {"card_count_1h": 1, "card_seconds_since_prev": 0, "card_amount_sum_1h": 10.0},
    ),
    # 1h window, hop 5 min: a payment at 00:02 ...
    ("1h: exactly W old is in", [at(2 * MINUTE)], at(HOUR + 2 * MINUTE), {"card_count_1h": 1}),
    (
        "1h: W + rest of hop is in",
        [at(2 * MINUTE)],
        at(HOUR + 5 * MINUTE - 1),
        {"card_count_1h": 1},
    ),
    ("1h: next hop is out", [at(2 * MINUTE)], at(HOUR + 5 * MINUTE), {"card_count_1h": 0}),
    # 24h window, hop 1 h: a payment at 00:30 ...
    ("24h: exactly W old is in", [at(30 * MINUTE)], at(DAY + 30 * MINUTE), {"card_count_24h": 1}),
    ("24h: W + rest of hop is in", [at(30 * MINUTE)], at(DAY + HOUR - 1), {"card_count_24h": 1}),
    ("24h: next hop is out", [at(30 * MINUTE)], at(DAY + HOUR), {"card_count_24h": 0}),
    ("7d: exactly W old is in", [at(30 * MINUTE)], at(7 * DAY + 30 * MINUTE), {"card_count_7d": 1}),
    ("7d: next hop is out", [at(30 * MINUTE)], at(7 * DAY + HOUR), {"card_count_7d": 0}),
    # 30d window, hop 1 day: a payment at 12:00 on day 0 ...
    ("30d: exactly W old is in", [at(12 * HOUR)], at(30 * DAY + 12 * HOUR), {"card_count_30d": 1}),
    ("30d: W + rest of hop is in", [at(12 * HOUR)], at(31 * DAY - 1), {"card_count_30d": 1}),
    (
        "30d: next hop is out, previous payment too old",
        [at(12 * HOUR)],
        at(31 * DAY),
        {"card_count_30d": 0, "card_seconds_since_prev": 30 * DAY, "card_merchant_new_30d": 1},
    ),
    (
        "windows: count, sum, mean, max; own amount not included",
        [at(0, amount_minor=1000), at(60, amount_minor=3000), at(120, amount_minor=500)],
        at(180, amount_minor=99_900),
        {
            "card_count_1h": 3,
            "card_amount_sum_1h": 45.0,
            "card_amount_mean_1h": 15.0,
            "card_amount_max_1h": 30.0,
            "card_amount_to_mean_30d": 999.0 / 15.0,
            "amount_eur": 999.0,
        },
    ),
    (
        "amounts in euros at the reference rate",
        [at(0, amount_minor=16_000, currency="JPY")],
        at(60, amount_minor=1100, currency="USD"),
        {"card_amount_sum_1h": 100.0, "amount_eur": 10.0},
    ),
    (
        "out of order within the lateness: placed at its own time, sees only earlier ones",
        [at(10 * HOUR)],
        at(10 * HOUR - 10 * MINUTE),
        {"card_count_1h": 0, "card_seconds_since_prev": 30 * DAY},
    ),
    (
        "after a late payment, a later one sees both",
        [at(10 * HOUR), at(10 * HOUR - 10 * MINUTE)],
        at(10 * HOUR + 5 * MINUTE),
        {"card_count_1h": 2, "card_seconds_since_prev": 5 * MINUTE},
    ),
    (
        "beyond the lateness: placed at watermark - 15 min (09:45), seen there",
        [at(10 * HOUR), at(9 * HOUR)],
        at(9 * HOUR + 50 * MINUTE),
        {"card_count_1h": 1, "card_seconds_since_prev": 5 * MINUTE},
    ),
    (
        "new merchant",
        [at(0, merchant_id="m-A")],
        at(60, merchant_id="m-B"),
        {"card_merchant_new_30d": 1, "card_distinct_merchants_24h": 1},
    ),
    (
        "known merchant",
        [at(0, merchant_id="m-A"), at(30, merchant_id="m-B"), at(40, merchant_id="m-A")],
        at(60, merchant_id="m-A"),
        {"card_merchant_new_30d": 0, "card_distinct_merchants_24h": 2},
    ),
    (
        "merchant seen only 31 days ago is new again",
        [at(0, merchant_id="m-A"), at(31 * DAY, merchant_id="m-B")],
        at(31 * DAY + 60, merchant_id="m-A"),
        {"card_merchant_new_30d": 1},
    ),
    (
        "usual country",
        [at(0, country="FR"), at(60, country="FR"), at(120, country="DE")],
        at(180, country="FR"),
        {"card_country_unusual": 0},
    ),
    (
        "unusual country",
        [at(0, country="FR"), at(60, country="FR"), at(120, country="DE")],
        at(180, country="DE"),
        {"card_country_unusual": 1},
    ),
    (
        "a tie: every most frequent country is usual",
        [at(0, country="FR"), at(60, country="DE")],
        at(180, country="DE"),
        {"card_country_unusual": 0},
    ),
    (
        "country out of the 30d window is forgotten",
        [at(0, country="DE"), at(0, country="DE"), at(31 * DAY, country="FR")],
        at(31 * DAY + 60, country="DE"),
        {"card_country_unusual": 1},
    ),
    (
        "speed: Paris then London an hour later",
        [at(0, **PARIS)],
        at(HOUR, **LONDON),
        {"card_speed_kmh": pytest.approx(343.56, abs=0.01)},
    ),
    (
        "speed: seconds apart counts as a minute",
        [at(0, **PARIS)],
        at(10, **LONDON),
        {"card_speed_kmh": pytest.approx(343.56 * 60, rel=1e-4)},
    ),
    (
        "speed: previous payment without coordinates",
        [at(0)],
        at(HOUR, **LONDON),
        {"card_speed_kmh": 0},
    ),
]


@pytest.mark.parametrize(
    ("history", "scored", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_card_features(history: list[Payment], scored: Payment, expected: dict[str, float]) -> None:
    got = features(history, scored)
    assert {name: got[name] for name in expected} == expected


def test_state_is_bounded_by_time_not_traffic() -> None:
    card = CardHistory()
    minute_payments = [at(i * 86.4, merchant_id=f"m-{i % 400}") for i in range(40 * 1000)]
    for p in minute_payments[::4]:  # 250 payments a day for 40 days, 100 merchants
        card.observe(p)
    r = repr(card)
    assert all(len(t) <= keep + 1 for t, keep in zip(card._tiles, (12, 168, 30), strict=True)), r
    assert len(card._merchants) == CARD_MERCHANT_MEMORY, r
    assert len(card._ts) <= 4, r
    assert len(pickle.dumps(card)) < 8_000


def test_a_card_forgets_its_oldest_merchants_beyond_its_memory() -> None:
    card = CardHistory()
    n = CARD_MERCHANT_MEMORY + 2  # an hour apart: all but the last are folded when scoring
    for i in range(n):
        card.observe(at(i * HOUR, merchant_id=f"m-{i}"))
    assert card.observe(at(n * HOUR, merchant_id="m-0"))["card_merchant_new_30d"] == 1.0
    assert card.observe(at(n * HOUR + 1, merchant_id=f"m-{n - 1}"))["card_merchant_new_30d"] == 0.0


def test_pickled_card_paying_ten_times_a_day_for_a_month_is_small() -> None:
    card = CardHistory()
    for i in range(35 * 10):
        card.observe(at(i * 2.4 * HOUR + 7, merchant_id=f"m-{i % 7}", **PARIS))
    assert len(pickle.dumps(card, pickle.HIGHEST_PROTOCOL)) < 3_000


@pytest.mark.parametrize("lateness", [-1.0, float("nan"), float("inf")])
def test_lateness_must_be_a_finite_non_negative_number(lateness: float) -> None:
    with pytest.raises(ValueError, match=r"CardHistory: lateness must be a finite number of sec"):
        CardHistory(lateness)


def test_zero_lateness_places_every_late_payment_at_the_latest_time() -> None:
    card = CardHistory(lateness=0)
    card.observe(at(HOUR))
    assert card.observe(at(0))["card_seconds_since_prev"] == 0.0


def test_expire_takes_event_time_and_says_so() -> None:
    with pytest.raises(ValueError, match=r"CardHistory.expire: now must be finite POSIX seconds"):
        CardHistory().expire(float("nan"))


def test_a_payment_dated_before_what_expire_was_promised_is_placed_like_a_late_one() -> None:
    card = CardHistory()
    card.observe(at(0))
    assert not card.expire(BASE.timestamp() + 2 * HOUR)  # the flow's clock: 02:00
    assert card.watermark == BASE.timestamp() + 2 * HOUR
    late = card.observe(at(10 * MINUTE))  # dated 00:10, placed at 01:45
    assert late["card_seconds_since_prev"] == 105 * MINUTE


def test_a_zero_amount_verification_counts_as_an_event_not_as_money() -> None:
    card = CardHistory()
    for n, minor in enumerate([1000, 0, 3000, 0]):
        card.observe(at(n * 60, amount_minor=minor))
    f = card.observe(at(300, amount_minor=4000))
    assert f["card_count_1h"] == 4.0  # the verifications are events of the card
    assert f["card_amount_sum_1h"] == 40.0
    assert f["card_amount_mean_1h"] == 20.0  # over the two payments with money
    assert f["card_amount_max_1h"] == 30.0
    assert f["card_amount_to_mean_30d"] == 2.0
    assert f["card_seconds_since_prev"] == 120.0  # the last verification was the previous event
