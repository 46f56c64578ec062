"""Turning a feature vector into a fraud probability, a decision and reason codes.

Fraud is rare, so the model may learn with fraud examples weighted ``w`` times a legitimate one
(see :mod:`model_state.offline.train`). A logistic model learnt that way estimates the odds of fraud
``w`` times too high, so the scorer subtracts ``log(w)`` from the model's log-odds (prior
correction, as in King and Zeng, "Logistic Regression in Rare Events Data", 2001). That undoes
the weighting; it does not make the probability calibrated by itself. How well calibrated it is
on a stream is measured, not assumed: ``python -m model_state.evaluate`` reports the Brier score,
the expected calibration error and a reliability plot (README, "Evaluation").

The decision is a pure function of the probability and two thresholds:
``approve`` below ``review_threshold``, ``decline`` at or above ``decline_threshold``, ``review``
in between.

Reason codes name up to three features that pushed the score up the most. The scorer splits
the model's log-odds into one contribution per catalogue feature plus an offset
(:func:`explainer_for`), and computes the probability from the same split, so the reasons
always explain the probability stored beside them:

- ``linear`` family (``StandardScaler | LogisticRegression``): ``weight * scaled value``;
- ``basis`` family (``FuncTransformer(Basis) | LogisticRegression``): the contributions of
  :class:`model_state.basis.Explainer`, measured against the average training payment;
- ``boosted`` family (``FuncTransformer(Boosted) | LogisticRegression``): those of
  :class:`model_state.boosted.BoostedExplainer`, the forest's log-odds split along its paths.

:meth:`Scorer.score_batch` scores many payments at once: the ``boosted`` family walks its
forest for the whole batch with NumPy (about 11,000 payments/s in batches of 500 against 3,300
one at a time, ``benchmarks/bench_models.py --speed --seeds``); the others score one payment
after another.

**Reasons only where someone reads them.** Every row is split (the probability is summed from
the split, so skipping it would change the probability's last bits), but the ranking into
reason codes is done only for the rows an analyst reads: every decision but ``approve``, and
the rows the caller marks with ``explain``. The flow marks the payments a rule fired on, which it
knows only once the rules have decided with the probabilities: it splits the batch once
(:meth:`Scorer.split_batch`), decides the rules, then ranks every row it reads in one call
(:meth:`Split.scores`), from the same split. An approved payment's reasons
are computed on demand from its stored features and version with :meth:`Scorer.reasons`, which
is :meth:`Scorer.score_batch` with every row marked: the very values the flow would have stored
(``tests/test_reasons_on_demand.py``). :meth:`Scorer.probabilities` ranks none (for a
shadowing challenger, whose reasons nobody reads).

>>> decide(0.2, review=0.5, decline=0.9), decide(0.5, review=0.5, decline=0.9)
('approve', 'review')
>>> decide(0.95, review=0.5, decline=0.9)
'decline'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np
from numba import njit
from river import compose, linear_model, preprocessing
from river.utils.math import sigmoid

from model_state.basis import Basis
from model_state.boosted import Boosted

Decision = Literal["approve", "review", "decline"]
MAX_REASONS = 3

Explain = Callable[[dict[str, float]], tuple[dict[str, float], float]]
"""Features to (contribution per feature, offset); together they add up to the log-odds."""


def decide(probability: float, *, review: float, decline: float) -> Decision:
    if probability >= decline:
        return "decline"
    if probability >= review:
        return "review"
    return "approve"


class Score(msgspec.Struct, frozen=True):
    probability: float
    decision: Decision
    reasons: tuple[str, ...] | None
    """Up to three features, largest push first; ``None``: not ranked (an approval nobody
    marked to explain; :meth:`Scorer.reasons` gives them on demand)."""


class LinearExplainer:
    """Contributions ``weight * scaled value`` of a ``StandardScaler | LogisticRegression``.

    ``weights`` is read once (River's ``LogisticRegression.weights`` is already a copy): it
    explains the model as it was then (a version).
    """

    def __init__(
        self, scaler: preprocessing.StandardScaler, weights: dict[str, float], intercept: float
    ) -> None:
        self._scaler = scaler
        self._weights = weights
        self._intercept = intercept

    def __call__(self, x: dict[str, float]) -> tuple[dict[str, float], float]:
        w = self._weights
        scaled = self._scaler.transform_one(x)
        return {name: w.get(name, 0.0) * v for name, v in scaled.items()}, self._intercept


def explainer_for(model: Any) -> Explain:
    """What splits this model's log-odds into feature contributions; it must be one we explain."""
    steps = list(model.steps.values()) if isinstance(model, compose.Pipeline) else []
    if len(steps) == 2 and isinstance(steps[1], linear_model.LogisticRegression):
        first, linear = steps
        if isinstance(first, preprocessing.StandardScaler):
            return LinearExplainer(first, linear.weights, linear.intercept)
        if isinstance(first, compose.FuncTransformer) and isinstance(first.func, Basis | Boosted):
            return first.func.explainer(linear.weights, linear.intercept)
    raise TypeError(
        "the scorer explains three River pipelines: StandardScaler | LogisticRegression "
        "('linear' family), FuncTransformer(Basis) | LogisticRegression ('basis' family) and "
        "FuncTransformer(Boosted) | LogisticRegression ('boosted' family); "
        f"got {type(model).__name__} {model!r:.160}"
    )


def top_reasons(contributions: dict[str, float]) -> tuple[str, ...]:
    """Up to three features with the largest positive contributions, largest first."""
    ranked = sorted(contributions.items(), key=lambda kv: kv[1], reverse=True)
    return tuple(name for name, c in ranked[:MAX_REASONS] if c > 0)


class Scorer:
    """Scores feature dicts with one model version; cheap to call per payment.

    Made once per version (the explainer is built here): do not go on training ``model``
    after handing it to a scorer.
    """

    def __init__(
        self,
        model: Any,
        version: str,
        *,
        review: float,
        decline: float,
        positive_weight: float = 1.0,
        drift_reference: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    ) -> None:
        """``drift_reference``: the training distribution recorded with the version
        (:mod:`model_state.drift`), carried for whoever watches drift."""
        if positive_weight <= 0:
            raise ValueError(f"positive_weight must be > 0; got {positive_weight}")
        self._explain = explainer_for(model)
        self.version = version
        self._review = review
        self._decline = decline
        self._log_weight = math.log(positive_weight)
        self.drift_reference = drift_reference or {}

    def score(self, features: dict[str, float]) -> Score:
        """Probability, decision and reasons of one payment, from one split of the log-odds.

        With ``positive_weight`` 1 the probability equals ``model.predict_proba_one`` (tested).
        """
        return self._score_one(features, explain=True)

    def score_batch(
        self, rows: Sequence[dict[str, float]], *, explain: bool | Sequence[bool] = False
    ) -> list[Score]:
        """Probability and decision of each of ``rows``, at once for the ``boosted`` family; the
        reasons of every row not approved and of every row ``explain`` marks (one flag a row,
        or ``True`` for all), ``None`` for the others. The probability is the same, bit for
        bit, whichever rows are explained."""
        return self.split_batch(rows).scores(explain)

    def split_batch(self, rows: Sequence[dict[str, float]]) -> Split:
        """The batch split once: probabilities and decisions now, the reasons of the rows a
        caller marks once it knows which (:meth:`Split.scores`, ranked from this split: what
        :meth:`score_batch` with the same marks gives). The flow marks the payments a rule
        fired on, which it knows only after deciding the rules with the probabilities."""
        review, decline = self._review, self._decline
        batch = getattr(self._explain, "batch", None)
        if batch is None or not rows:
            splits = [self._log_odds_and_probability(x) for x in rows]
            probabilities = [q for _, _, q in splits]
            decisions = [decide(q, review=review, decline=decline) for q in probabilities]
            return Split(
                probabilities,
                decisions,
                lambda wanted: [top_reasons(splits[i][0]) for i in wanted],
            )
        push, probabilities = self._split_batch(batch, rows)
        names = self._explain.names  # type: ignore[attr-defined]

        def rank(wanted: Sequence[int]) -> list[tuple[str, ...]]:
            # top_reasons for the wanted rows at once (compiled), ties in catalogue order.
            chosen = push if len(wanted) == len(rows) else push[list(wanted)]
            return [
                tuple(names[j] for j in top if j >= 0)
                for top in top_positive(chosen, MAX_REASONS).tolist()
            ]

        decisions = [decide(q, review=review, decline=decline) for q in probabilities]
        return Split(probabilities, decisions, rank)

    def probabilities(self, rows: Sequence[dict[str, float]]) -> list[float]:
        """The probability of each of ``rows``, as :meth:`score_batch` gives it (bit for bit),
        without decisions or reasons (a shadowing challenger's)."""
        batch = getattr(self._explain, "batch", None)
        if batch is None or not rows:
            return [self._log_odds_and_probability(x)[2] for x in rows]
        return self._split_batch(batch, rows)[1]

    def reasons(self, rows: Sequence[dict[str, float]]) -> list[tuple[str, ...]]:
        """The reason codes of each of ``rows``: :meth:`score_batch` with every row explained,
        so exactly what the flow stores for a payment it explains (an approval's on demand)."""
        return [s.reasons or () for s in self.score_batch(rows, explain=True)]

    def _score_one(self, features: dict[str, float], *, explain: bool) -> Score:
        contributions, _, probability = self._log_odds_and_probability(features)
        decision = decide(probability, review=self._review, decline=self._decline)
        explained = explain or decision != "approve"
        return Score(probability, decision, top_reasons(contributions) if explained else None)

    def _log_odds_and_probability(
        self, features: dict[str, float]
    ) -> tuple[dict[str, float], float, float]:
        """One payment's split, its log-odds summed from it, and the probability."""
        contributions, offset = self._explain(features)
        log_odds = sum(contributions.values()) + offset - self._log_weight
        if not math.isfinite(log_odds):
            raise ValueError(
                f"model {self.version} returned log-odds {log_odds} for features {features}"
            )
        return contributions, log_odds, float(sigmoid(log_odds))  # River's, as the model's own

    def _split_batch(
        self,
        batch: Callable[[Sequence[dict[str, float]]], np.ndarray],
        rows: Sequence[dict[str, float]],
    ) -> tuple[np.ndarray, list[float]]:
        """The batch's split (rows, features) and each row's probability summed from it."""
        push = batch(rows)
        log_odds = push.sum(axis=1) + (self._explain.offset - self._log_weight)  # type: ignore[attr-defined]
        bad = np.flatnonzero(~np.isfinite(log_odds))
        if bad.size:
            raise ValueError(
                f"model {self.version} returned log-odds {log_odds[bad[0]]} for features "
                f"{rows[bad[0]]}"
            )
        # River's sigmoid, as in score: 0 below -30, 1 above 30.
        with np.errstate(over="ignore"):
            probabilities = np.where(
                log_odds < -30, 0.0, np.where(log_odds > 30, 1.0, 1.0 / (1.0 + np.exp(-log_odds)))
            )
        return push, probabilities.tolist()


class Split:
    """One batch's split (:meth:`Scorer.split_batch`): each row's probability and the model's
    decision, and its reason codes ranked on request from the same split."""

    __slots__ = ("_rank", "decisions", "probabilities")

    def __init__(
        self,
        probabilities: list[float],
        decisions: list[Decision],
        rank: Callable[[Sequence[int]], list[tuple[str, ...]]],
    ) -> None:
        self.probabilities = probabilities
        self.decisions = decisions
        self._rank = rank

    def scores(self, explain: bool | Sequence[bool] = False) -> list[Score]:
        """Every row's :class:`Score`, with the reasons of every row not approved and of every
        row ``explain`` marks (one flag a row, or ``True`` for all), ranked in one call;
        ``None`` for the others."""
        decisions = self.decisions
        marked = explained_rows(explain, len(decisions))
        wanted = [
            i for i, (d, m) in enumerate(zip(decisions, marked, strict=True)) if m or d != "approve"
        ]
        reasons: list[tuple[str, ...] | None] = [None] * len(decisions)
        if wanted:
            for i, found in zip(wanted, self._rank(wanted), strict=True):
                reasons[i] = found
        return [
            Score(p, d, r) for p, d, r in zip(self.probabilities, decisions, reasons, strict=True)
        ]


def explained_rows(explain: bool | Sequence[bool], n: int) -> Sequence[bool]:
    """``explain`` as one flag per row of a batch of ``n``."""
    if isinstance(explain, bool):
        return [explain] * n
    if len(explain) != n:
        raise ValueError(f"explain: expected one flag for each of the {n} rows, got {len(explain)}")
    return explain


@njit(cache=True, nogil=True)
def top_positive(push: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - compiled
    """Per row of ``push``, the columns of its ``k`` largest positive values, largest first,
    an earlier column first among equals (as :func:`top_reasons`); -1 pads."""
    n, m = push.shape
    out = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        best = np.zeros(k)
        found = 0
        for j in range(m):
            v = push[i, j]
            if not v > 0.0 or (found == k and not v > best[k - 1]):
                continue
            at = min(found, k - 1)
            while at > 0 and v > best[at - 1]:
                best[at] = best[at - 1]
                out[i, at] = out[i, at - 1]
                at -= 1
            best[at] = v
            out[i, at] = j
            found = min(found + 1, k)
    return out
