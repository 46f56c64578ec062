"""Fraud as a fraud team meets it: five scenarios, each written into the traffic as incidents.

The fraud budget is ``fraud_rate`` of all payments, split over the scenarios by the spec's
:class:`~test_data.spec.ScenarioMix`; each scenario adds incidents until its share is spent. No
scenario uses special cards, merchants, terminals or device numbers: what gives fraud away is
behaviour, as a per-card feature pipeline sees it.

``card_testing``
    A stolen card number is tried with a burst of 5-20 tiny online payments (0.30-4 EUR, often
    exactly 0.50, 1 or 2) a minute or so apart, mostly at night, at one or two digital-goods or
    charity shops, often abroad, from a device the card never used. Shows as: payment count in
    the last hour far above the card's norm, seconds since the previous payment small, tiny
    amounts, new merchant, new device, foreign country, night hour.
``compromised_terminal``
    A shop terminal is rigged (or a skimmed card's clones are cashed at a colluding shop): for
    2-6 weeks it takes 1.5-4 extra payments a day with cards from all over the network, 25-2,500
    EUR, half of them at night. Shows as: the terminal's fraud rate (from earlier labels), new
    merchant for the card, distance from the card's previous payment, amount above the card's
    usual, night hour.
``account_takeover``
    Someone takes over a card's online account: over 6-72 hours, 2-10 online or mail-order
    payments of 6-25x the card's usual amount (at least 150 EUR) at electronics, jewellery, gift
    card and money-transfer shops from a new device. Shows as: amount against the card's 30-day
    mean and max, sum over 24 h, new device, new merchant, channel unusual for the card.
``impossible_travel``
    A cloned card is used in person more than 1,500 km from where the real card paid 5-90
    minutes earlier: 1-6 payments, mostly ATM withdrawals of 200-500 EUR and expensive shop
    purchases. Shows as: distance and speed from the previous payment (far beyond a plane's),
    foreign country, ATM channel, amount.
``large_amount``
    One payment of 25-60x the card's usual amount (at least 900-4,000 EUR) at a jeweller,
    electronics or travel seller, online or in a shop, often at night. Shows as: amount against
    the card's 30-day max, new merchant, night hour, often a new device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from test_data import catalogue, geography
from test_data.columns import NO_DEVICE, IntArray, Payments
from test_data.population import World
from test_data.spec import SCENARIOS, SimulationSpec
from test_data.timeline import HOUR_MS, Timeline
from test_data.traffic import atm_amounts, to_minor

MINUTE_MS = 60_000
FAR_KM = 1500.0


class Fraudsters:
    """Shared state of the scenarios: the world, the clock, the everyday traffic, the dice."""

    def __init__(
        self, world: World, timeline: Timeline, everyday: Payments, rng: np.random.Generator
    ) -> None:
        self.world = world
        self.timeline = timeline
        self.everyday = everyday
        self.rng = rng
        self._incidents = 0
        self._online_mcc = world.merchant_mcc[world.online_merchants]

    # -- helpers -----------------------------------------------------------------------------
    def online_shops(self, mccs: IntArray) -> IntArray:
        """Online shops selling in ``mccs``; every online shop if none does."""
        online = self.world.online_merchants
        chosen = online[np.isin(self._online_mcc, mccs)]
        return chosen if len(chosen) else online

    def shops_in(self, city: int, mccs: IntArray) -> IntArray:
        """Shops of ``city`` selling in ``mccs``; any shop of the city, or any shop, if none."""
        w = self.world
        in_city = w.shops_by_city[w.city_shop_start[city] : w.city_shop_start[city + 1]]
        chosen = in_city[np.isin(w.merchant_mcc[in_city], mccs)]
        if len(chosen):
            return chosen
        return in_city if len(in_city) else w.shops_by_city

    def new_device(self) -> int:
        return int(self.rng.integers(0, 2**40))

    def at_local(self, city: int, day: int | IntArray, curve: np.ndarray, k: int = 1) -> IntArray:
        """``k`` instants on local ``day`` in ``city`` at hours drawn from ``curve``."""
        hours = self.rng.choice(24, k, p=curve)
        return self.timeline.local_times(
            np.full(k, city), np.broadcast_to(np.asarray(day), (k,)), hours, self.rng
        )

    def incident(
        self,
        scenario: str,
        *,
        card: IntArray | int,
        merchant: IntArray,
        at_ms: IntArray,
        amount_minor: IntArray,
        channel: IntArray | int,
        place: IntArray | int,
        device: IntArray | int = NO_DEVICE,
        terminal: IntArray | None = None,
    ) -> Payments:
        """One incident's payments; ``terminal`` defaults to a random one of each ``merchant``."""
        k = len(merchant)
        if terminal is None:
            terminal = self.world.random_terminal_of(merchant, self.rng.random(k))
        self._incidents += 1

        def column(value: IntArray | int) -> IntArray:
            return np.broadcast_to(np.asarray(value, dtype=np.int64), (k,)).copy()

        return Payments(
            card=column(card),
            merchant=merchant.astype(np.int64),
            terminal=terminal,
            place=column(place),
            at_ms=at_ms.astype(np.int64),
            amount_minor=amount_minor.astype(np.int64),
            channel=column(channel),
            device=column(device),
            latitude=self.world.terminal_lat[terminal],
            longitude=self.world.terminal_lon[terminal],
            scenario=column(1 + SCENARIOS.index(scenario)),
            incident=column(self._incidents),
        )


