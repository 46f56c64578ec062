"""The handbook simulator (test_data.handbook), its features
(model_state.offline.handbook_reference)."""

from __future__ import annotations

import doctest
import importlib
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from features.contract import FraudLabel, Payment, PaymentDecoder
from model_state.offline.eval_stream import replay_stream, with_label_delay
from model_state.offline.handbook_reference import (
    HANDBOOK_FEATURE_NAMES,
    fit_logistic_regression,
    fit_random_forest,
    handbook_features,
    payment_columns,
)
from test_data.drift import NEW_PATTERN, DriftSpec
from test_data.handbook import (
    HANDBOOK_SCENARIOS,
    HandbookSpec,
    main,
    simulate_handbook,
)
from test_data.samples import iter_samples
from test_data.spec import LabelDelays

TINY = HandbookSpec(seed=5, n_customers=120, n_terminals=240, days=12)
SMALL = HandbookSpec(seed=3, n_customers=400, n_terminals=800, days=40)
DAY = 86_400.0
ID = re.compile(r"\A[A-Za-z0-9_.:\-]+\Z")
COL = {name: k for k, name in enumerate(HANDBOOK_FEATURE_NAMES)}


@pytest.fixture(scope="module")
def tiny():
    return simulate_handbook(TINY)


@pytest.fixture(scope="module")
def small():
    return simulate_handbook(SMALL)


def encoded(events) -> list[bytes]:
    return [msgspec.json.encode(e) for e in events]


