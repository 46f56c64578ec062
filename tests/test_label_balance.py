"""The guard that keeps online learning near the expected fraud rate, whatever the label order."""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_state.label_balance import DAY, LabelBalance

SHARE = 0.004

labels = st.lists(
    st.tuples(st.booleans(), st.floats(0, 60 * DAY, allow_nan=False)), min_size=1, max_size=300
)


@settings(max_examples=200, deadline=None)
@given(
    arrivals=labels,
    tolerance=st.sampled_from([1.0, 1.5, 3.0]),
    count=st.sampled_from([1.0, 2.0, 10.0]),
)
def test_weights_lie_in_0_1_and_the_learned_odds_stay_in_the_band(
    arrivals: list[tuple[bool, float]], tolerance: float, count: float
) -> None:
    """Whatever the labels stand for: ``count`` legitimate labels each (a sample kept at rate
    1 / count, :mod:`model_state.label_kinds`)."""
    balance = LabelBalance(SHARE, tolerance=tolerance)
    for is_fraud, t in arrivals:
        w = balance.weight(is_fraud=is_fraud, reported_at=t, count=1.0 if is_fraud else count)
        assert 0.0 < w <= 1.0
        # Decay pulls towards the prior (odds ratio 1); a label is weighed to stay in the band.
        assert 1 / tolerance - 1e-3 <= balance.odds_ratio() <= tolerance + 1e-3


def test_a_steady_stream_at_the_expected_rate_learns_every_label_fully() -> None:
    rng = random.Random(3)
    balance = LabelBalance(SHARE)
    weights = [
        balance.weight(is_fraud=rng.random() < SHARE, reported_at=i * 20.0)  # 4,320 a day
        for i in range(60_000)
    ]
    assert min(weights) == 1.0


def test_frauds_alone_are_learned_only_up_to_the_tolerance() -> None:
    # A flow's first month: frauds are reported, legitimate payments are not confirmed yet.
    balance = LabelBalance(SHARE, tolerance=3.0)
    weights = [balance.weight(is_fraud=True, reported_at=i * 3600.0) for i in range(30 * 24)]
    assert sum(weights) < 80  # against 720 frauds learned fully
    assert balance.odds_ratio() <= 3.0 + 1e-6


def test_legitimate_labels_alone_are_capped_the_same_way() -> None:
    # The fraud feed is down: only confirmations arrive.
    balance = LabelBalance(SHARE, tolerance=3.0, prior_labels=1_000)
    weights = [balance.weight(is_fraud=False, reported_at=i * 10.0) for i in range(20_000)]
    assert sum(weights) < 3_500  # against 20,000
    assert balance.odds_ratio() >= 1 / 3.0 - 1e-6


def test_time_only_moves_forward_and_the_guard_pickles() -> None:
    balance = LabelBalance(SHARE)
    balance.weight(is_fraud=False, reported_at=10 * DAY)
    balance.weight(is_fraud=False, reported_at=DAY)  # late, from another partition
    assert balance.clock == 10 * DAY
    restored = pickle.loads(pickle.dumps(balance))
    assert restored.odds_ratio() == balance.odds_ratio()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expected_fraud_share": 0.0}, "strictly between 0 and 1; got 0.0"),
        ({"expected_fraud_share": 0.1, "tolerance": 0.5}, "tolerance >= 1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabelBalance(**kwargs)


def test_a_sampled_legitimate_label_counts_for_the_labels_it_stands_for() -> None:
    one, sampled = LabelBalance(SHARE), LabelBalance(SHARE)
    for i in range(400):
        one.weight(is_fraud=False, reported_at=float(i))
    for i in range(100):
        sampled.weight(is_fraud=False, reported_at=float(4 * i), count=4.0)
    assert sampled.legit == pytest.approx(one.legit, rel=1e-3)
    with pytest.raises(ValueError, match="count > 0"):
        one.weight(is_fraud=False, reported_at=1.0, count=0.0)