# -- the scenarios -------------------------------------------------------------------------------


def card_testing(f: Fraudsters, budget: int) -> list[Payments]:
    w, rng, out = f.world, f.rng, []
    shops = f.online_shops(catalogue.CARD_TESTING_MCCS)
    while budget > 0:
        k = min(budget, 5 + int(rng.poisson(7)))
        card = int(rng.integers(w.cards))
        home = int(w.card_city[card])
        foreign = shops[geography.COUNTRIES[w.merchant_city[shops]] != geography.COUNTRIES[home]]
        pool = foreign if len(foreign) and rng.random() < 0.7 else shops
        merchant = rng.choice(rng.choice(pool, 2), k)
        gaps = 5_000 + rng.exponential(70_000, k)
        start = f.at_local(home, int(rng.integers(f.timeline.days)), catalogue.HOURLY_NIGHT)[0]
        at = start + np.cumsum(gaps) - gaps[0]
        eur = np.where(
            rng.random(k) < 0.4, rng.choice([0.5, 1.0, 2.0], k), rng.uniform(0.3, 4.0, k)
        )
        out.append(
            f.incident(
                "card_testing",
                card=card,
                merchant=merchant,
                at_ms=at.astype(np.int64),
                amount_minor=to_minor(eur, w.merchant_city[merchant]),
                channel=catalogue.ECOM,
                place=home,
                device=f.new_device(),
            )
        )
        budget -= k
    return out


def compromised_terminal(f: Fraudsters, budget: int) -> list[Payments]:
    w, rng, days, out = f.world, f.rng, f.timeline.days, []
    terminal_of_shop = w.merchant_kind[w.terminal_merchant] == 0
    skimmable = np.isin(w.merchant_mcc[w.terminal_merchant], catalogue.SKIMMED_SHOP_MCCS)
    candidates = np.flatnonzero(terminal_of_shop & skimmable)
    if not len(candidates):
        candidates = np.flatnonzero(terminal_of_shop)
    while budget > 0:
        terminal = int(rng.choice(candidates))
        merchant = int(w.terminal_merchant[terminal])
        city = int(w.merchant_city[merchant])
        first = int(rng.integers(0, max(1, days - 7)))
        last = min(days - 1, first + int(rng.integers(14, 43)) - 1)
        k = min(budget, max(1, round(rng.uniform(1.5, 4.0) * (last - first + 1))))
        day = rng.integers(first, last + 1, k)
        night = rng.random(k) < 0.5
        hour = np.where(
            night,
            rng.choice(24, k, p=catalogue.HOURLY_NIGHT),
            rng.choice(24, k, p=catalogue.HOURLY_IN_PERSON),
        )
        at = f.timeline.local_times(np.full(k, city), day, hour, rng)
        eur = np.clip(np.exp(rng.normal(np.log(180.0), 0.6, k)), 25.0, 2500.0)
        out.append(
            f.incident(
                "compromised_terminal",
                card=rng.integers(0, w.cards, k),  # cloned cards from all over the network
                merchant=np.full(k, merchant),
                at_ms=at,
                amount_minor=to_minor(eur, np.full(k, city)),
                channel=catalogue.POS,
                place=city,
                terminal=np.full(k, terminal),
            )
        )
        budget -= k
    return out