@pytest.mark.parametrize("name", ["test_data.handbook", "model_state.offline.handbook_reference"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert (result.failed, result.attempted > 0) == (0, True)


# -- the simulator -----------------------------------------------------------------------------


def test_same_seed_gives_the_same_stream(tiny):
    again = simulate_handbook(TINY)
    for name in ("event_time", "customer", "terminal", "amount_minor", "is_fraud", "scenario"):
        np.testing.assert_array_equal(getattr(tiny, name), getattr(again, name), err_msg=name)
    assert encoded(tiny.stream()) == encoded(again.stream())


def test_another_seed_gives_another_stream(tiny):
    other = simulate_handbook(HandbookSpec(**{**TINY.__dict__, "seed": TINY.seed + 1}))
    assert encoded(other.payments()) != encoded(tiny.payments())
    assert next(other.payments()).transaction_id == f"hb{TINY.seed + 1}-tx000000000"


def test_transactions_are_in_time_order_within_the_period(small):
    assert np.all(np.diff(small.event_time) >= 0)
    seconds = small.event_time - SMALL.start.timestamp()
    assert seconds.min() > 0 and seconds.max() < SMALL.days * DAY
    assert np.all(seconds % DAY > 0)  # the handbook drops times of day outside (0, 86400)
    assert np.all(seconds == np.round(seconds))


def test_customers_pay_at_terminals_within_the_radius(small):
    distance = np.hypot(
        small.customer_x[small.customer] - small.terminal_x[small.terminal],
        small.customer_y[small.customer] - small.terminal_y[small.terminal],
    )
    assert distance.max() < SMALL.radius
    # and they use most of them: about 2000 draws over ~20 terminals per customer
    c = int(np.bincount(small.customer).argmax())
    near = np.hypot(small.customer_x[c] - small.terminal_x, small.customer_y[c] - small.terminal_y)
    used = np.unique(small.terminal[small.customer == c])
    assert set(used.tolist()) <= set(np.flatnonzero(near < SMALL.radius).tolist())
    assert len(used) >= 0.8 * np.count_nonzero(near < SMALL.radius)


def test_fraud_share_at_the_handbooks_size():
    """The handbook: 1,754,155 transactions, 0.84 % fraud: 973 / 9,077 / 4,631 by scenario."""
    hb = simulate_handbook(HandbookSpec(seed=0, days=183))
    counts = hb.scenario_counts()
    assert 1_650_000 < len(hb) < 1_850_000
    assert 0.0070 < hb.fraud_share() < 0.0095, hb.fraud_share()
    assert 700 < counts["amount_over_220"] < 1300, counts
    assert 7500 < counts["compromised_terminal_28d"] < 10500, counts
    assert 3700 < counts["compromised_customer_14d"] < 5600, counts


def test_fraud_counts_on_a_scaled_down_world():
    """A fifth of the customers and terminals: scenarios 2 and 3 keep their daily counts (2
    terminals and 3 customers a day at the same traffic per terminal and customer), scenario 1
    shrinks with the traffic, so the share is about five times the handbook's."""
    hb = simulate_handbook(HandbookSpec(seed=1, n_customers=1000, n_terminals=2000, days=183))
    counts = hb.scenario_counts()
    assert 0.030 < hb.fraud_share() < 0.050, hb.fraud_share()
    assert 120 < counts["amount_over_220"] < 280, counts
    assert 7500 < counts["compromised_terminal_28d"] < 10500, counts
    assert 3700 < counts["compromised_customer_14d"] < 5600, counts


def test_scenario_one_is_exactly_the_amounts_over_220(small):
    over = small.amount_minor > 22_000
    later = np.isin(small.scenario, (2, 3))
    assert np.all(small.is_fraud[over]), "an amount over 220 that is not fraud"
    assert np.all(over[small.scenario == 1]), "scenario 1 with an amount of 220 or less"
    np.testing.assert_array_equal(small.scenario == 1, over & ~later)
    assert np.all(small.amount_minor[~small.is_fraud] <= 22_000)
    assert np.count_nonzero(small.scenario == 1) > 0


def test_fraud_flags_match_scenarios(small):
    np.testing.assert_array_equal(small.is_fraud, small.scenario > 0)
    assert set(np.unique(small.scenario).tolist()) == {0, 1, 2, 3}


def exposed(days: np.ndarray, who: np.ndarray, drawn: np.ndarray, span: int) -> np.ndarray:
    """Transactions of someone drawn on a day ``d`` with ``d <= day < d + span``."""
    out = np.zeros(len(days), dtype=bool)
    for d, row in enumerate(drawn.tolist()):
        out |= np.isin(who, row) & (days >= d) & (days < d + span)
    return out


def test_compromised_terminals_turn_28_days_of_their_traffic_to_fraud(small):
    assert small.compromised_terminals.shape == (SMALL.days - 1, 2)
    assert all(len(set(row)) == 2 for row in small.compromised_terminals.tolist())
    hit = exposed(small.day, small.terminal, small.compromised_terminals, 28)
    assert np.all(small.is_fraud[hit])
    np.testing.assert_array_equal(small.scenario == 2, hit & (small.scenario != 3))


def test_compromised_customers_lose_a_third_of_14_days_at_five_times_the_amount(small):
    drawn = small.compromised_customers
    assert drawn.shape == (SMALL.days - 1, 3)
    s3 = small.scenario == 3
    hit = exposed(small.day, small.customer, drawn, 14)
    assert np.all(hit[s3])
    assert np.all(small.amount_minor[s3] % 5 == 0)
    # the three customers of a day share the day's frauds, as in the handbook: of their n
    # transactions in the 14 days, floor(n / 3) drawn together (checked where no one of the
    # three is drawn again)
    once = {c for c in np.unique(drawn).tolist() if np.count_nonzero(drawn == c) == 1}
    days = [d for d, row in enumerate(drawn.tolist()) if once.issuperset(row)]
    assert len(days) > 10
    for d in days:
        theirs = np.isin(small.customer, drawn[d])
        window = theirs & (small.day >= d) & (small.day < d + 14)
        assert np.count_nonzero(window & s3) == np.count_nonzero(window) // 3, f"day {d}"
        assert np.count_nonzero(theirs & s3 & ~window) == 0, f"day {d}"


def test_no_compromise_is_drawn_on_the_last_day():
    one = simulate_handbook(HandbookSpec(seed=2, n_customers=50, n_terminals=60, days=1))
    assert set(one.scenario.tolist()) <= {0, 1}


def test_every_payment_meets_the_contract(tiny):
    decoder = PaymentDecoder()
    payments = list(tiny.payments())
    assert len(payments) == len(tiny)
    for i, p in enumerate(payments):
        assert decoder.decode(msgspec.json.encode(p)) == p
        for name in ("transaction_id", "card_id", "merchant_id", "terminal_id"):
            assert ID.match(getattr(p, name)), (name, getattr(p, name))
        assert p.transaction_id == f"hb{TINY.seed}-tx{i:09d}"
        assert p.merchant_id.replace("-m", "-t") == p.terminal_id
        assert p.event_time.utcoffset() == timedelta(0)
        assert p.event_timestamp == tiny.event_time[i]
        assert p.amount_minor == tiny.amount_minor[i] >= 1
        assert (p.currency, p.mcc, p.channel, p.country) == ("EUR", "5999", "pos", "FR")
        assert 48.0 <= p.latitude <= 49.0 and 2.0 <= p.longitude <= 3.6


def test_truth_is_shaped_like_the_generators(tiny):
    truth = tiny.truth()
    assert list(truth) == [p.transaction_id for p in tiny.payments()]
    names = [None, *HANDBOOK_SCENARIOS]
    assert [truth[tiny.transaction_id(i)] for i in range(len(tiny))] == [
        names[s] for s in tiny.scenario.tolist()
    ]


@pytest.mark.parametrize("delay", [timedelta(days=7), timedelta(0), timedelta(hours=5, seconds=1)])
def test_labels_follow_their_payment_by_the_delay(tiny, delay):
    events = list(tiny.stream(delay))
    seen: dict[str, Payment] = {}
    last_time = None
    for k, e in enumerate(events):
        if isinstance(e, Payment):
            seen[e.transaction_id] = e
            last_time = e.event_time
            continue
        payment = seen.get(e.transaction_id)
        assert payment is not None, f"event {k}: label of {e.transaction_id} before its payment"
        assert e.reported_at == payment.event_time + delay
        assert e.is_fraud == bool(tiny.is_fraud[int(e.transaction_id.rsplit("tx", 1)[1])])
        assert e.card_id == payment.card_id
        nxt = next(x for x in events[k + 1 :] if isinstance(x, Payment))
        assert nxt.event_time >= e.reported_at, f"event {k}: label released early"
        if delay > timedelta(0):
            assert last_time < e.reported_at, f"event {k}: label released late"
    verdicts = {tiny.transaction_id(i): bool(f) for i, f in enumerate(tiny.is_fraud.tolist())}
    assert encoded(events) == encoded(with_label_delay(tiny.payments(), verdicts, delay))


def test_the_tail_brings_every_label_once(tiny):
    events = list(tiny.stream(include_tail=True))
    labels = [e.transaction_id for e in events if isinstance(e, FraudLabel)]
    assert sorted(labels) == sorted(tiny.truth())
    assert len(events) == 2 * len(tiny)
    assert encoded(e for e in events if isinstance(e, FraudLabel)) == encoded(tiny.labels())


def test_replay_stream_takes_the_stream(tiny):
    replayed = replay_stream(tiny.stream(), tiny.truth())
    np.testing.assert_array_equal(replayed.is_fraud, tiny.is_fraud)
    assert replayed.skipped_labels == 0
    assert np.count_nonzero(replayed.verdict >= 0) > 0


def test_command_line_writes_payments_and_labels(tmp_path, capsys):
    args = ["--seed", "4", "--days", "5", "--customers", "40", "--terminals", "80"]
    assert main([*args, "--out", str(tmp_path), "--history"]) == 0
    assert "simulated" in capsys.readouterr().out
    hb = simulate_handbook(HandbookSpec(seed=4, n_customers=40, n_terminals=80, days=5))
    payments = list(iter_samples(tmp_path / "payments.jsonl"))
    labels = list(iter_samples(tmp_path / "labels.jsonl"))
    history = list(iter_samples(tmp_path / "history.jsonl"))
    assert [m.value for m in payments] == encoded(hb.payments())
    assert [m.value for m in labels] == encoded(hb.labels())
    assert [m.value for m in history] == encoded(hb.stream())
    assert {m.event for m in payments} == {"payment"} and {m.event for m in labels} == {"label"}
    truth = hb.truth()
    decoder = PaymentDecoder()
    for m in payments:
        p = decoder.decode(m.value)
        assert m.key == p.card_id
        assert (m.is_fraud, m.scenario) == (
            truth[p.transaction_id] is not None,
            truth[p.transaction_id],
        )


def test_command_line_refuses_a_bad_spec(tmp_path, capsys):
    assert main(["--customers", "2", "--out", str(tmp_path)]) == 2
    assert "n_customers must be >= 3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": -1}, "seed must be >= 0"),
        ({"n_terminals": 1}, "n_terminals must be >= 2"),
        ({"days": 0}, "days must be >= 1"),
        ({"start": datetime(2026, 3, 2)}, "start must carry a UTC offset"),
        ({"radius": 0.0}, "radius must be a finite number > 0"),
        ({"label_delay_days": -1.0}, "label_delay_days must be finite and >= 0"),
    ],
)
def test_spec_says_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        HandbookSpec(**{"seed": 1, **change})


