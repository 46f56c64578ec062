"""The ``boosted`` family: the forest walked with NumPy, its reasons, and batch scoring."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.catalog import FEATURE_NAMES
from model_state.offline.forests import fit_basis, fit_boosted, fit_forest
from model_state.offline.train import fit, new_basis_model, new_boosted_model, new_model
from model_state.scorer import Scorer, top_reasons
from tests.test_evaluate_model import as_rows, synthetic

X, Y = synthetic(3000, seed=4)
BOOSTED = fit_boosted(X, Y, seed=4)
# The same fit on the same columns, tails included: scikit-learn is deterministic for a seed.
FOREST = fit_forest(BOOSTED.widen(X), Y, 4)
FRESH = new_boosted_model(BOOSTED)
LEARNED = fit(as_rows(X[:800], Y[:800]), new_boosted_model(BOOSTED), weight=1.0, epochs=1, seed=4)

values = st.floats(-5, 5e6, allow_nan=False) | st.sampled_from([0.0, 1.0, 2.5])
features = st.lists(values, min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES))
batches = st.lists(features, min_size=1, max_size=12)


def as_dict(row: list[float]) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, row, strict=True))


@settings(max_examples=40, deadline=None)
@given(rows=batches)
def test_the_forest_gives_scikit_learns_log_odds_for_any_payments(rows: list[list[float]]) -> None:
    x = np.array(rows)
    log_odds, leaves = BOOSTED.forest(x)
    assert log_odds == pytest.approx(FOREST.decision_function(BOOSTED.widen(x)), abs=1e-9)
    assert leaves.shape == (len(rows), BOOSTED.trees)
    for row, log in zip(rows, log_odds.tolist(), strict=True):  # one at a time, as learning does
        assert BOOSTED(as_dict(row))["forest"] == pytest.approx(log, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(rows=batches)
def test_reasons_add_up_to_the_models_log_odds(rows: list[list[float]]) -> None:
    linear = LEARNED["LogisticRegression"]
    explainer = BOOSTED.explainer(linear.weights, linear.intercept)
    push = explainer.batch([as_dict(r) for r in rows])
    for row, contributions in zip(rows, push.tolist(), strict=True):
        p = LEARNED.predict_proba_one(as_dict(row))[True]
        if 1e-12 < p < 1 - 1e-12:
            assert sum(contributions) + explainer.offset == pytest.approx(
                math.log(p / (1 - p)), abs=1e-7
            )
        single, offset = explainer(as_dict(row))
        assert list(single.values()) == pytest.approx(contributions, abs=1e-12)
        assert offset == explainer.offset


def test_the_forest_splits_an_amount_inside_its_top_quantile() -> None:
    """Every payment above a threshold in the top 0.2 % of amounts is a fraud (the handbook's
    first scenario): 255 quantile bins cannot place that split, the tail column can."""
    rng = np.random.default_rng(11)
    x = synthetic(20_000, seed=11)[0]
    amount = FEATURE_NAMES.index("amount_eur")
    x[:, amount] = rng.gamma(2.0, 25.0, size=len(x))
    threshold = float(np.quantile(x[:, amount], 0.998))
    y = x[:, amount] > threshold
    y[rng.random(len(x)) < 0.002] = True  # some other fraud, not about amounts
    boosted = fit_boosted(x, y, seed=3)
    assert boosted.tails and boosted.tails[0][0] == amount
    test = synthetic(20_000, seed=12)[0]
    test[:, amount] = rng.gamma(2.0, 25.0, size=len(test))
    above = test[:, amount] > threshold
    log_odds = boosted.forest(test)[0]
    # Every payment above the threshold outranks every payment below it.
    assert log_odds[above].min() > np.quantile(log_odds[~above], 0.999)
    plain = fit_forest(x, y, 3).decision_function(test)  # without tails: the bins blur it
    assert plain[above].min() <= np.quantile(plain[~above], 0.999)


def test_a_tail_feature_with_nothing_above_its_quantile_is_left_out_not_a_crash() -> None:
    """Before: a bank's history where every payment has the same amount (a prepaid top-up of a
    fixed price) made the amount's tail column all missing, and scikit-learn's binning failed
    with numpy's ``window shape cannot be larger than input array shape``: ``python -m
    model_state.train --history`` and a retrain stopped with that text."""
    x, y = synthetic(3000, seed=5)
    amount = FEATURE_NAMES.index("amount_eur")
    x[:, amount] = 9.99
    boosted = fit_boosted(x, y, seed=5)
    assert amount not in [column for column, _ in boosted.tails]
    assert len(boosted.tails) == 3  # the other tail features still have their tails
    assert np.isfinite(boosted.forest(x)[0]).all()


def test_a_new_boosted_model_is_the_forest_alone() -> None:
    p = [FRESH.predict_proba_one(as_dict(r))[True] for r in X[:200].tolist()]
    assert p == pytest.approx(
        FOREST.predict_proba(BOOSTED.widen(X[:200]))[:, 1].tolist(), abs=1e-12
    )
    assert FRESH["LogisticRegression"].weights == {"forest": 1.0}


def test_learning_moves_the_hat_weights_from_zero() -> None:
    weights = LEARNED["LogisticRegression"].weights
    assert weights["forest"] != 1.0
    assert any(name.endswith("@0") and w != 0.0 for name, w in weights.items())


@pytest.mark.parametrize("family", ["boosted", "basis", "linear"])
@pytest.mark.parametrize("weight", [1.0, 3.0])
def test_scoring_a_batch_is_scoring_each_payment(family: str, weight: float) -> None:
    model = {
        "boosted": LEARNED,
        "basis": fit(
            as_rows(X[:800], Y[:800]), new_basis_model(fit_basis(X, Y, seed=4)), weight=1.0,
            epochs=1, seed=4,
        ),
        "linear": fit(as_rows(X[:800], Y[:800]), new_model(), weight=1.0, epochs=1, seed=4),
    }[family]  # fmt: skip
    scorer = Scorer(model, "v1", review=0.2, decline=0.6, positive_weight=weight)
    rows = [as_dict(r) for r in X[:300].tolist()]
    batch = scorer.score_batch(rows, explain=True)
    flow = scorer.score_batch(rows)  # as the flow scores: reasons only for those not approved
    assert len(batch) == len(rows)
    for x, together, stored in zip(rows, batch, flow, strict=True):
        alone = scorer.score(x)
        assert together.probability == pytest.approx(alone.probability, rel=1e-9, abs=1e-15)
        assert together.decision == alone.decision
        assert together.reasons == alone.reasons
        assert stored.probability == together.probability
        assert stored.reasons == (None if stored.decision == "approve" else together.reasons)
    assert "approve" in {s.decision for s in batch} and len({s.decision for s in batch}) > 1
    assert scorer.score_batch([]) == []


def test_the_scorer_names_the_features_that_pushed_a_boosted_score_up() -> None:
    scorer = Scorer(LEARNED, "v1", review=0.5, decline=0.9)
    linear = LEARNED["LogisticRegression"]
    explainer = BOOSTED.explainer(linear.weights, linear.intercept)
    riskiest = max(X.tolist(), key=lambda r: LEARNED.predict_proba_one(as_dict(r))[True])
    score = scorer.score(as_dict(riskiest))
    assert score.reasons and score.reasons == top_reasons(explainer(as_dict(riskiest))[0])


def test_a_boosted_version_pickles_by_value_and_scores_the_same() -> None:
    payload = pickle.dumps(LEARNED, protocol=pickle.HIGHEST_PROTOCOL)
    restored = pickle.loads(payload)
    rows = [as_dict(r) for r in X[:50].tolist()]
    before = Scorer(LEARNED, "v1", review=0.5, decline=0.9).score_batch(rows)
    assert Scorer(restored, "v1", review=0.5, decline=0.9).score_batch(rows) == before
    assert b"model_state.boosted" in payload and b"Boosted" in payload