def account_takeover(f: Fraudsters, budget: int) -> list[Payments]:
    w, rng, days, out = f.world, f.rng, f.timeline.days, []
    shops = f.online_shops(catalogue.TAKEOVER_MCCS)
    earliest = min(days - 1, 3, days // 3)  # leave the card some history first
    while budget > 0:
        k = min(budget, 2 + int(rng.poisson(4)))
        card = int(rng.integers(w.cards))
        home = int(w.card_city[card])
        start = f.at_local(home, int(rng.integers(earliest, days)), catalogue.HOURLY_ONLINE)[0]
        at = start + np.sort(rng.uniform(0, rng.uniform(6, 72) * HOUR_MS, k))
        at[0] = start
        merchant = rng.choice(shops, k)
        eur = np.maximum(150.0, w.card_mean_eur[card] * rng.uniform(6.0, 25.0, k))
        eur *= np.exp(rng.normal(0.0, 0.2, k))
        out.append(
            f.incident(
                "account_takeover",
                card=card,
                merchant=merchant,
                at_ms=at.astype(np.int64),
                amount_minor=to_minor(eur, w.merchant_city[merchant]),
                channel=np.where(rng.random(k) < 0.85, catalogue.ECOM, catalogue.MOTO),
                place=home,
                device=f.new_device(),
            )
        )
        budget -= k
    return out


def impossible_travel(f: Fraudsters, budget: int) -> list[Payments]:
    w, rng, e, out = f.world, f.rng, f.everyday, []
    anchors = np.flatnonzero(catalogue.CARD_PRESENT[e.channel])
    if not len(anchors):
        return out
    while budget > 0:
        anchor = int(rng.choice(anchors))
        card, origin = int(e.card[anchor]), int(e.place[anchor])
        distance = geography.CITY_DISTANCE_KM[origin]
        far = np.flatnonzero(distance > FAR_KM)
        if not len(far):
            far = np.array([int(np.argmax(distance))])
        weights = geography.VISITORS[far] / geography.VISITORS[far].sum()
        destination = int(rng.choice(far, p=weights))
        k = min(budget, 1 + int(rng.poisson(2)))
        gaps = rng.uniform(10, 40, k) * MINUTE_MS
        start = e.at_ms[anchor] + rng.uniform(5, 90) * MINUTE_MS
        at = (start + np.cumsum(gaps) - gaps[0]).astype(np.int64)
        atm = rng.random(k) < 0.55
        shop = rng.choice(f.shops_in(destination, catalogue.CASH_OUT_SHOP_MCCS), k)
        merchant = np.where(atm, w.bank_of_city[destination], shop)
        city = w.merchant_city[merchant]
        cash = atm_amounts(rng, city, rng.choice([200.0, 250.0, 300.0, 400.0, 500.0], k))
        goods = to_minor(np.exp(rng.normal(np.log(350.0), 0.5, k)), city)
        out.append(
            f.incident(
                "impossible_travel",
                card=card,
                merchant=merchant,
                at_ms=at,
                amount_minor=np.where(atm, cash, goods),
                channel=np.where(atm, catalogue.ATM, catalogue.POS),
                place=city,
            )
        )
        budget -= k
    return out


def large_amount(f: Fraudsters, budget: int) -> list[Payments]:
    w, rng, out = f.world, f.rng, []
    web = f.online_shops(catalogue.LARGE_AMOUNT_MCCS)
    for _ in range(budget):
        card = int(rng.integers(w.cards))
        home = int(w.card_city[card])
        curve = catalogue.HOURLY_NIGHT if rng.random() < 0.5 else catalogue.HOURLY_ONLINE
        at = f.at_local(home, int(rng.integers(f.timeline.days)), curve)
        eur = max(
            w.card_mean_eur[card] * rng.uniform(25.0, 60.0), float(rng.uniform(900.0, 4000.0))
        )
        if rng.random() < 0.65:
            merchant = rng.choice(web, 1)
            device = f.new_device() if rng.random() < 0.7 else int(w.card_devices[card, 0])
            channel, place = catalogue.ECOM, home
        else:
            merchant = rng.choice(f.shops_in(home, catalogue.CASH_OUT_SHOP_MCCS), 1)
            device, channel, place = NO_DEVICE, catalogue.POS, int(w.merchant_city[merchant[0]])
        out.append(
            f.incident(
                "large_amount",
                card=card,
                merchant=merchant,
                at_ms=at,
                amount_minor=to_minor(np.array([eur]), w.merchant_city[merchant]),
                channel=channel,
                place=place,
                device=device,
            )
        )
    return out


_SCENARIOS: dict[str, Callable[[Fraudsters, int], list[Payments]]] = {
    "card_testing": card_testing,
    "compromised_terminal": compromised_terminal,
    "account_takeover": account_takeover,
    "impossible_travel": impossible_travel,
    "large_amount": large_amount,
}
if tuple(_SCENARIOS) != SCENARIOS:
    raise RuntimeError(f"scenario functions {tuple(_SCENARIOS)} differ from SCENARIOS {SCENARIOS}")


def inject_fraud(
    spec: SimulationSpec,
    world: World,
    timeline: Timeline,
    everyday: Payments,
    rng: np.random.Generator,
) -> Payments:
    """Fraudulent payments so that they make up ``spec.fraud_rate`` of all payments."""
    fraudsters = Fraudsters(world, timeline, everyday, rng)
    total = spec.fraud_rate / (1.0 - spec.fraud_rate) * len(everyday)
    parts: list[Payments] = []
    for name, scenario in _SCENARIOS.items():
        wanted = total * spec.scenario_mix.share(name)
        parts.extend(scenario(fraudsters, int(wanted + rng.random())))  # stochastic rounding
    fraud = Payments.concat(parts)
    return fraud.take((fraud.at_ms >= timeline.start_ms) & (fraud.at_ms < timeline.end_ms))