def test_a_start_with_an_offset_is_told_in_utc():
    start = datetime(2026, 3, 2, tzinfo=timezone(timedelta(hours=2)))
    hb = simulate_handbook(
        HandbookSpec(seed=1, n_customers=20, n_terminals=40, days=2, start=start)
    )
    assert hb.event_time.min() > start.timestamp()
    p = next(hb.payments())
    assert p.event_time.utcoffset() == timedelta(0)
    assert p.event_timestamp == hb.event_time[0]


# -- the reference features --------------------------------------------------------------------


def test_features_on_a_hand_built_example():
    # Saturday 1970-01-03 00:00 UTC is 2 days after the epoch (a Thursday)
    sat = 2 * DAY
    rows = [
        # time,                  card, terminal, amount, fraud
        (sat + 6 * 3600 + 3599, 1, 10, 10.0, 1),  # 0: Sat 06:59:59, night, weekend
        (sat + 7 * 3600, 1, 10, 20.0, 0),  # 1: Sat 07:00, day
        (sat + DAY + 6 * 3600 + 3599, 1, 10, 30.0, 0),  # 2: exactly 1 day after row 0
        (sat + 2 * DAY + 7 * 3600, 2, 10, 40.0, 0),  # 3: Monday, other card
        (sat + 7 * DAY + 6 * 3600 + 3599, 2, 10, 50.0, 0),  # 4: 7 days after row 0
        (sat + 8 * DAY + 6 * 3600 + 3599, 2, 10, 60.0, 0),  # 5: 8 days after row 0, Sun
        (sat + 8 * DAY + 7 * 3600, 1, 11, 70.0, 0),  # 6: other terminal
    ]
    t, card, term, amount, fraud = (np.array(c) for c in zip(*rows, strict=True))
    x = handbook_features(t, card, term, amount, fraud.astype(bool), delay_days=7.0)
    assert x.shape == (7, 15)
    np.testing.assert_array_equal(x[:, COL["TX_AMOUNT"]], amount)
    np.testing.assert_array_equal(x[:, COL["TX_DURING_WEEKEND"]], [1, 1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(x[:, COL["TX_DURING_NIGHT"]], [1, 0, 1, 0, 1, 1, 0])
    # card 1: rows 0, 1, 2, 6; card 2: rows 3, 4, 5. A window (t - w, t] is open on the left:
    # row 2 (1 day after row 0) leaves out row 0, row 5 leaves out row 4 (1 day before)
    np.testing.assert_array_equal(x[:, COL["CUSTOMER_ID_NB_TX_1DAY_WINDOW"]], [1, 2, 2, 1, 1, 1, 1])
    np.testing.assert_allclose(
        x[:, COL["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"]], [10, 15, 25, 40, 50, 60, 70]
    )
    np.testing.assert_array_equal(x[:, COL["CUSTOMER_ID_NB_TX_7DAY_WINDOW"]], [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_allclose(
        x[:, COL["CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"]], [10, 15, 20, 40, 45, 50, 70]
    )
    np.testing.assert_array_equal(
        x[:, COL["CUSTOMER_ID_NB_TX_30DAY_WINDOW"]], [1, 2, 3, 1, 2, 3, 4]
    )
    np.testing.assert_allclose(
        x[:, COL["CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW"]], [10, 15, 20, 40, 45, 50, 32.5]
    )
    # terminal 10, delay 7 days: row 4 sits exactly 7 days after row 0, so row 0 is at the
    # window's closed right end (t - 7d] and counts; row 5 is 8 days after row 0, so row 0 is at
    # the open left end of its 1-day window (t - 8d, t - 7d] and does not count there.
    np.testing.assert_array_equal(x[:, COL["TERMINAL_ID_NB_TX_1DAY_WINDOW"]], [0, 0, 0, 0, 1, 2, 0])
    np.testing.assert_allclose(x[:, COL["TERMINAL_ID_RISK_1DAY_WINDOW"]], [0, 0, 0, 0, 1.0, 0.0, 0])
    np.testing.assert_array_equal(x[:, COL["TERMINAL_ID_NB_TX_7DAY_WINDOW"]], [0, 0, 0, 0, 1, 3, 0])
    np.testing.assert_allclose(
        x[:, COL["TERMINAL_ID_RISK_7DAY_WINDOW"]], [0, 0, 0, 0, 1.0, 1 / 3, 0]
    )
    np.testing.assert_array_equal(
        x[:, COL["TERMINAL_ID_NB_TX_30DAY_WINDOW"]], [0, 0, 0, 0, 1, 3, 0]
    )
    np.testing.assert_allclose(
        x[:, COL["TERMINAL_ID_RISK_30DAY_WINDOW"]], [0, 0, 0, 0, 1.0, 1 / 3, 0]
    )


def test_features_with_another_delay_and_a_utc_offset():
    t = np.array([0.0, 2 * DAY + 1.0, 23 * 3600.0])  # Thu 00:00, Sat 00:00:01, Thu 23:00
    x = handbook_features(
        t, np.zeros(3), np.zeros(3), np.ones(3), np.array([1, 0, 0]), 2.0, utc_offset_seconds=3600.0
    )
    # an hour ahead: Thu 01:00 (night), Sat 01:00:01 (weekend, night), Fri 00:00 (night, weekday)
    np.testing.assert_array_equal(x[:, COL["TX_DURING_WEEKEND"]], [0, 1, 0])
    np.testing.assert_array_equal(x[:, COL["TX_DURING_NIGHT"]], [1, 1, 1])
    # row 1 is 2 days + 1 s after row 0: window (t - 3d, t - 2d] holds row 0
    assert x[1, COL["TERMINAL_ID_RISK_1DAY_WINDOW"]] == 1.0
    assert x[2, COL["TERMINAL_ID_NB_TX_30DAY_WINDOW"]] == 0.0


def test_ties_count_whole():
    """Two payments of one card at one instant see each other (pandas would show the second
    only to the first it sorted); this keeps the features independent of row order."""
    x = handbook_features(
        np.array([5.0, 5.0]),
        np.array([1, 1]),
        np.array([1, 2]),
        np.array([10.0, 30.0]),
        np.array([0, 0]),
    )
    np.testing.assert_array_equal(x[:, COL["CUSTOMER_ID_NB_TX_1DAY_WINDOW"]], [2, 2])
    np.testing.assert_array_equal(x[:, COL["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"]], [20, 20])


def test_features_take_string_ids_and_contract_payments(tiny):
    cols = payment_columns(tiny.payments(), tiny.truth())
    from_payments = handbook_features(
        cols.event_time,
        cols.card,
        cols.terminal,
        cols.amount,
        cols.is_fraud,
        utc_offset_seconds=cols.utc_offset_seconds,
    )
    from_arrays = handbook_features(
        tiny.event_time, tiny.customer, tiny.terminal, tiny.amount, tiny.is_fraud
    )
    np.testing.assert_array_equal(from_payments, from_arrays)
    assert cols.transaction_id == list(tiny.truth())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"card": np.zeros(2)}, r"card must have one value per transaction \(3\); got 2"),
        ({"amount": np.array([1.0, np.nan, 1.0])}, "amount must be finite; row 1"),
        ({"is_fraud": np.array([0, 2, 1])}, "is_fraud must be bool or 0/1"),
        ({"event_time": np.zeros((3, 1))}, "event_time must be one-dimensional"),
        ({"delay_days": -1.0}, "delay_days must be finite and >= 0"),
    ],
)
def test_features_say_what_is_wrong(change, message):
    args = {
        "event_time": np.zeros(3),
        "card": np.zeros(3),
        "terminal": np.zeros(3),
        "amount": np.ones(3),
        "is_fraud": np.zeros(3),
    }
    with pytest.raises(ValueError, match=message):
        handbook_features(**{**args, **change})


