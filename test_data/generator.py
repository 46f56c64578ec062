"""Synthetic card traffic: a card network's payments and the bank's fraud labels, for one seed.

:func:`simulate` draws a world (:mod:`test_data.population`), its everyday payments
(:mod:`test_data.traffic`), fraud incidents (:mod:`test_data.scenarios`) and the labels and
arrival order (:mod:`test_data.labels`), all as numpy columns; :class:`Simulation` turns them
into :class:`~features.contract.Payment` and :class:`~features.contract.FraudLabel` events on
demand. The same spec gives the same events; independent random streams for the world, the
everyday traffic, the fraud and the labels mean that changing, say, ``fraud_rate`` leaves the
everyday payments as they were.

>>> sim = simulate(SimulationSpec(seed=1, days=2, cards=300, merchants=60, fraud_rate=0.01))
>>> events = list(sim.stream)
>>> len(events) == sim.n_payments + sim.n_labels
True
>>> first = events[0]
>>> type(first).__name__, first.transaction_id, sim.truth[first.transaction_id]
('Payment', 's1-tx0000000000', None)
>>> sorted(sim.scenario_counts()) == sorted(SCENARIOS)
True
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from functools import cached_property

import numpy as np

from features.contract import FraudLabel, Payment
from test_data import catalogue, geography
from test_data.columns import LEGITIMATE, NO_DEVICE, BoolArray, IntArray, Payments
from test_data.drift import NEW_PATTERN, DriftSpec, bursts
from test_data.labels import Labels, arrival_order, arrival_times, report_labels
from test_data.population import World, build_world, ids
from test_data.scenarios import inject_fraud
from test_data.spec import FRAUDS_ONLY, SCENARIOS, LabelDelays, ScenarioMix, SimulationSpec
from test_data.timeline import Timeline
from test_data.traffic import everyday_payments, to_minor

__all__ = [
    "FRAUDS_ONLY",
    "SCENARIOS",
    "DriftSpec",
    "LabelDelays",
    "ScenarioMix",
    "Simulation",
    "SimulationSpec",
    "simulate",
]

_CHUNK = 16_384
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_at(offset_seconds: int, _cache: dict[int, datetime] = {}) -> datetime:  # noqa: B006
    """The epoch told in a fixed UTC offset; adding milliseconds to it gives local times there."""
    epoch = _cache.get(offset_seconds)
    if epoch is None:
        zone = UTC if offset_seconds == 0 else timezone(timedelta(seconds=offset_seconds))
        epoch = _cache[offset_seconds] = _EPOCH.astimezone(zone)
    return epoch


class Simulation:
    """The outcome of :func:`simulate`: columns, plus the events built from them on demand.

    ``stream`` yields every payment and label in the order they reach Kafka; each pass builds
    the events anew, so iterate it as often as needed without holding a month in memory.
    ``truth`` maps each transaction id to its fraud scenario, or ``None`` for a legitimate one.
    """

    def __init__(
        self,
        spec: SimulationSpec,
        world: World,
        timeline: Timeline,
        table: Payments,
        arrival_ms: IntArray,
        late: BoolArray,
        labels: Labels,
    ) -> None:
        self.spec = spec
        self.world = world
        self.timeline = timeline
        self.table = table  # row i is transaction i, in event-time order
        self.arrival_ms = arrival_ms
        self.late = late
        self.label_table = labels
        self.order = arrival_order(arrival_ms, labels)
        self._ids = ids(world)

    # -- sizes ------------------------------------------------------------------------------
    @property
    def n_payments(self) -> int:
        return len(self.table)

    @property
    def n_labels(self) -> int:
        return len(self.label_table)

    @property
    def n_fraud(self) -> int:
        return int(np.count_nonzero(self.table.scenario != LEGITIMATE))

    @property
    def scenario_names(self) -> tuple[str, ...]:
        """The scenarios this simulation may hold: :data:`SCENARIOS`, and the drift scenario's
        when the spec has one."""
        return (*SCENARIOS, NEW_PATTERN) if self.spec.drift else SCENARIOS

    def scenario_counts(self) -> dict[str, int]:
        """Fraudulent payments per scenario (scenarios with none included, as 0)."""
        names = self.scenario_names
        counts = np.bincount(self.table.scenario, minlength=len(names) + 1)
        return {name: int(counts[i + 1]) for i, name in enumerate(names)}

    # -- events -----------------------------------------------------------------------------
    @property
    def stream(self) -> Iterator[Payment | FraudLabel]:
        """Payments and labels in arrival order (a fresh iterator on every access)."""
        return self._events(self.order)

    def payments(self) -> Iterator[Payment]:
        """Payments in event-time order."""
        for lo in range(0, self.n_payments, _CHUNK):
            yield from self._payments(np.arange(lo, min(lo + _CHUNK, self.n_payments)))

    def labels(self) -> Iterator[FraudLabel]:
        """Labels in report order."""
        for lo in range(0, self.n_labels, _CHUNK):
            yield from self._labels(np.arange(lo, min(lo + _CHUNK, self.n_labels)))

    def transaction_id(self, row: int) -> str:
        return self._ids.transaction(row)

    @cached_property
    def truth(self) -> dict[str, str | None]:
        names: list[str | None] = [None, *self.scenario_names]
        return {
            self._ids.transaction(i): names[s] for i, s in enumerate(self.table.scenario.tolist())
        }

    @cached_property
    def late_transactions(self) -> frozenset[str]:
        return frozenset(self._ids.transaction(int(i)) for i in np.flatnonzero(self.late))

    def _events(self, items: IntArray) -> Iterator[Payment | FraudLabel]:
        for lo in range(0, len(items), _CHUNK):
            chunk = items[lo : lo + _CHUNK]
            is_payment = chunk >= 0
            payments = iter(self._payments(chunk[is_payment]))
            labels = iter(self._labels(-1 - chunk[~is_payment]))
            for payment in is_payment.tolist():
                yield next(payments) if payment else next(labels)

    def _payments(self, rows: IntArray) -> list[Payment]:
        t, w, ids_ = self.table, self.world, self._ids
        merchant = t.merchant[rows]
        merchant_city = w.merchant_city[merchant]
        row = rows.tolist()
        card = t.card[rows].tolist()
        merchant_list = merchant.tolist()
        terminal = t.terminal[rows].tolist()
        at = t.at_ms[rows].tolist()
        offset = self.timeline.offset_seconds(t.place[rows], t.at_ms[rows]).tolist()
        amount = t.amount_minor[rows].tolist()
        currency = geography.CURRENCIES[merchant_city].tolist()
        country = geography.COUNTRIES[merchant_city].tolist()
        mcc = w.merchant_mcc[merchant].tolist()
        channel = t.channel[rows].tolist()
        device = t.device[rows].tolist()
        located = (~np.isnan(t.latitude[rows])).tolist()
        lat = t.latitude[rows].tolist()
        lon = t.longitude[rows].tolist()
        mcc_text, channels = catalogue.MCC_TEXT, catalogue.CHANNELS
        return [
            Payment(
                transaction_id=ids_.transaction(row[i]),
                card_id=ids_.cards[card[i]],
                merchant_id=ids_.merchants[merchant_list[i]],
                terminal_id=ids_.terminals[terminal[i]],
                amount_minor=amount[i],
                currency=currency[i],
                event_time=_epoch_at(offset[i]) + timedelta(milliseconds=at[i]),
                mcc=mcc_text[mcc[i]],
                channel=channels[channel[i]],  # type: ignore[arg-type]
                country=country[i],
                device_id=None if device[i] == NO_DEVICE else ids_.device(device[i]),
                latitude=lat[i] if located[i] else None,
                longitude=lon[i] if located[i] else None,
            )
            for i in range(len(row))
        ]

    def _labels(self, index: IntArray) -> list[FraudLabel]:
        lt, ids_ = self.label_table, self._ids
        rows = lt.payment[index]
        utc = _epoch_at(0)
        return [
            FraudLabel(
                transaction_id=ids_.transaction(row),
                card_id=ids_.cards[card],
                is_fraud=fraud,
                reported_at=utc + timedelta(milliseconds=at),
            )
            for row, card, fraud, at in zip(
                rows.tolist(),
                self.table.card[rows].tolist(),
                lt.is_fraud[index].tolist(),
                lt.reported_ms[index].tolist(),
                strict=True,
            )
        ]


def cash_out_bursts(
    drift: DriftSpec,
    world: World,
    timeline: Timeline,
    first_incident: int,
    rng: np.random.Generator,
) -> Payments:
    """The drift scenario's payments (:mod:`test_data.drift`): each burst in person at shops of
    the card's home city, at local times of day, one incident each (numbered from
    ``first_incident``)."""
    plan = bursts(drift, days=timeline.days, cards=np.arange(world.cards), rng=rng)
    city = world.card_city[plan.card]
    merchant = world.random_shop_in(city, rng.random(len(plan)))
    terminal = world.random_terminal_of(merchant, rng.random(len(plan)))
    merchant_city = world.merchant_city[merchant]
    n = len(plan)
    return Payments(
        card=plan.card,
        merchant=merchant,
        terminal=terminal,
        place=merchant_city,
        at_ms=timeline.midnight_ms[city, plan.day] + plan.second * 1000,
        amount_minor=to_minor(plan.amount_eur, merchant_city),
        channel=np.full(n, catalogue.POS, dtype=np.int64),
        device=np.full(n, NO_DEVICE, dtype=np.int64),
        latitude=world.terminal_lat[terminal],
        longitude=world.terminal_lon[terminal],
        scenario=np.full(n, len(SCENARIOS) + 1, dtype=np.int64),
        incident=first_incident + plan.burst,
    )


def simulate(spec: SimulationSpec) -> Simulation:
    """Simulate ``spec``: deterministic for its seed. The drift scenario draws from a random
    stream of its own: without it, a spec gives the payments it gave before it existed."""
    world_rng, traffic_rng, fraud_rng, label_rng, drift_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(5)
    )
    world = build_world(spec, world_rng)
    timeline = Timeline.build(spec.start, spec.days)
    everyday = everyday_payments(world, timeline, traffic_rng)
    fraud = inject_fraud(spec, world, timeline, everyday, fraud_rng)
    parts = [everyday, fraud]
    if spec.drift is not None:
        first = int(fraud.incident.max(initial=0)) + 1
        parts.append(cash_out_bursts(spec.drift, world, timeline, first, drift_rng))
    table = Payments.concat(parts)
    table = table.take(np.lexsort((table.card, table.at_ms)))
    arrival_ms, late = arrival_times(spec, table.at_ms, label_rng)
    labels = report_labels(spec, table, arrival_ms, timeline.end_ms, label_rng)
    return Simulation(spec, world, timeline, table, arrival_ms, late, labels)
