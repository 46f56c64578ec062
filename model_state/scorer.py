"""Turning a feature vector into a fraud probability, a decision and reason codes.

Fraud is rare, so the model learns with fraud examples weighted ``w`` times a legitimate one
(see :mod:`model_state.train`). A logistic model learnt that way estimates the odds of fraud
``w`` times too high, so the scorer subtracts ``log(w)`` from the model's log-odds: the
probability it reports is calibrated to the real fraud rate (prior correction, as in King and
Zeng, "Logistic Regression in Rare Events Data", 2001).

The decision is a pure function of the probability and two thresholds:
``approve`` below ``review_threshold``, ``decline`` at or above ``decline_threshold``, ``review``
in between. Reason codes name up to three features that pushed the score up the most: for a
linear model after a scaler, the terms ``weight * scaled value`` that are largest and positive.

>>> decide(0.2, review=0.5, decline=0.9), decide(0.5, review=0.5, decline=0.9)
('approve', 'review')
>>> decide(0.95, review=0.5, decline=0.9)
'decline'
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
from river import compose, linear_model, preprocessing

Decision = Literal["approve", "review", "decline"]
MAX_REASONS = 3


def decide(probability: float, *, review: float, decline: float) -> Decision:
    if probability >= decline:
        return "decline"
    if probability >= review:
        return "review"
    return "approve"


class Score(msgspec.Struct, frozen=True):
    probability: float
    decision: Decision
    reasons: tuple[str, ...]


def _linear_parts(model: Any) -> tuple[Any, Any] | None:
    """The (scaler, linear model) of a ``StandardScaler | LogisticRegression`` pipeline."""
    if not isinstance(model, compose.Pipeline):
        return None
    steps = list(model.steps.values())
    if (
        len(steps) == 2
        and isinstance(steps[0], preprocessing.StandardScaler)
        and isinstance(steps[1], linear_model.LogisticRegression)
    ):
        return steps[0], steps[1]
    return None


def _contributions(parts: tuple[Any, Any], features: dict[str, float]) -> dict[str, float]:
    scaler, linear = parts
    weights = linear.weights
    return {name: weights.get(name, 0.0) * v for name, v in scaler.transform_one(features).items()}


def _top_reasons(contributions: dict[str, float]) -> tuple[str, ...]:
    ranked = sorted(contributions.items(), key=lambda kv: kv[1], reverse=True)
    return tuple(name for name, c in ranked[:MAX_REASONS] if c > 0)


def reason_codes(model: Any, features: dict[str, float]) -> tuple[str, ...]:
    """Up to three features that raised this payment's score the most (empty if none did)."""
    parts = _linear_parts(model)
    if parts is None:
        raise TypeError(
            "reason codes need a StandardScaler | LogisticRegression pipeline; "
            f"got {type(model).__name__}"
        )
    return _top_reasons(_contributions(parts, features))


class Scorer:
    """Scores feature dicts with one model version; cheap to call per payment."""

    def __init__(
        self,
        model: Any,
        version: str,
        *,
        review: float,
        decline: float,
        positive_weight: float = 1.0,
    ) -> None:
        if positive_weight <= 0:
            raise ValueError(f"positive_weight must be > 0; got {positive_weight}")
        parts = _linear_parts(model)
        if parts is None:
            reason_codes(model, {})  # raises the explanatory TypeError
        self._parts: tuple[Any, Any] = parts  # type: ignore[assignment]
        self.model = model
        self.version = version
        self._review = review
        self._decline = decline
        self._log_weight = math.log(positive_weight)

    def score(self, features: dict[str, float]) -> Score:
        """Probability, decision and reasons; the scaled vector is computed once for both.

        River's logistic regression is ``sigmoid(intercept + sum(weight * scaled value))``; with
        ``positive_weight`` 1 the probability equals ``model.predict_proba_one`` (tested).
        """
        linear = self._parts[1]
        contributions = _contributions(self._parts, features)
        log_odds = sum(contributions.values()) + linear.intercept - self._log_weight
        probability = linear.loss.mean_func(log_odds)
        if not math.isfinite(probability):
            raise ValueError(
                f"model {self.version} returned probability {probability} for features {features}"
            )
        return Score(
            probability,
            decide(probability, review=self._review, decline=self._decline),
            _top_reasons(contributions),
        )