def brute_force(t, card, term, amount, fraud, delay_days):
    """The definitions, one transaction at a time."""
    out = np.zeros((len(t), 15))
    for i in range(len(t)):
        out[i, 0] = amount[i]
        out[i, 1] = (np.floor(t[i] / DAY) + 3) % 7 >= 5
        out[i, 2] = (t[i] % DAY) // 3600 <= 6
        for k, w in enumerate((1, 7, 30)):
            mine = (card == card[i]) & (t > t[i] - w * DAY) & (t <= t[i])
            out[i, 3 + 2 * k] = mine.sum()
            out[i, 4 + 2 * k] = amount[mine].mean()
            lo, hi = t[i] - delay_days * DAY - w * DAY, t[i] - delay_days * DAY
            there = (term == term[i]) & (t > lo) & (t <= hi)
            out[i, 9 + 2 * k] = there.sum()
            out[i, 10 + 2 * k] = fraud[there].mean() if there.any() else 0.0
    return out


@st.composite
def transactions(draw):
    n = draw(st.integers(1, 40))
    # times on a coarse grid so that ties and exact window edges come up often
    t = np.array(draw(st.lists(st.integers(0, 80), min_size=n, max_size=n)), dtype=float) * (
        DAY / 2
    ) + np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 3600.0]), min_size=n, max_size=n)))
    card = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    term = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    amount = (
        np.array(draw(st.lists(st.integers(1, 50_000), min_size=n, max_size=n)), dtype=float) / 100
    )
    fraud = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    delay = draw(st.sampled_from([0.0, 0.5, 7.0]))
    perm = np.array(draw(st.permutations(range(n))))
    return t, card, term, amount, fraud, delay, perm


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transactions())
def test_features_are_the_definitions_in_any_row_order(data):
    t, card, term, amount, fraud, delay, perm = data
    x = handbook_features(t, card, term, amount, fraud, delay)
    np.testing.assert_allclose(x, brute_force(t, card, term, amount, fraud, delay), rtol=1e-12)
    shuffled = handbook_features(t[perm], card[perm], term[perm], amount[perm], fraud[perm], delay)
    np.testing.assert_array_equal(shuffled, x[perm])
    risk = x[:, [COL[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] for w in (1, 7, 30)]]
    assert np.all((risk >= 0) & (risk <= 1))
    nb = x[:, [COL[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] for w in (1, 7, 30)]]
    assert np.all(nb >= 1) and np.all(np.diff(nb, axis=1) >= 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=transactions(), report=st.lists(st.sampled_from([0.0, 0.5, 3.0, 9.0, np.inf]),
                                            min_size=40, max_size=40))  # fmt: skip
