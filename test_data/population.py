"""Who pays whom: cardholders with their habits, and merchants with their terminals.

:func:`build_world` draws a :class:`World` as flat numpy columns, one row per card, merchant or
terminal, so traffic can be drawn for all cards at once. Indices are the identity; the string
ids (``s7-c0000042``) are made only when events are written out (:func:`ids`).

A card has a home city and a home (within a few km of the city centre), a usual amount (lognormal,
median 28 EUR), a payment rate, a mix of channels (its preferred channel is the largest share),
twelve favourite shops near home and six favourite online shops, one or two devices it shops
online with, and a propensity to travel. Merchants are shops (one or more card terminals at one
address), online shops (one virtual terminal, no location) and, one per city, a bank whose ATMs
pay out cash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from test_data import catalogue, geography
from test_data.spec import SimulationSpec

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SHOP, ONLINE, BANK = 0, 1, 2
FAVOURITE_SHOPS = 12
FAVOURITE_ONLINE = 6
ONLINE_SHARE = 0.15
# Online shops cluster where e-commerce is big; the rest follow the population.
_ONLINE_HUBS = ("London", "New York", "Dublin", "Amsterdam", "Berlin")


def zipf_weights(k: int, exponent: float = 0.9) -> FloatArray:
    """Normalised weights 1/rank**exponent: how often a cardholder returns to its n-th favourite."""
    w = 1.0 / np.arange(1, k + 1) ** exponent
    return np.asarray(w / w.sum(), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class World:
    """The card network: cards, merchants and terminals as parallel numpy columns."""

    seed: int
    # cards
    card_city: IntArray
    card_lat: FloatArray
    card_lon: FloatArray
    card_mean_eur: FloatArray
    card_rate: FloatArray  # payments per ordinary day
    card_channel_cum: FloatArray  # (cards, len(CHANNELS)) cumulative channel probabilities
    card_shops: IntArray  # (cards, FAVOURITE_SHOPS) merchant indices
    card_online: IntArray  # (cards, FAVOURITE_ONLINE) merchant indices
    card_devices: IntArray  # (cards, 2) device numbers
    card_trips: FloatArray  # trips per 30 days
    # merchants
    merchant_kind: IntArray
    merchant_city: IntArray
    merchant_mcc: IntArray  # index into the catalogue
    merchant_first_terminal: IntArray
    merchant_terminals: IntArray
    shops_by_city: IntArray  # shop merchant indices ordered by city
    city_shop_start: IntArray  # (N_CITIES + 1,) offsets into shops_by_city
    bank_of_city: IntArray
    online_merchants: IntArray
    # terminals
    terminal_merchant: IntArray
    terminal_lat: FloatArray  # NaN for online terminals
    terminal_lon: FloatArray

    @property
    def cards(self) -> int:
        return len(self.card_city)

    def random_shop_in(self, city: IntArray, u: FloatArray) -> IntArray:
        """A shop in each ``city`` picked by uniform numbers ``u`` (any shop if a city has none)."""
        return _shop_in(self.shops_by_city, self.city_shop_start, city, u)

    def random_terminal_of(self, merchant: IntArray, u: FloatArray) -> IntArray:
        """A terminal of each ``merchant`` picked by uniform numbers ``u``."""
        return self.merchant_first_terminal[merchant] + (
            u * self.merchant_terminals[merchant]
        ).astype(np.int64)


def _shop_in(
    shops_by_city: IntArray, city_shop_start: IntArray, city: IntArray, u: FloatArray
) -> IntArray:
    start = city_shop_start[city]
    count = city_shop_start[city + 1] - start
    anywhere = count == 0
    start = np.where(anywhere, 0, start)
    count = np.where(anywhere, len(shops_by_city), count)
    return shops_by_city[start + (u * count).astype(np.int64)]


def _around(
    rng: np.random.Generator, city: IntArray, spread_deg: float
) -> tuple[FloatArray, FloatArray]:
    lat = geography.LATITUDES[city] + rng.normal(0.0, spread_deg, len(city))
    lon = geography.LONGITUDES[city] + rng.normal(0.0, spread_deg, len(city)) / np.cos(
        np.radians(geography.LATITUDES[city])
    )
    return np.round(lat, 5), np.round(lon, 5)


def build_world(spec: SimulationSpec, rng: np.random.Generator) -> World:
    """Draw the cards, merchants and terminals of ``spec`` from ``rng``."""
    n_cities = geography.N_CITIES
    # --- merchants: shops, online shops, then one bank per city
    n_online = max(1, round(ONLINE_SHARE * spec.merchants))
    n_shops = spec.merchants - n_online
    shop_weights = 0.85 * geography.RESIDENTS + 0.15 * geography.VISITORS
    shop_city = np.concatenate(
        [
            np.arange(min(n_shops, n_cities)),  # every city gets a shop when there are enough
            rng.choice(n_cities, max(0, n_shops - n_cities), p=shop_weights),
        ]
    ).astype(np.int64)
    hub = np.isin(np.array(geography.CITY_NAMES), _ONLINE_HUBS).astype(float)
    online_weights = 0.6 * geography.RESIDENTS + 0.4 * hub / hub.sum()
    online_city = rng.choice(n_cities, n_online, p=online_weights / online_weights.sum())
    kind = np.concatenate(
        [np.full(n_shops, SHOP), np.full(n_online, ONLINE), np.full(n_cities, BANK)]
    ).astype(np.int64)
    city = np.concatenate([shop_city, online_city, np.arange(n_cities)]).astype(np.int64)
    n_categories = len(catalogue.MCC_CODES)
    mcc = np.concatenate(
        [
            rng.choice(n_categories, n_shops, p=catalogue.SHOP_WEIGHTS),
            rng.choice(n_categories, n_online, p=catalogue.ONLINE_WEIGHTS),
            np.full(n_cities, catalogue.ATM_MCC),
        ]
    ).astype(np.int64)
    terminals = np.concatenate(
        [
            1 + rng.poisson(spec.terminals_per_merchant - 1, n_shops),
            np.ones(n_online, dtype=np.int64),
            np.maximum(2, np.round(geography.RESIDENTS * 60 * spec.terminals_per_merchant)),
        ]
    ).astype(np.int64)
    first_terminal = np.concatenate([[0], np.cumsum(terminals)[:-1]]).astype(np.int64)
    # --- terminals: a shop's terminals share its address; ATMs are spread over the city
    terminal_merchant = np.repeat(np.arange(len(kind)), terminals)
    shop_lat, shop_lon = _around(rng, city, 0.06)
    atm_lat, atm_lon = _around(rng, city[terminal_merchant], 0.05)
    t_kind = kind[terminal_merchant]
    terminal_lat = np.where(
        t_kind == SHOP, shop_lat[terminal_merchant], np.where(t_kind == BANK, atm_lat, np.nan)
    )
    terminal_lon = np.where(
        t_kind == SHOP, shop_lon[terminal_merchant], np.where(t_kind == BANK, atm_lon, np.nan)
    )
    shops_by_city = np.flatnonzero(kind == SHOP)[np.argsort(shop_city, kind="stable")]
    city_shop_start = np.concatenate(
        [[0], np.cumsum(np.bincount(shop_city, minlength=n_cities))]
    ).astype(np.int64)
    online_merchants = np.flatnonzero(kind == ONLINE)
    # --- cards
    n = spec.cards
    card_city = rng.choice(n_cities, n, p=geography.RESIDENTS).astype(np.int64)
    card_lat, card_lon = _around(rng, card_city, 0.06)
    mean_eur = np.exp(rng.normal(np.log(28.0), 0.55, n))
    sigma = 0.6
    rate = spec.payments_per_card_per_day * np.exp(rng.normal(-(sigma**2) / 2, sigma, n))
    ecom = 0.8 * rng.beta(2.0, 5.0, n)
    atm = 0.02 + rng.beta(1.0, 40.0, n)
    moto = np.full(n, 0.004)
    present = 1.0 - ecom - atm - moto
    contactless = present * rng.beta(4.0, 2.0, n)
    probs = np.stack([present - contactless, contactless, ecom, atm, moto], axis=1)
    channel_cum = np.cumsum(probs, axis=1)
    channel_cum[:, -1] = 1.0
    favourite_city = np.repeat(card_city, FAVOURITE_SHOPS)
    card_shops = _shop_in(
        shops_by_city, city_shop_start, favourite_city, rng.random(len(favourite_city))
    ).reshape(n, FAVOURITE_SHOPS)
    card_online = online_merchants[rng.integers(0, len(online_merchants), (n, FAVOURITE_ONLINE))]
    # Device numbers are random, so nothing about a device's number tells whose it is.
    devices = rng.integers(0, 2**40, (n, 2), dtype=np.int64)
    trips = rng.exponential(0.25, n)
    return World(
        seed=spec.seed,
        card_city=card_city,
        card_lat=card_lat,
        card_lon=card_lon,
        card_mean_eur=mean_eur,
        card_rate=rate,
        card_channel_cum=channel_cum,
        card_shops=card_shops,
        card_online=card_online,
        card_devices=devices,
        card_trips=trips,
        merchant_kind=kind,
        merchant_city=city,
        merchant_mcc=mcc,
        merchant_first_terminal=first_terminal,
        merchant_terminals=terminals,
        shops_by_city=shops_by_city,
        city_shop_start=city_shop_start,
        bank_of_city=np.flatnonzero(kind == BANK),
        online_merchants=online_merchants,
        terminal_merchant=terminal_merchant,
        terminal_lat=terminal_lat,
        terminal_lon=terminal_lon,
    )


@dataclass(frozen=True)
class Ids:
    """String ids of a world's cards, merchants and terminals; made once per simulation."""

    prefix: str
    cards: list[str]
    merchants: list[str]
    terminals: list[str]

    def transaction(self, index: int) -> str:
        return f"{self.prefix}-tx{index:010d}"

    def device(self, number: int) -> str:
        return f"{self.prefix}-d{number:010x}"


def ids(world: World) -> Ids:
    """Ids with the seed as a prefix, so that two worlds never share a card or a transaction."""
    prefix = f"s{world.seed}"
    kind_tag = {SHOP: "pos", ONLINE: "web", BANK: "atm"}
    kinds = world.merchant_kind[world.terminal_merchant].tolist()
    return Ids(
        prefix=prefix,
        cards=[f"{prefix}-c{i:07d}" for i in range(world.cards)],
        merchants=[f"{prefix}-m{i:06d}" for i in range(len(world.merchant_kind))],
        terminals=[f"{prefix}-{kind_tag[k]}{i:07d}" for i, k in enumerate(kinds)],
    )
