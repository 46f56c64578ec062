"""The synthetic card network: determinism, fraud, labels, arrival order and the contract."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import FraudLabel, Payment, PaymentDecoder
from test_data import geography
from test_data.drift import NEW_PATTERN, DriftSpec
from test_data.generator import (
    FRAUDS_ONLY,
    SCENARIOS,
    LabelDelays,
    ScenarioMix,
    SimulationSpec,
    simulate,
)
from test_data.spec import SimulationSpec as SpecFromSpecModule

SMALL = SimulationSpec(seed=11, days=3, cards=400, merchants=80, fraud_rate=0.01)
MONTH = SimulationSpec(seed=5, days=30, cards=3000, merchants=600)


@pytest.fixture(scope="module")
def month():
    sim = simulate(MONTH)
    return sim, list(sim.stream)


def encoded(events) -> list[bytes]:
    return [msgspec.json.encode(e) for e in events]


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_the_same_stream():
    assert encoded(simulate(SMALL).stream) == encoded(simulate(SMALL).stream)


def test_another_seed_gives_another_stream():
    other = SimulationSpec(**{**SMALL.__dict__, "seed": 12})
    assert encoded(simulate(SMALL).stream) != encoded(simulate(other).stream)


def test_fraud_settings_leave_everyday_payments_alone():
    without = simulate(SimulationSpec(**{**SMALL.__dict__, "fraud_rate": 0.0}))
    with_fraud = simulate(SMALL)
    legit = [p for p in with_fraud.payments() if with_fraud.truth[p.transaction_id] is None]
    assert without.n_fraud == 0
    key = lambda p: (p.card_id, p.event_time, p.amount_minor)  # noqa: E731
    assert sorted(map(key, legit)) == sorted(map(key, without.payments()))


def test_spec_is_importable_from_the_generator():
    assert SimulationSpec is SpecFromSpecModule


# -- fraud -------------------------------------------------------------------------------------


def test_fraud_rate_is_near_the_spec(month):
    sim, _ = month
    rate = sim.n_fraud / sim.n_payments
    assert 0.7 * MONTH.fraud_rate <= rate <= 1.3 * MONTH.fraud_rate
    assert rate < 0.01


def test_every_scenario_occurs_in_a_month(month):
    sim, _ = month
    counts = sim.scenario_counts()
    assert set(counts) == set(SCENARIOS)
    assert all(n >= 10 for n in counts.values()), counts


def test_truth_names_each_payment_and_its_scenario(month):
    sim, events = month
    payments = [e for e in events if isinstance(e, Payment)]
    assert len(sim.truth) == len(payments) == sim.n_payments
    assert Counter(v for v in sim.truth.values() if v) == Counter(
        {k: v for k, v in sim.scenario_counts().items() if v}
    )


def test_scenario_mix_steers_the_fraud():
    only = ScenarioMix(card_testing=1, compromised_terminal=0, account_takeover=0,
                       impossible_travel=0, large_amount=0)  # fmt: skip
    sim = simulate(SimulationSpec(**{**SMALL.__dict__, "scenario_mix": only}))
    assert sim.n_fraud > 0
    assert sim.scenario_counts()["card_testing"] == sim.n_fraud


def _by_scenario(events, truth):
    out: dict[str, list[Payment]] = {}
    for e in events:
        if isinstance(e, Payment) and truth[e.transaction_id]:
            out.setdefault(truth[e.transaction_id], []).append(e)
    return out


def test_scenarios_show_in_behaviour(month):
    sim, events = month
    fraud = _by_scenario(events, sim.truth)
    legit_amount = np.median([e.amount for e in events if isinstance(e, Payment)])
    # Card testing: tiny online payments in bursts on one card.
    testing = fraud["card_testing"]
    assert all(
        p.channel == "ecom" and p.amount_minor < 1000 for p in testing if p.currency == "EUR"
    )
    per_card = Counter(p.card_id for p in testing)
    assert max(per_card.values()) >= 5
    # Compromised terminal: many cards through few terminals.
    skimmed = fraud["compromised_terminal"]
    assert len({p.terminal_id for p in skimmed}) * 5 < len({p.card_id for p in skimmed})
    # Account takeover: amounts well above the everyday median, online, on a device.
    takeover = fraud["account_takeover"]
    assert all(p.device_id and p.channel in ("ecom", "moto") for p in takeover)
    assert np.median([p.amount for p in takeover if p.currency == "EUR"]) > 5 * legit_amount
    # Impossible travel: in person, far from the card's previous payment, minutes later.
    travel = fraud["impossible_travel"]
    assert all(p.latitude is not None for p in travel)
    # Large amount: one payment per incident, far above the everyday median.
    large = fraud["large_amount"]
    assert min(p.amount for p in large if p.currency == "EUR") > 20 * legit_amount


def test_impossible_travel_outruns_a_plane(month):
    sim, events = month
    previous: dict[str, Payment] = {}
    speeds = []
    for e in sorted((e for e in events if isinstance(e, Payment)), key=lambda p: p.event_time):
        if e.latitude is None:
            continue
        before = previous.get(e.card_id)
        previous[e.card_id] = e
        if before is None or sim.truth[e.transaction_id] != "impossible_travel":
            continue
        if sim.truth[before.transaction_id] == "impossible_travel":
            continue  # the first payment of an incident is the jump
        km = float(
            geography.haversine_km(before.latitude, before.longitude, e.latitude, e.longitude)
        )
        hours = (e.event_time - before.event_time).total_seconds() / 3600
        speeds.append(km / hours)
    assert speeds
    assert np.median(speeds) > 1000


# -- labels ------------------------------------------------------------------------------------


def test_labels_follow_their_payments_with_the_specified_delays(month):
    sim, events = month
    when = {e.transaction_id: e.event_time for e in events if isinstance(e, Payment)}
    labels = [e for e in events if isinstance(e, FraudLabel)]
    fraud_days = []
    for label in labels:
        delay = label.reported_at - when[label.transaction_id]
        assert delay > timedelta(0)
        if label.is_fraud:
            fraud_days.append(delay.total_seconds() / 86400)
            assert sim.truth[label.transaction_id] is not None
        else:
            assert sim.truth[label.transaction_id] is None
            assert timedelta(days=30) <= delay <= timedelta(days=31)
            assert label.reported_at.utcoffset() == timedelta(0)
            assert (label.reported_at.hour, label.reported_at.minute) == (2, 0)
    # Disputes are per incident, so a payment's delay is at least its incident's.
    assert 5 < np.median(fraud_days) < 14
    assert max(fraud_days) <= LabelDelays().fraud_max_days + 45
    assert sum(label.is_fraud for label in labels) == sim.n_fraud


def test_labels_of_one_incident_and_card_come_together(month):
    sim, events = month
    reported = {e.transaction_id: e.reported_at for e in events if isinstance(e, FraudLabel)}
    card = {e.transaction_id: e.card_id for e in events if isinstance(e, Payment)}
    burst = [t for t, s in sim.truth.items() if s == "card_testing"]
    by_card: dict[str, set] = {}
    for t in burst:
        by_card.setdefault(card[t], set()).add(reported[t])
    assert any(len(times) == 1 for times in by_card.values())


@pytest.mark.parametrize(
    ("fraction", "low", "high"), [(0.0, 0.0, 0.0), (0.25, 0.2, 0.3), (1.0, 1.0, 1.0)]
)
def test_legit_label_fraction(fraction, low, high):
    delays = LabelDelays(legit_fraction=fraction)
    sim = simulate(SimulationSpec(**{**SMALL.__dict__, "label_delays": delays}))
    legit_labels = sim.n_labels - sim.n_fraud
    assert low <= legit_labels / (sim.n_payments - sim.n_fraud) <= high


def test_label_horizon_drops_labels_reported_later():
    spec = SimulationSpec(**{**SMALL.__dict__, "label_horizon_days": 0.0})
    sim = simulate(spec)
    assert sim.n_labels < sim.n_fraud + 1  # the legit ones mature after 30 days
    assert all(label.is_fraud for label in sim.labels())


# -- arrival order -----------------------------------------------------------------------------


def test_stream_is_in_arrival_order(month):
    sim, events = month
    arrived: set[str] = set()
    last_on_time = None
    late = sim.late_transactions
    for e in events:
        if isinstance(e, FraudLabel):
            assert e.transaction_id in arrived, "a label before its payment"
            continue
        arrived.add(e.transaction_id)
        if e.transaction_id not in late:
            assert last_on_time is None or e.event_time >= last_on_time
            last_on_time = e.event_time
    assert len(arrived) == sim.n_payments


def test_late_payments_are_a_small_fraction_and_at_most_minutes_late(month):
    sim, _ = month
    late = sim.late
    assert 0.005 < late.mean() < 0.02
    lateness = (sim.arrival_ms - sim.table.at_ms)[late]
    assert lateness.min() >= 1000
    assert lateness.max() <= MONTH.late_max_minutes * 60_000
    assert not (sim.arrival_ms - sim.table.at_ms)[~late].any()


def test_payments_of_one_card_are_in_event_order_unless_late(month):
    sim, events = month
    last: dict[str, object] = {}
    for e in events:
        if isinstance(e, Payment) and e.transaction_id not in sim.late_transactions:
            assert last.get(e.card_id, e.event_time) <= e.event_time
            last[e.card_id] = e.event_time


# -- the contract ------------------------------------------------------------------------------


def test_every_payment_survives_the_decoder(month):
    _, events = month
    decoder = PaymentDecoder()
    for e in events:
        if isinstance(e, Payment):
            assert decoder.decode(msgspec.json.encode(e)) == e


def test_ids_are_unique_and_carry_no_fraud_hint(month):
    sim, events = month
    payments = [e for e in events if isinstance(e, Payment)]
    assert len({p.transaction_id for p in payments}) == len(payments)
    fraud_ids = {p.device_id for p in payments if sim.truth[p.transaction_id] and p.device_id}
    legit_ids = {p.device_id for p in payments if not sim.truth[p.transaction_id] and p.device_id}
    # Device ids look alike whoever uses them: same length and alphabet.
    assert {len(d) for d in fraud_ids} <= {len(d) for d in legit_ids}


def test_currencies_countries_and_offsets_are_local(month):
    _, events = month
    payments = [e for e in events if isinstance(e, Payment)]
    currencies = Counter(p.currency for p in payments)
    assert currencies.most_common(1)[0][0] == "EUR"
    assert currencies["EUR"] / len(payments) > 0.6
    assert {"GBP", "USD", "JPY", "CHF"} <= set(currencies)
    offsets = {p.event_time.utcoffset() for p in payments}
    assert {timedelta(hours=h) for h in (0, 1, 2, 9)} <= offsets
    jpy = [p for p in payments if p.currency == "JPY"]
    assert all(p.country == "JP" for p in jpy)
    assert np.median([p.amount_minor for p in jpy]) > 1000  # yen have no minor unit


def test_summer_time_changes_the_offset():
    # The EU moves to summer time on 29 March 2026.
    sim = simulate(SimulationSpec(seed=2, start=date(2026, 3, 27), days=4, cards=300, merchants=60))
    paris = {
        p.event_time.date(): p.event_time.utcoffset()
        for p in sim.payments()
        if p.latitude is not None and p.country == "FR"
    }
    assert paris[date(2026, 3, 27)] == timedelta(hours=1)
    assert paris[date(2026, 3, 30)] == timedelta(hours=2)


def test_daily_and_weekly_rhythm(month):
    _, events = month
    payments = [e for e in events if isinstance(e, Payment) and e.channel != "ecom"]
    hours = Counter(p.event_time.hour for p in payments)
    assert hours[12] > 10 * hours[3]
    days = Counter(p.event_time.weekday() for p in payments)
    assert days[5] > days[6] * 1.3  # Saturday busier than Sunday


# -- the spec ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"days": 0}, "SimulationSpec.days must lie in [1, 3660]; got 0"),
        ({"cards": 0}, "SimulationSpec.cards must be >= 1; got 0"),
        ({"merchants": 1}, "SimulationSpec.merchants must be >= 2"),
        ({"fraud_rate": 0.5}, "fraud_rate must lie in [0, 0.5); got 0.5"),
        ({"late_fraction": 1.5}, "late_fraction must lie in [0, 1]; got 1.5"),
        ({"seed": -1}, "seed must lie in [0, 2**63); got -1"),
        ({"label_horizon_days": -1.0}, "label_horizon_days must be >= 0 or None; got -1.0"),
        ({"start": date(1999, 12, 31)}, "start must lie in [2000-01-02, "),
        ({"start": date(2099, 12, 1)}, "within the contract's years 2000-2099; got 2099-12-01"),
    ],
)
def test_bad_specs_fail_early_and_quote_the_value(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SimulationSpec(**changes)


def test_bad_label_delays_and_mix_fail_early():
    with pytest.raises(ValueError, match="legit_fraction must lie in"):
        LabelDelays(legit_fraction=2.0)
    with pytest.raises(ValueError, match="fraud_median_days must lie in"):
        LabelDelays(fraud_median_days=100.0)
    with pytest.raises(ValueError, match="at least one scenario"):
        ScenarioMix(card_testing=0, compromised_terminal=0, account_takeover=0,
                    impossible_travel=0, large_amount=0)  # fmt: skip


# -- invariants over arbitrary small specs -------------------------------------------------------

small_specs = st.builds(
    SimulationSpec,
    seed=st.integers(0, 2**32),
    start=st.dates(date(2000, 1, 2), date(2099, 6, 1)),
    days=st.integers(1, 4),
    cards=st.integers(1, 60),
    merchants=st.integers(2, 40),
    terminals_per_merchant=st.floats(1.0, 4.0),
    payments_per_card_per_day=st.floats(0.1, 5.0),
    fraud_rate=st.floats(0.0, 0.3),
    late_fraction=st.floats(0.0, 1.0),
    late_max_minutes=st.floats(0.0, 30.0),
    label_delays=st.builds(
        LabelDelays,
        fraud_median_days=st.floats(0.01, 30.0),
        fraud_sigma=st.floats(0.0, 2.0),
        fraud_min_days=st.floats(0.0, 0.01),
        legit_maturity_days=st.floats(0.01, 60.0),
        legit_fraction=st.floats(0.0, 1.0),
    ),
    drift=st.none()
    | st.builds(DriftSpec, start_day=st.integers(0, 3), cards_per_day=st.integers(1, 4)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=small_specs)
def test_invariants_hold_for_any_small_spec(spec):
    sim = simulate(spec)
    decoder = PaymentDecoder()
    seen: dict[str, Payment] = {}
    for e in sim.stream:
        if isinstance(e, Payment):
            assert e.transaction_id not in seen, "transaction ids are unique"
            assert e.amount_minor >= 1
            assert e.event_time.utcoffset() is not None
            assert decoder.decode(msgspec.json.encode(e)) == e
            seen[e.transaction_id] = e
        else:
            payment = seen.get(e.transaction_id)
            assert payment is not None, "a label never comes before its payment"
            assert e.reported_at > payment.event_time
            assert e.card_id == payment.card_id
            assert e.is_fraud == (sim.truth[e.transaction_id] is not None)
            if e.is_fraud:  # within the law's bounds of its own payment (plus lateness)
                days = (e.reported_at - payment.event_time).total_seconds() / 86_400
                assert days <= spec.label_delays.fraud_max_days + 1.0
                assert days >= spec.label_delays.fraud_min_days - 1e-6
    assert len(seen) == sim.n_payments == len(sim.truth)
    assert sim.n_fraud <= sim.n_payments


# -- labels as banks send them, and the drift scenario ------------------------------------------

DRIFTING = SimulationSpec(
    seed=8, days=12, cards=1500, merchants=300, drift=DriftSpec(start_day=6, cards_per_day=4)
)


@pytest.fixture(scope="module")
def drifting():
    return simulate(DRIFTING)


def test_frauds_only_labels_every_fraud_within_1_to_60_days_and_nothing_else():
    sim = simulate(
        SimulationSpec(seed=3, days=20, cards=2000, merchants=400, label_delays=FRAUDS_ONLY)
    )
    events = list(sim.stream)
    when = {e.transaction_id: e.event_time for e in events if isinstance(e, Payment)}
    labels = [e for e in events if isinstance(e, FraudLabel)]
    assert labels and all(label.is_fraud for label in labels)
    assert len(labels) == sim.n_fraud
    days = np.array(
        [
            (label.reported_at - when[label.transaction_id]).total_seconds() / 86_400
            for label in labels
        ]
    )
    assert days.min() >= 1.0 and days.max() <= 60.0
    assert 5.0 < np.median(days) < 14.0  # lognormal, median 7 days after the incident's end


def test_the_drift_scenario_starts_on_its_day_in_person_at_home_in_bursts(drifting):
    sim = drifting
    assert sim.scenario_names == (*SCENARIOS, NEW_PATTERN)
    table, world = sim.table, sim.world
    burst = table.scenario == len(SCENARIOS) + 1
    assert sim.scenario_counts()[NEW_PATTERN] == int(burst.sum()) > 0
    start_ms = sim.timeline.midnight_ms[
        world.card_city[table.card[burst]], DRIFTING.drift.start_day
    ]
    assert np.all(table.at_ms[burst] >= start_ms)
    assert np.all(table.channel[burst] == 0)  # in person (POS)
    assert np.all(world.merchant_city[table.merchant[burst]] == world.card_city[table.card[burst]])
    for incident in np.unique(table.incident[burst]).tolist():
        rows = np.flatnonzero(burst & (table.incident == incident))
        assert 4 <= len(rows) <= 8
        assert len(np.unique(table.card[rows])) == 1
        gaps = np.diff(np.sort(table.at_ms[rows])) / 60_000
        assert np.all((gaps >= 2.0 - 1e-3) & (gaps <= 10.0 + 1e-3))
    truth = sim.truth
    names = {truth[sim.transaction_id(int(i))] for i in np.flatnonzero(burst)}
    assert names == {NEW_PATTERN}


def test_the_drift_scenario_leaves_every_other_payment_as_it_was(drifting):
    plain = simulate(SimulationSpec(**{**DRIFTING.__dict__, "drift": None}))
    burst = drifting.table.scenario == len(SCENARIOS) + 1
    other = drifting.table.take(~burst)
    for name in ("card", "merchant", "at_ms", "amount_minor", "scenario"):
        np.testing.assert_array_equal(getattr(other, name), getattr(plain.table, name))
    assert NEW_PATTERN not in plain.scenario_counts()


def test_a_bad_drift_spec_fails_early():
    with pytest.raises(ValueError, match="cards_per_day must be >= 1"):
        DriftSpec(cards_per_day=0)
    with pytest.raises(ValueError, match="a burst needs at least 2 payments"):
        DriftSpec(payments=(1, 3))
    with pytest.raises(ValueError, match="fraud_min_days must lie in"):
        LabelDelays(fraud_min_days=9.0)