def test_a_terminals_risk_counts_a_fraud_once_it_was_reported(data, report):
    """``known_at``: a fraud counts in a terminal's risk at ``t`` only if reported by ``t``;
    with every fraud known ``delay`` after it, the handbook's own rule."""
    t, card, term, amount, fraud, delay, _ = data
    known = np.where(fraud, t + np.array(report[: len(t)]) * DAY, np.inf)
    x = handbook_features(t, card, term, amount, fraud, delay, known_at=known)
    want = brute_force(t, card, term, amount, fraud, delay)
    for i in range(len(t)):
        for k, w in enumerate((1, 7, 30)):
            lo, hi = t[i] - delay * DAY - w * DAY, t[i] - delay * DAY
            there = (term == term[i]) & (t > lo) & (t <= hi)
            told = there & fraud & (known <= t[i])
            want[i, 10 + 2 * k] = told.sum() / there.sum() if there.any() else 0.0
    np.testing.assert_allclose(x, want, rtol=1e-12)
    handbook = handbook_features(t, card, term, amount, fraud, delay)
    as_reported = handbook_features(
        t, card, term, amount, fraud, delay, known_at=np.where(fraud, t + delay * DAY, np.inf)
    )
    np.testing.assert_array_equal(as_reported, handbook)


# -- the reference models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_set(small):
    x = handbook_features(
        small.event_time, small.customer, small.terminal, small.amount, small.is_fraud
    )
    return x, small.is_fraud.astype(int)


