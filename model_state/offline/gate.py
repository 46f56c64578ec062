"""The retrain's gate: a challenger replaces the champion only if it ranks the most recent mature
labels better than the flow did, by more than the comparison's noise.

:func:`judge` compares, on the hold-out of :func:`model_state.offline.retrain.validate` (the
payments of the last ``--validation-days`` whose labels are final):

- the **challenger**, fitted on the payments before the hold-out, and
- the **champion** as the flow actually ranked those payments: the probability stored when each
  was scored (``live``), i.e. the versions of those days, which had not learned their labels.
  A payment scored before the flow went live is scored by the champion as it is.

Its average precision (AP) on the hold-out must beat the champion's by at least ``min_gain``
**standard errors of the difference** (:func:`ap_difference_se`: a paired bootstrap over the
hold-out, frauds and legitimate payments resampled apart), less ``tolerance`` (an operator's
allowance, 0 by default). The same hold-out ranked by two forests fitted a week apart differs by
0.02 or more in AP for reasons no later week shares (issue 22, README "Evaluation"); a challenger
that is better by less than the noise is as likely to be worse next week.

>>> truth = np.array([True, False, False, True, False, False] * 50)
>>> good, coin = truth + 0.1 * np.arange(300) % 1, np.arange(300) % 7 / 7
>>> 0.0 < ap_difference_se(truth, good, coin) < 0.2
True
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np
from sklearn.metrics import average_precision_score

from model_state import artifact
from model_state.scorer import Scorer

DEFAULT_TOLERANCE = 0.0
"""A challenger may rank this much below the champion (AP) and still replace it: 0."""
DEFAULT_MIN_GAIN = 1.0
"""... and must rank above it by this many standard errors of the difference."""
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 20_220_522


class NotEnoughLabelsError(ValueError):
    """Too few labelled frauds stored to fit a model worth scoring with, or to compare two."""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """Challenger against champion on the most recent mature labels."""

    champion: str | None
    challenger_ap: float
    champion_ap: float
    tolerance: float
    rows: int
    frauds: int
    standard_error: float = 0.0  # of the AP difference (paired bootstrap)
    min_gain: float = 0.0  # in standard errors

    @property
    def accepted(self) -> bool:
        need = self.champion_ap + self.min_gain * self.standard_error
        return self.challenger_ap + self.tolerance >= need

    def __str__(self) -> str:
        if self.rows == 0:
            return "not compared with the champion (forced)"
        return (
            f"average precision on the last {self.rows} mature labelled payments "
            f"({self.frauds} frauds): challenger {self.challenger_ap:.4f}, champion "
            f"{self.champion or '-'} {self.champion_ap:.4f} as the flow ranked them; the "
            f"challenger must gain {self.min_gain:g} standard errors "
            f"({self.min_gain * self.standard_error:.4f}) less the tolerance {self.tolerance:g}"
        )


def _ranking(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The payments by score, highest first, and where each run of equal scores ends."""
    order = np.argsort(-score, kind="mergesort")
    ranked = score[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    return order, ends


def weighted_average_precision(
    truth: np.ndarray, ranking: tuple[np.ndarray, np.ndarray], weight: np.ndarray
) -> float:
    """scikit-learn's average precision with sample weights (ties at one threshold), for a
    ranking made once by :func:`_ranking`: sum over thresholds of the recall gained times the
    precision there."""
    order, ends = ranking
    w = weight[order]
    hits = np.cumsum(w * truth[order])[ends]
    seen = np.cumsum(w)[ends]
    if hits[-1] <= 0:
        return float("nan")
    precision = np.divide(hits, seen, out=np.zeros(len(seen)), where=seen > 0)
    recall = hits / hits[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ap_difference_se(
    truth: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> float:
    """The standard error of ``AP(challenger) - AP(champion)`` on the same payments: a paired
    bootstrap (each resample draws the frauds and the legitimate payments apart, with
    replacement, and scores both models on it). Deterministic for ``seed``."""
    truth = np.asarray(truth, dtype=bool)
    frauds, legit = np.flatnonzero(truth), np.flatnonzero(~truth)
    if not len(frauds) or not len(legit):
        return 0.0
    rng = np.random.default_rng(seed)
    mine = _ranking(np.asarray(challenger, dtype=np.float64))
    theirs = _ranking(np.asarray(champion, dtype=np.float64))
    y = truth.astype(np.float64)
    differences = []
    for _ in range(resamples):
        counts = np.bincount(rng.choice(frauds, len(frauds)), minlength=len(truth))
        counts += np.bincount(rng.choice(legit, len(legit)), minlength=len(truth))
        weight = counts.astype(np.float64)
        differences.append(
            weighted_average_precision(y, mine, weight)
            - weighted_average_precision(y, theirs, weight)
        )
    return float(np.std(differences, ddof=1))


def judge(
    validation: object,
    champion: artifact.ModelArtifact | None,
    tolerance: float = DEFAULT_TOLERANCE,
    live: Sequence[float | None] | None = None,
    *,
    min_gain: float = DEFAULT_MIN_GAIN,
    unscored: artifact.ModelArtifact | None = None,
) -> Verdict:
    """The verdict on a :class:`model_state.offline.retrain.Validation` (see the module
    docstring). ``live``: the stored probability of each row validated, None where there is
    none. (Scoring every row with today's champion instead would judge it on labels it has
    learned online since, and the previous refit, fitted on the very rows the challenger is
    fitted on, would meet its own twin: the gate could not refuse.)

    A row with no stored probability (a payment made before the flow went live) is scored by
    ``unscored`` when given: the champion's lineage root (its forest and regression before any
    online step; fitted on payments before the hold-out, as each hold-out starts where the
    previous retrain's training set ended). Otherwise by the champion as it is, which may have
    learned those very labels online since go-live (the first retrain after go-live: its
    hold-out is the last mature week before go-live, whose labels the learner learned in the
    week after), and so beats its own twin by what it learned there (issue 22, README
    "Evaluation"). Rows the flow scored keep their stored probability."""
    hold_out = validation.hold_out  # type: ignore[attr-defined]
    truth = np.array([r[2] for r in hold_out], dtype=bool)
    frauds = int(truth.sum())
    challenger_ap = validation.average_precision  # type: ignore[attr-defined]
    if challenger_ap is None or not 0 < frauds < len(truth):
        raise NotEnoughLabelsError(
            f"retrain: the mature hold-out holds {len(truth)} labelled payments, {frauds} of "
            "them frauds: nothing to compare challenger and champion on"
        )
    index = validation.hold_out_index  # type: ignore[attr-defined]
    scores: list[float | None] = (
        [live[i] for i in index] if live is not None else [None] * len(truth)
    )
    missing = [k for k, p in enumerate(scores) if p is None]
    if missing and champion is None:  # nothing to compare with: the first version
        return Verdict(
            champion=None, challenger_ap=challenger_ap, champion_ap=float("-inf"),
            tolerance=tolerance, rows=len(truth), frauds=frauds,
        )  # fmt: skip
    if missing:
        assert champion is not None
        by = unscored or champion
        scorer = Scorer(
            by.model,
            by.version,
            review=1.0,
            decline=1.0,
            positive_weight=by.metadata.positive_weight,
        )
        batch = scorer.score_batch([hold_out[k][1] for k in missing])
        for k, s in zip(missing, batch, strict=True):
            scores[k] = s.probability
    ranked = np.array(scores, dtype=np.float64)
    mine = np.asarray(validation.scores, dtype=np.float64)  # type: ignore[attr-defined]
    return Verdict(
        champion=champion.version if champion else None,
        challenger_ap=challenger_ap,
        champion_ap=float(average_precision_score(truth, ranked)),
        tolerance=tolerance,
        rows=len(truth),
        frauds=frauds,
        standard_error=ap_difference_se(truth, mine, ranked) if min_gain else 0.0,
        min_gain=min_gain,
    )
