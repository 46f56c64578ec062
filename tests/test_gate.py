"""The retrain's gate: a challenger must beat the flow's own ranking by more than the noise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def _timed_validation(truth: np.ndarray, scores: np.ndarray, days: list[int]) -> Validation:
    """A hold-out whose payment ``k`` was made ``days[k]`` days after ``T``."""
    plain = _validation(truth, scores)
    held = [
        (T + timedelta(days=d), {}, y) for d, (_, _, y) in zip(days, plain.hold_out, strict=True)
    ]
    return Validation(
        average_precision=plain.average_precision, hold_out=held,
        hold_out_index=plain.hold_out_index, scores=plain.scores, metrics={},
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.booleans(), st.floats(0, 1), st.floats(0, 1), st.integers(0, 13)),
        min_size=4,
        max_size=60,
    ),
    cut=st.integers(0, 14),
)
def test_the_gate_judges_only_on_hold_out_payments_after_the_warm_up(
    rows: list[tuple[bool, float, float, int]], cut: int
) -> None:
    """With ``judged_from`` (the end of the history's warm-up), the verdict is the one on the
    hold-out's later payments alone, the challenger's and the champion's AP both; with none of
    them holding both classes, there is nothing to compare on and the champion stays."""
    truth = np.array([r[0] for r in rows])
    mine = np.array([r[1] for r in rows])
    flow = np.array([r[2] for r in rows])
    days = [r[3] for r in rows]
    after = np.array([d >= cut for d in days])
    validation = _timed_validation(truth, mine, days)
    judged_from = T + timedelta(days=cut)
    if not 0 < truth[after].sum() < after.sum():
        with pytest.raises(NotEnoughLabelsError, match="made from"):
            judge(validation, None, live=flow.tolist(), judged_from=judged_from)
        return
    got = judge(validation, None, live=flow.tolist(), judged_from=judged_from)
    want = judge(_validation(truth[after], mine[after]), None, live=flow[after].tolist())
    assert (got.challenger_ap, got.champion_ap, got.standard_error, got.rows, got.frauds) == (
        pytest.approx(want.challenger_ap, abs=1e-12), want.champion_ap, want.standard_error,
        want.rows, want.frauds,
    )  # fmt: skip
    if after.all():  # the warm-up ended before the hold-out: as without it
        assert got == judge(validation, None, live=flow.tolist())