def test_random_forest_has_the_handbooks_settings(training_set):
    x, y = training_set
    model = fit_random_forest(x[:4000], y[:4000], seed=3)
    scaler, forest = model[0], model[-1]
    assert isinstance(scaler, StandardScaler) and isinstance(forest, RandomForestClassifier)
    params = forest.get_params()
    assert (params["n_estimators"], params["max_depth"], params["n_jobs"]) == (100, None, 1)
    assert (params["random_state"], params["max_features"]) == (3, "sqrt")
    p = model.predict_proba(x[4000:5000])[:, 1]
    assert p.shape == (1000,) and np.all((p >= 0) & (p <= 1))


def test_logistic_regression_has_the_handbooks_settings(training_set):
    x, y = training_set
    model = fit_logistic_regression(x, y, seed=2)
    assert isinstance(model[0], StandardScaler)
    lr = model[-1]
    assert isinstance(lr, LogisticRegression)
    assert (lr.C, lr.solver, lr.max_iter, lr.random_state) == (1.0, "lbfgs", 100, 2)
    np.testing.assert_allclose(model[0].mean_, x.mean(axis=0))
    # amounts over 220 are always fraud: the model ranks them high
    over = x[:, COL["TX_AMOUNT"]] > 220
    p = model.predict_proba(x)[:, 1]
    assert p[over].mean() > 10 * p[~over].mean()


