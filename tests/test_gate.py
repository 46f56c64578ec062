"""The retrain's gate: a challenger must beat the flow's own ranking by more than the noise."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_state.offline.gate import (
    NotEnoughLabelsError,
    Verdict,
    _ranking,
    ap_difference_se,
    judge,
    weighted_average_precision,
)
from model_state.offline.retrain import Validation

T = datetime(2026, 3, 2, tzinfo=UTC)


def _validation(truth: np.ndarray, scores: np.ndarray) -> Validation:
    from sklearn.metrics import average_precision_score

    return Validation(
        average_precision=float(average_precision_score(truth, scores)) if truth.any() else None,
        hold_out=[(T, {}, bool(y)) for y in truth.tolist()],
        hold_out_index=list(range(len(truth))),
        scores=scores.tolist(),
        metrics={},
    )


@settings(max_examples=100, deadline=None)
@given(
    truth=st.lists(st.booleans(), min_size=2, max_size=40),
    scores=st.lists(st.sampled_from([0.1, 0.2, 0.5, 0.9]), min_size=40, max_size=40),
    weights=st.lists(st.integers(0, 3), min_size=40, max_size=40),
)
def test_the_fast_average_precision_is_scikit_learns(
    truth: list[bool], scores: list[float], weights: list[int]
) -> None:
    from sklearn.metrics import average_precision_score

    y = np.array(truth)
    s = np.array(scores[: len(y)])
    w = np.array(weights[: len(y)], dtype=float)
    if not (w * y).sum() or not (w * ~y).sum():
        return
    want = average_precision_score(y, s, sample_weight=w)
    got = weighted_average_precision(y.astype(float), _ranking(s), w)
    assert got == pytest.approx(want, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), frauds=st.integers(1, 30))
def test_the_same_ranking_twice_differs_by_nothing(seed: int, frauds: int) -> None:
    rng = np.random.default_rng(seed)
    truth = np.zeros(200, dtype=bool)
    truth[:frauds] = True
    score = rng.random(200)
    assert ap_difference_se(truth, score, score) == 0.0
    assert ap_difference_se(truth, score, score[::-1]) == ap_difference_se(
        truth, score, score[::-1]
    )  # deterministic


def test_a_gain_within_the_noise_is_refused_and_a_clear_one_accepted() -> None:
    rng = np.random.default_rng(4)
    truth = rng.random(4000) < 0.02
    flow = truth * 1.0 + rng.normal(0, 0.6, 4000)  # how the flow ranked them
    slightly = flow + rng.normal(0, 0.05, 4000)  # about as good
    clearly = truth * 2.0 + rng.normal(0, 0.6, 4000)  # far better
    near = judge(_validation(truth, slightly), None, live=flow.tolist())
    assert near.standard_error > 0 and not near.accepted
    assert abs(near.challenger_ap - near.champion_ap) < near.standard_error
    far = judge(_validation(truth, clearly), None, live=flow.tolist())
    assert far.challenger_ap - far.champion_ap > far.standard_error and far.accepted
    # with no required gain, any challenger at least as good passes
    lenient = judge(_validation(truth, slightly), None, live=flow.tolist(), min_gain=0.0)
    assert lenient.accepted == (lenient.challenger_ap >= lenient.champion_ap)


def test_the_first_version_meets_no_champion_and_a_one_class_hold_out_is_refused() -> None:
    truth = np.array([True, False, False, False])
    first = judge(_validation(truth, np.array([0.9, 0.1, 0.2, 0.3])), None)
    assert first.accepted and first.champion_ap == float("-inf")
    with pytest.raises(NotEnoughLabelsError, match="4 labelled payments, 0 of them frauds"):
        judge(_validation(np.zeros(4, dtype=bool), np.zeros(4)), None)


@pytest.mark.parametrize(
    ("challenger", "champion", "se", "accepted"),
    [(0.80, 0.80, 0.0, True), (0.81, 0.80, 0.02, False), (0.83, 0.80, 0.02, True)],
)
def test_the_verdict_needs_the_gain(
    challenger: float, champion: float, se: float, accepted: bool
) -> None:
    verdict = Verdict(
        champion="v1", challenger_ap=challenger, champion_ap=champion, tolerance=0.0,
        rows=100, frauds=10, standard_error=se, min_gain=1.0,
    )  # fmt: skip
    assert verdict.accepted is accepted
    assert "must gain 1 standard errors" in str(verdict)
