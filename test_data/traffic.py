"""Everyday payments: what the cardholders of a world buy, day by day.

Drawn for all cards at once. A card's count on a day is Poisson with its own rate times the
weekday factor (busier Fridays and Saturdays, quiet Sundays). Each payment picks a channel from
the card's mix and a local hour from the channel's daily curve. In person a cardholder mostly
returns to one of its favourite shops (85 %, the first favourites far more often) and otherwise
tries a new shop in town; cash comes from the city's bank ATMs in round sums. Online it mostly
buys from its favourite online shops, some of them abroad, from one of its own devices. Amounts
follow the card's usual amount times the category's ticket size with lognormal noise; one payment
in 300 is a big-ticket purchase (8-25x), so a large amount alone does not mean fraud.

Cardholders travel: a few times a year a card spends 2-8 days in another city (possibly abroad),
paying in person there, so a foreign country or a long distance alone does not mean fraud either.
"""

from __future__ import annotations

import numpy as np

from test_data import catalogue, geography
from test_data.columns import LEGITIMATE, NO_DEVICE, NO_INCIDENT, FloatArray, IntArray, Payments
from test_data.population import FAVOURITE_ONLINE, FAVOURITE_SHOPS, World, zipf_weights
from test_data.timeline import Timeline

FAVOURITE_SHOP_SHARE = 0.85
FAVOURITE_ONLINE_SHARE = 0.8
BIG_TICKET_SHARE = 1 / 300
TRAVEL_DAY_BOOST = 1.3
ATM_SUMS_EUR = np.array([20.0, 40.0, 50.0, 100.0, 150.0, 200.0])
ATM_SUM_WEIGHTS = np.array([0.15, 0.15, 0.25, 0.3, 0.05, 0.1])


def whereabouts(world: World, timeline: Timeline, rng: np.random.Generator) -> IntArray:
    """City each card is in on each day, shape ``(cards, days)``: home, or a trip's destination."""
    where = np.repeat(world.card_city[:, None], timeline.days, axis=1)
    trips = rng.poisson(world.card_trips * timeline.days / 30.0)
    card = np.repeat(np.arange(world.cards), trips)
    first = rng.integers(0, timeline.days, len(card))
    last = np.minimum(first + 1 + rng.poisson(2.5, len(card)), timeline.days - 1)
    destination = rng.choice(geography.N_CITIES, len(card), p=geography.VISITORS)
    home = world.card_city[card]
    destination = np.where(destination == home, (destination + 1) % geography.N_CITIES, destination)
    for c, a, b, d in zip(
        card.tolist(), first.tolist(), last.tolist(), destination.tolist(), strict=True
    ):
        where[c, a : b + 1] = d
    return where


def draw_channels(cum: FloatArray, u: FloatArray) -> IntArray:
    """Channel index per row from cumulative probabilities ``cum`` and uniform numbers ``u``."""
    return np.asarray((u[:, None] >= cum).sum(axis=1).clip(0, cum.shape[1] - 1), dtype=np.int64)


def to_minor(amount_eur: FloatArray, city: IntArray) -> IntArray:
    """Euro amounts in minor units of each ``city``'s currency, at least one unit."""
    minor = np.rint(amount_eur * geography.MINOR_PER_EURO[city])
    return np.maximum(minor, 1).astype(np.int64)


def atm_amounts(rng: np.random.Generator, city: IntArray, sums_eur: FloatArray) -> IntArray:
    """Cash sums near ``sums_eur`` rounded to what the local ATMs pay out."""
    step = geography.ATM_STEP_MINOR[city]
    raw = sums_eur * geography.MINOR_PER_EURO[city]
    return np.asarray(np.maximum(step, np.rint(raw / step) * step), dtype=np.int64)


def everyday_payments(world: World, timeline: Timeline, rng: np.random.Generator) -> Payments:
    """The legitimate payments of every card over the whole timeline."""
    where = whereabouts(world, timeline, rng)
    away = where != world.card_city[:, None]
    expected = world.card_rate[:, None] * catalogue.WEEKDAY[timeline.weekday][None, :]
    counts = rng.poisson(np.where(away, expected * TRAVEL_DAY_BOOST, expected))
    card_day = np.nonzero(counts)
    repeats = counts[card_day]
    card = np.repeat(card_day[0], repeats).astype(np.int64)
    day = np.repeat(card_day[1], repeats).astype(np.int64)
    n = len(card)
    city = where[card, day]
    at_home = city == world.card_city[card]

    channel = draw_channels(world.card_channel_cum[card], rng.random(n))
    online = (channel == catalogue.ECOM) | (channel == catalogue.MOTO)
    hour = np.where(
        online,
        rng.choice(24, n, p=catalogue.HOURLY_ONLINE),
        rng.choice(24, n, p=catalogue.HOURLY_IN_PERSON),
    )
    at_ms = timeline.local_times(city, day, hour, rng)

    # Where: favourite shop at home, a new shop in town, the bank's ATM, or an online shop.
    favourite = rng.choice(FAVOURITE_SHOPS, n, p=zipf_weights(FAVOURITE_SHOPS))
    new_shop = world.random_shop_in(city, rng.random(n))
    use_favourite = at_home & (rng.random(n) < FAVOURITE_SHOP_SHARE)
    merchant = np.where(use_favourite, world.card_shops[card, favourite], new_shop)
    favourite_online = world.card_online[
        card, rng.choice(FAVOURITE_ONLINE, n, p=zipf_weights(FAVOURITE_ONLINE))
    ]
    any_online = world.online_merchants[rng.integers(0, len(world.online_merchants), n)]
    web = np.where(rng.random(n) < FAVOURITE_ONLINE_SHARE, favourite_online, any_online)
    merchant = np.where(online, web, merchant)
    merchant = np.where(channel == catalogue.ATM, world.bank_of_city[city], merchant)
    terminal = world.random_terminal_of(merchant, rng.random(n))

    # How much, in the currency of the merchant's country.
    category = world.merchant_mcc[merchant]
    amount_eur = (
        world.card_mean_eur[card] * catalogue.TICKET[category] * np.exp(rng.normal(0.0, 0.6, n))
    )
    big = rng.random(n) < BIG_TICKET_SHARE
    amount_eur = np.where(big, amount_eur * rng.uniform(8.0, 25.0, n), amount_eur)
    merchant_city = world.merchant_city[merchant]
    amount = to_minor(amount_eur, merchant_city)
    cash = rng.choice(ATM_SUMS_EUR, n, p=ATM_SUM_WEIGHTS)
    amount = np.where(channel == catalogue.ATM, atm_amounts(rng, merchant_city, cash), amount)

    device = world.card_devices[card, (rng.random(n) < 0.2).astype(np.int64)]
    return Payments(
        card=card,
        merchant=merchant.astype(np.int64),
        terminal=terminal,
        place=city,
        at_ms=at_ms,
        amount_minor=amount,
        channel=channel,
        device=np.where(online, device, NO_DEVICE),
        latitude=world.terminal_lat[terminal],
        longitude=world.terminal_lon[terminal],
        scenario=np.full(n, LEGITIMATE, dtype=np.int64),
        incident=np.full(n, NO_INCIDENT, dtype=np.int64),
    )