def test_fitting_needs_both_classes():
    with pytest.raises(ValueError, match=r"fit_random_forest: y must hold both classes 0 and 1"):
        fit_random_forest(np.zeros((5, 15)), np.zeros(5), seed=0)
    with pytest.raises(ValueError, match=r"expected x of shape \(n, features\)"):
        fit_logistic_regression(np.zeros(5), np.array([0, 1, 0, 1, 0]), seed=0)


# -- the independent tester's parameters, labels as banks send them, the drift scenario ---------

OTHER = HandbookSpec(
    seed=9,
    n_customers=400,
    n_terminals=800,
    days=40,
    radius=4.0,
    fraud_amount_eur=180.0,
    terminals_per_day=3,
    terminal_days=21,
    customers_per_day=5,
    customer_days=10,
    amount_factor=3.0,
)


@pytest.fixture(scope="module")
def other():
    return simulate_handbook(OTHER)


def test_other_parameters_steer_every_scenario(other):
    assert np.all(other.is_fraud[other.amount_minor > 18_000])
    np.testing.assert_array_equal(
        other.scenario == 1, (other.amount_minor > 18_000) & ~np.isin(other.scenario, (2, 3))
    )
    assert other.compromised_terminals.shape == (OTHER.days - 1, 3)
    hit = exposed(other.day, other.terminal, other.compromised_terminals, 21)
    assert np.all(other.is_fraud[hit])
    np.testing.assert_array_equal(other.scenario == 2, hit & (other.scenario != 3))
    assert other.compromised_customers.shape == (OTHER.days - 1, 5)
    s3 = other.scenario == 3
    assert np.all(exposed(other.day, other.customer, other.compromised_customers, 10)[s3])
    assert np.all(other.amount_minor[s3] % 3 == 0)  # whole cents times 3
    c = int(np.bincount(other.customer).argmax())
    near = np.hypot(other.customer_x[c] - other.terminal_x, other.customer_y[c] - other.terminal_y)
    assert set(other.terminal[other.customer == c].tolist()) <= set(np.flatnonzero(near < 4.0))


def test_a_fractional_amount_factor_rounds_to_cents():
    spec = HandbookSpec(seed=2, n_customers=200, n_terminals=400, days=20, fraud_amount_eur=1e6)
    base = simulate_handbook(replace(spec, amount_factor=1.0))
    hb = simulate_handbook(replace(spec, amount_factor=2.5))
    s3 = hb.scenario == 3
    assert s3.any()
    np.testing.assert_array_equal(hb.scenario, base.scenario)
    # a payment drawn on k overlapping days is multiplied k times, rounded to cents each time
    once = np.rint(base.amount_minor[s3] * 2.5)
    twice = np.rint(once * 2.5)
    assert np.all((hb.amount_minor[s3] == once) | (hb.amount_minor[s3] == twice))
    assert np.mean(hb.amount_minor[s3] == once) > 0.9
    np.testing.assert_array_equal(hb.amount_minor[~s3], base.amount_minor[~s3])


def test_frauds_only_labels_each_fraud_once_within_1_to_60_days(other):
    events = list(other.stream(mode="frauds", include_tail=True))
    labels = [e for e in events if isinstance(e, FraudLabel)]
    assert sorted(e.transaction_id for e in labels) == sorted(
        other.transaction_id(i) for i in np.flatnonzero(other.is_fraud)
    )
    assert all(e.is_fraud for e in labels)
    row = {other.transaction_id(i): i for i in range(len(other))}
    days = np.array(
        [
            (e.reported_at.timestamp() - other.event_time[row[e.transaction_id]]) / DAY
            for e in labels
        ]
    )
    assert days.min() >= 1.0 - 1e-9 and days.max() <= 60.0 + 1e-9
    assert [e.reported_at.timestamp() for e in labels] == [
        other.fraud_reported[row[e.transaction_id]] for e in labels
    ]
    # the payments are those of the every-payment mode, in the same order
    assert encoded(e for e in events if isinstance(e, Payment)) == encoded(other.payments())


def test_frauds_only_labels_come_in_arrival_order(other):
    events = list(other.stream(mode="frauds"))
    last = None
    for k, e in enumerate(events):
        if isinstance(e, Payment):
            last = e.event_time
            continue
        assert last is not None and last < e.reported_at, f"event {k}: label released late"
        nxt = next(x for x in events[k + 1 :] if isinstance(x, Payment))
        assert nxt.event_time >= e.reported_at, f"event {k}: label released early"
    assert encoded(e for e in events if isinstance(e, FraudLabel)) == encoded(
        e for e in other.labels(mode="frauds") if e.reported_at <= last
    )


