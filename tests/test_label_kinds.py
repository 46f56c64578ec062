"""Labels as the learner takes them: kinds, corrections, and negative downsampling."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.label_kinds import LabelKind, learn_weight, sampled
from model_state.learner import KIND_COUNTS, OnlineLearner
from model_state.offline.train import new_model
from storage.labels import LabelledPayment
from tests.builders import model_metadata

ids = st.text(min_size=1, max_size=40)
rates = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(transaction_id=ids, low=rates, high=rates)
def test_sampling_is_a_pure_function_of_the_id_and_nested_in_the_rate(
    transaction_id: str, low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    assert sampled(transaction_id, low) == sampled(transaction_id, low)  # a replay agrees
    if sampled(transaction_id, low):
        assert sampled(transaction_id, high)  # kept at a rate, kept at every higher one
    assert sampled(transaction_id, 1.0) and not sampled(transaction_id, 0.0)


@settings(max_examples=200, deadline=None)
@given(transaction_id=ids, rate=st.floats(0.01, 1.0), is_fraud=st.booleans())
def test_every_fraud_is_learned_and_a_kept_legitimate_label_weighs_one_over_the_rate(
    transaction_id: str, rate: float, is_fraud: bool
) -> None:
    weight = learn_weight(is_fraud=is_fraud, transaction_id=transaction_id, rate=rate)
    if is_fraud:
        assert weight == 1.0
    elif sampled(transaction_id, rate):
        assert weight == pytest.approx(1.0 / rate)
    else:
        assert weight is None


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_the_sample_weighs_what_every_label_weighs(rate: float) -> None:
    """He et al.'s correction: the weights of the kept labels add up to the labels' count."""
    n = 200_000
    total = sum(
        learn_weight(is_fraud=False, transaction_id=f"s1-tx{i:010d}", rate=rate) or 0.0
        for i in range(n)
    )
    assert total == pytest.approx(n, rel=0.03)


def test_a_bad_rate_is_refused() -> None:
    for rate in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sampling rate must lie in"):
            sampled("t", rate)


def _start() -> artifact.ModelArtifact:
    model = new_model()
    model["LogisticRegression"].l2 = 0.0  # a step is then exactly the weighted gradient
    rng = np.random.default_rng(3)
    for _ in range(200):
        x = dict(zip(FEATURE_NAMES, rng.random(len(FEATURE_NAMES)).tolist(), strict=True))
        model.learn_one(x, x["amount_eur"] > 0.8)
    return artifact.ModelArtifact(model, model_metadata(rows=200, frauds=40), b"")


def _label(i: int, fraud: bool) -> LabelledPayment:
    features = dict.fromkeys(FEATURE_NAMES, 0.5) | {"amount_eur": 0.1 * (i % 10)}
    return LabelledPayment(
        transaction_id=f"t-{i}", card_id="c", merchant_id="m", terminal_id="p",
        payment_time=1000.0 * i, reported_at=1000.0 * i + 10, is_fraud=fraud,
        features=features, scored_by="v00001", label_partition=0, label_offset=i,
    )  # fmt: skip


def test_the_learner_counts_each_kind_and_a_version_carries_the_counts() -> None:
    learner = OnlineLearner(_start(), publish_every=10)
    learner.learn(_label(0, True))
    learner.learn(_label(1, False))
    learner.learn(_label(2, False), kind=LabelKind.IMPLICIT, weight=4.0)
    learner.learn(_label(3, True), kind=LabelKind.CORRECTION)
    assert learner.kinds == dict(zip(KIND_COUNTS, (1, 1, 1, 1), strict=True))
    record = learner.publish(datetime(2026, 3, 2, tzinfo=UTC))
    model = artifact.loads(record.payload, record.metadata, None, where="test")
    again = OnlineLearner(artifact.ModelArtifact(model, record.metadata, record.payload), 10)
    assert again.kinds == learner.kinds
    assert again.learned_total == 4


def test_an_implicit_fraud_or_a_legitimate_correction_is_refused() -> None:
    learner = OnlineLearner(_start(), publish_every=10)
    with pytest.raises(ValueError, match="an implicit label is a legitimate payment"):
        learner.learn(_label(0, True), kind=LabelKind.IMPLICIT)
    with pytest.raises(ValueError, match="a correction is a fraud"):
        learner.learn(_label(0, False), kind=LabelKind.CORRECTION)
    with pytest.raises(ValueError, match="weight must be a finite number > 0"):
        learner.learn(_label(0, False), weight=0.0)
    assert learner.learned_total == 0


@pytest.mark.parametrize("weight", [2.0, 5.0])
def test_a_weight_scales_the_learning_step(weight: float) -> None:
    """Without the balance guard, a label learned at weight w moves every weight w times as far
    as at weight 1 (one SGD step from the same state)."""
    one = OnlineLearner(_start(), publish_every=10, balanced=False)
    heavy = OnlineLearner(_start(), publish_every=10, balanced=False)
    before = dict(one._last_step.weights)
    one.learn(_label(5, False))
    heavy.learn(_label(5, False), kind=LabelKind.IMPLICIT, weight=weight)
    for name, w0 in before.items():
        step = one._last_step.weights[name] - w0
        assert heavy._last_step.weights[name] - w0 == pytest.approx(
            weight * step, rel=1e-9, abs=1e-15
        )
