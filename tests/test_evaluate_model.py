"""The model families: the ``basis`` expansion, how the scorer explains it, training, learning."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.forest import ARFClassifier

from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.basis import LOG_KNOTS
from model_state.learner import OnlineLearner
from model_state.offline.forests import fit_basis
from model_state.offline.train import (
    compare,
    fit,
    new_basis_model,
    new_model,
    pretrain,
    probability,
    train_rows,
)
from model_state.scorer import Scorer, explainer_for, top_reasons
from storage.labels import LabelledPayment
from tests.builders import TEST_KEY, model_metadata

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features on very different scales; fraud when amount is large and late."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(
        mean=np.linspace(-1, 8, len(FEATURE_NAMES)), sigma=1.5, size=(n, len(FEATURE_NAMES))
    )
    x[:, 5] = rng.integers(0, 2, n)  # a flag
    x[rng.random((n, len(FEATURE_NAMES))) < 0.2] = 0.0
    amount, hour = x[:, 0], x[:, -3]
    logit = 0.8 * np.log1p(amount) - 4 + 2.0 * (hour > np.median(hour)) * (x[:, 5] > 0)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return x, y


def as_rows(x: np.ndarray, y: np.ndarray) -> list[tuple[datetime, dict[str, float], bool]]:
    return [
        (T0 + timedelta(minutes=10 * i), dict(zip(FEATURE_NAMES, row, strict=True)), bool(label))
        for i, (row, label) in enumerate(zip(x.tolist(), y.tolist(), strict=True))
    ]


X, Y = synthetic(3000, seed=1)
BASIS = fit_basis(X, Y, seed=1)
MODEL = fit(as_rows(X, Y), new_basis_model(BASIS), weight=1.0, epochs=1, seed=1)


def test_basis_columns_are_hats_leaves_and_the_forest_log_odds() -> None:
    x = dict(zip(FEATURE_NAMES, X[7].tolist(), strict=True))
    columns, leaves = BASIS.expand(x)
    for name in FEATURE_NAMES:
        hats = {k: v for k, v in columns.items() if k.startswith(name + "@")}
        assert 1 <= len(hats) <= 2
        assert sum(hats.values()) == pytest.approx(1.0)
    assert sum(1 for k in columns if k.startswith("tree")) == len(BASIS.trees) == len(leaves)
    assert columns["forest"] == pytest.approx(
        BASIS.base + sum(t[4][node] for t, node in zip(BASIS.trees, leaves, strict=True))
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, {"amount_eur@0": 1.0}),
        (-5.0, {"amount_eur@0": 1.0}),  # below zero counts as zero
        (math.e - 1, {"amount_eur@1": 1.0}),
        (math.exp(2.5) - 1, {"amount_eur@2": 0.5, "amount_eur@3": 0.5}),
        (1e12, {f"amount_eur@{LOG_KNOTS}": 1.0}),  # beyond the last knot
    ],
)
def test_hats_place_a_value_between_log_knots(value: float, expected: dict[str, float]) -> None:
    x = dict.fromkeys(FEATURE_NAMES, 1.0) | {"amount_eur": value}
    columns = BASIS(x)
    got = {k: v for k, v in columns.items() if k.startswith("amount_eur@")}
    assert got == pytest.approx(expected)


def test_basis_and_model_pickle_small_and_score_the_same() -> None:
    payload = pickle.dumps(MODEL)
    restored = pickle.loads(payload)
    x = dict(zip(FEATURE_NAMES, X[11].tolist(), strict=True))
    assert restored.predict_proba_one(x) == MODEL.predict_proba_one(x)
    assert restored["Basis"].func(x) == BASIS(x)
    assert len(payload) < 100_000


features = st.lists(
    st.sampled_from([0.0, 0.5, 1.0, 3.0, 250.0, 1e5, 1e9]) | st.floats(0, 1e7),
    min_size=len(FEATURE_NAMES),
    max_size=len(FEATURE_NAMES),
)


@settings(max_examples=150, deadline=None)
@given(values=features)
def test_contributions_and_offset_add_up_to_the_log_odds(values: list[float]) -> None:
    x = dict(zip(FEATURE_NAMES, values, strict=True))
    linear = MODEL["LogisticRegression"]
    contributions, offset = BASIS.explainer(linear.weights, linear.intercept)(x)
    assert set(contributions) == set(FEATURE_NAMES)
    p = MODEL.predict_proba_one(x)[True]
    if 1e-12 < p < 1 - 1e-12:
        assert sum(contributions.values()) + offset == pytest.approx(math.log(p / (1 - p)))
    assert explainer_for(MODEL)(x)[0] == pytest.approx(contributions)


@settings(max_examples=150, deadline=None)
@given(values=features, weight=st.sampled_from([1.0, 3.0]))
def test_the_scorer_scores_the_basis_family_and_explains_that_score(
    values: list[float], weight: float
) -> None:
    x = dict(zip(FEATURE_NAMES, values, strict=True))
    score = Scorer(MODEL, "v1", review=0.5, decline=0.9, positive_weight=weight).score(x)
    assert score.probability == pytest.approx(probability(MODEL, x, weight), rel=1e-9, abs=1e-12)
    linear = MODEL["LogisticRegression"]
    contributions, _ = BASIS.explainer(linear.weights, linear.intercept)(x)
    assert score.reasons == top_reasons(contributions)
    assert all(contributions[r] > 0 for r in score.reasons)
    assert len(score.reasons) <= 3


def test_a_version_scores_the_same_after_its_pickle_round_trip() -> None:
    restored = pickle.loads(pickle.dumps(MODEL))  # how the flow receives a published version
    x = dict(zip(FEATURE_NAMES, X[3].tolist(), strict=True))
    assert Scorer(restored, "v1", review=0.5, decline=0.9).score(x) == Scorer(
        MODEL, "v1", review=0.5, decline=0.9
    ).score(x)


def test_the_average_payment_has_no_contribution_from_hats() -> None:
    linear = MODEL["LogisticRegression"]
    explainer = BASIS.explainer(linear.weights, linear.intercept)
    hats = np.mean([explainer(dict(zip(FEATURE_NAMES, r, strict=True)))[0]["amount_eur"]
                    for r in X.tolist()])  # fmt: skip
    assert abs(hats) < 0.35  # hats and leaves average out over the training rows


def test_the_scorer_names_the_families_it_explains() -> None:
    families = (
        r"StandardScaler \| LogisticRegression \('linear'.*"
        r"FuncTransformer\(Basis\) \| LogisticRegression \('basis'.*"
        r"FuncTransformer\(Boosted\) \| LogisticRegression \('boosted'.*got ARF"
    )
    with pytest.raises(TypeError, match=families):
        Scorer(ARFClassifier(n_models=2), "v1", review=0.5, decline=0.9)


@pytest.mark.parametrize("weight", [1.0, 4.0])
def test_probability_is_the_scorers_for_the_linear_family(weight: float) -> None:
    model = fit(as_rows(X[:500], Y[:500]), new_model(), weight=weight, epochs=1, seed=2)
    scorer = Scorer(model, "v1", review=0.5, decline=0.9, positive_weight=weight)
    for row in X[:50].tolist():
        x = dict(zip(FEATURE_NAMES, row, strict=True))
        assert probability(model, x, weight) == pytest.approx(scorer.score(x).probability)


def test_the_learner_learns_and_publishes_a_basis_model() -> None:
    metadata = model_metadata(model_description=repr(MODEL), rows=0, frauds=0)
    learner = OnlineLearner(artifact.ModelArtifact(MODEL, metadata, b""), publish_every=5)
    for i, (row, label) in enumerate(zip(X[:5].tolist(), Y[:5].tolist(), strict=True)):
        learner.learn(
            LabelledPayment(
                transaction_id=f"t{i}",
                card_id="c",
                merchant_id="m",
                terminal_id="p",
                payment_time=0.0,
                reported_at=1.0,
                is_fraud=bool(label),
                features=dict(zip(FEATURE_NAMES, row, strict=True)),
                scored_by="v00001",
            )
        )
    record = learner.publish(T0)
    start = artifact.ModelArtifact(MODEL, metadata, b"")
    published = artifact.loads(record.payload, record.metadata, lambda v: start, where="test")
    assert record.metadata.base_version == "v00001"  # a delta on its root's basis
    x = dict(zip(FEATURE_NAMES, X[0].tolist(), strict=True))
    assert published.predict_proba_one(x) != MODEL.predict_proba_one(x)
    assert len(pickle.dumps(learner)) < 100_000


def test_train_rows_saves_a_loadable_basis_version_with_the_comparison(tmp_path: Path) -> None:
    rows = as_rows(*synthetic(4000, seed=3))
    saved = train_rows(
        rows, tmp_path, key=TEST_KEY, seed=3, epochs=1, family="basis", with_comparison=True
    )
    loaded = artifact.load(tmp_path, key=TEST_KEY)
    assert loaded.version == saved.version == "v00001"
    m = saved.metadata.metrics
    for name in ("linear", "basis", "hoeffding_adaptive_tree", "arf5"):
        for figure in ("learn_rows_per_s", "predict_rows_per_s", "pickled_bytes", "roc_auc"):
            assert m[f"compare_{name}_{figure}"] > 0
    assert m["roc_auc"] > 0.55  # better than chance on noisy synthetic rows
    x = rows[0][1]
    assert loaded.model.predict_proba_one(x) == saved.model.predict_proba_one(x)


def test_compare_learns_on_every_fraud_and_a_tenth_of_the_rest() -> None:
    rows = as_rows(X[:1000], Y[:1000])
    m = compare(rows[:800], rows[800:], MODEL, seed=5)
    frauds = sum(r[2] for r in rows[:800])
    assert frauds <= m["compare_learn_rows"] <= frauds + 0.2 * (800 - frauds)


def test_an_unknown_family_is_refused(tmp_path: Path) -> None:
    choose = "unknown model family 'forest'; choose one of boosted, basis, linear"
    with pytest.raises(ValueError, match=choose):
        train_rows(as_rows(X[:300], Y[:300]), tmp_path, key=TEST_KEY, seed=1, family="forest")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("family", "optimizer", "step"),
    [("linear", "AdaGrad", 0.01), ("basis", "SGD", 0.003), ("boosted", "SGD", 0.0003)],
)
def test_pretrained_models_go_on_learning_with_the_online_optimizer(
    family: str, optimizer: str, step: float
) -> None:
    model = pretrain(as_rows(X[:600], Y[:600]), family=family, epochs=1, fraud_weight=1.0, seed=1)  # type: ignore[arg-type]
    online = model["LogisticRegression"].optimizer
    assert type(online).__name__ == optimizer
    assert online.learning_rate == step


def test_an_online_optimizer_is_named_with_its_rate_and_shares_the_forest() -> None:
    from model_state.boosted import Boosted
    from model_state.offline.online_optimizer import online_optimizer, with_online_optimizer

    with pytest.raises(ValueError, match="expected <name>:<learning rate>"):
        online_optimizer("adagrad")
    with pytest.raises(ValueError, match="a name among sgd, adagrad, adam"):
        online_optimizer("rmsprop:0.1")
    model = pretrain(
        as_rows(X[:600], Y[:600]), family="boosted", epochs=1, fraud_weight=1.0, seed=1
    )
    other = with_online_optimizer(model, "adagrad:0.05")
    assert type(other["LogisticRegression"].optimizer).__name__ == "AdaGrad"
    assert type(model["LogisticRegression"].optimizer).__name__ == "SGD"  # the original stays
    assert other["LogisticRegression"].weights == model["LogisticRegression"].weights
    forest = next(iter(other.steps.values())).func
    assert isinstance(forest, Boosted) and forest is next(iter(model.steps.values())).func