def test_a_compromised_customers_frauds_of_one_draw_are_reported_together(other):
    s3 = np.flatnonzero(other.scenario == 3)
    by_customer: dict[int, set[float]] = {}
    for i in s3.tolist():
        by_customer.setdefault(int(other.customer[i]), set()).add(float(other.fraud_reported[i]))
    assert any(len(times) == 1 for times in by_customer.values() if times)
    assert np.isnan(other.fraud_reported[~other.is_fraud]).all()


def test_an_unknown_label_mode_is_refused(tiny):
    with pytest.raises(ValueError, match="unknown label mode 'some'"):
        list(tiny.stream(mode="some"))


DRIFT = HandbookSpec(
    seed=4, n_customers=300, n_terminals=600, days=20, drift=DriftSpec(start_day=12)
)


def test_the_drift_scenario_is_bursts_at_the_customers_own_terminals_from_its_day():
    hb = simulate_handbook(DRIFT)
    new = hb.scenario == 4
    assert hb.scenario_names[-1] == NEW_PATTERN
    assert hb.scenario_counts()[NEW_PATTERN] == int(new.sum()) > 0
    assert np.all(hb.day[new] >= 12) and np.all(hb.is_fraud[new])
    assert np.all((hb.amount_minor[new] >= 4_000) & (hb.amount_minor[new] <= 12_000))
    for c in np.unique(hb.customer[new]).tolist():
        mine = new & (hb.customer == c)
        near = np.hypot(hb.customer_x[c] - hb.terminal_x, hb.customer_y[c] - hb.terminal_y)
        assert set(hb.terminal[mine].tolist()) <= set(np.flatnonzero(near < DRIFT.radius).tolist())
    assert hb.truth()[hb.transaction_id(int(np.flatnonzero(new)[0]))] == NEW_PATTERN


def test_the_drift_scenario_leaves_the_other_payments_as_they_were():
    plain = simulate_handbook(replace(DRIFT, drift=None))
    hb = simulate_handbook(DRIFT)
    other = hb.scenario != 4
    np.testing.assert_array_equal(hb.event_time[other], plain.event_time)
    np.testing.assert_array_equal(hb.customer[other], plain.customer)
    np.testing.assert_array_equal(hb.terminal[other], plain.terminal)
    np.testing.assert_array_equal(hb.compromised_terminals, plain.compromised_terminals)
    # (scenario 3 draws among a customer's own payments: those are the same, so are its draws)
    np.testing.assert_array_equal(hb.scenario[other], plain.scenario)


def test_the_report_law_changes_no_payment():
    law = LabelDelays(
        fraud_median_days=20.0, fraud_sigma=0.1, fraud_min_days=1.0, fraud_max_days=60.0
    )
    a = simulate_handbook(TINY)
    b = simulate_handbook(replace(TINY, fraud_reports=law))
    assert encoded(a.payments()) == encoded(b.payments())
    assert not np.array_equal(a.fraud_reported, b.fraud_reported, equal_nan=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"terminals_per_day": -1}, "terminals_per_day must be >= 0"),
        ({"customer_days": 0}, "customer_days and terminal_days must be >= 1"),
        ({"fraud_amount_eur": 0.0}, "fraud_amount_eur must be a finite number > 0"),
        ({"amount_factor": 0.5}, "amount_factor must be a finite number >= 1"),
        ({"n_customers": 4, "customers_per_day": 6}, "n_customers must be >= 6"),
    ],
)
def test_parameters_say_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        HandbookSpec(**{"seed": 1, **change})


def test_command_line_takes_the_parameters_and_the_label_mode(tmp_path, capsys):
    args = ["--seed", "4", "--days", "8", "--customers", "60", "--terminals", "120"]
    args += ["--fraud-amount", "150", "--terminals-per-day", "1", "--customer-days", "5"]
    args += ["--amount-factor", "3", "--labels", "frauds", "--drift-start-day", "4"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    spec = HandbookSpec(
        seed=4, n_customers=60, n_terminals=120, days=8, fraud_amount_eur=150.0,
        terminals_per_day=1, customer_days=5, amount_factor=3.0, drift=DriftSpec(start_day=4),
    )  # fmt: skip
    hb = simulate_handbook(spec)
    labels = list(iter_samples(tmp_path / "labels.jsonl"))
    assert [m.value for m in labels] == encoded(hb.labels(mode="frauds"))
    assert NEW_PATTERN in capsys.readouterr().out
