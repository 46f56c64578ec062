"""The online judge whose evidence outlives a lineage: a sliding window of prequential pairs.

The lineage judge (:mod:`model_state.online_judge`) ranks only labels of payments made since its
lineage started; with a retrain every week and labels 7 (or 30) days after their payment, a
lineage sees almost none before the next retrain empties its evidence
(``benchmarks/judge_window.py``: 0 of 6,711 to 7,524 labels a lineage), and it never adopts a
version. This judge keeps its evidence across lineages:

- **prequential pairs**: every label, when it arrives and **before** it is learned, is scored by
  the learned weights (the candidate) and by the lineage root's weights (the base: the
  pre-trained or the last retrained version, without steps); the pair of log-odds, the label and
  its sampling weight join the evidence. Neither weight has seen the label: each pair is
  out-of-sample for the weights that scored it (progressive validation);
- **a bounded window**: the most recent :data:`WINDOW` pairs, in arrival order, whatever the
  lineage that scored them: a retrain going live no longer empties the evidence, and memory is
  bounded (a pair is five numbers; the 20,000 add about 0.8 MB to the ``boosted`` learner's
  pickled 1.5 MB, the evaluation's ``learner_pickled_bytes``);
- **across lineages, the policy is judged**: a new lineage's judge keeps the previous pairs with
  the scores they were given then (by the previous lineage's candidate and base), and scores the
  new labels with the new lineage's. The pairs are not scored again by the new weights: the
  retrain that made the new base was fitted on those labels, so its scores of them would be
  in-sample. What the window judges is therefore the **policy** "score with the online steps
  on top of the current base" against "score with the base alone" (the weekly retrain alone),
  each as it ran when the label came, which is what scoring chooses between;
- **ranked within a payment day**: the window's pairs are grouped by the UTC day their payment
  was made, and only a day's frauds and legitimate payments are ranked against each other (as
  scoring ranks a day's payments). Labels arrive in another mix than payments happen in (with
  frauds only, the legitimate labels are the implicit negatives of payments 30 days old):
  ranking a recent fraud against an old legitimate payment compares two periods, not the
  weights, and the lineage judge adopted versions that cost up to 0.013 AP that way (README,
  "The online step's versions judged");
- **the evidence**: in every day with both classes, each fraud's precision at its own score
  under the candidate minus under the base (with ties and sampling weights as
  :func:`sklearn.metrics.average_precision_score`); summed over a day, the frauds' number times
  the day's difference in average precision (:func:`fraud_gains`, tested against scikit-learn).
  ``advantage`` is the sum over the window, ``spread`` the sum of squares (its variance if each
  fraud's difference were as likely of either sign); the candidate has **earned** scoring when
  ``advantage > EVIDENCE * sqrt(spread)`` (:func:`earned`);
- scoring switches at most once a day (:func:`model_state.online_judge.settled`), as with the
  lineage judge.

The window lives in the learner, so the learner's recovery snapshot holds it: a learner resumed
from its snapshot and given the same labels in the same order judges exactly as one that never
stopped (tested). A version records the verdict, the sums, the window's size and the root's
weights (:meth:`WindowJudge.state`), which is all a scorer needs
(:func:`model_state.online_judge.scoring_model`); a learner that goes on from a version without a
snapshot starts with that verdict and an empty window. The flow's learner and the evaluation's
hand the window to the next lineage the same way (``OnlineLearner(version, ...,
previous=learner)``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from model_state.online_judge import (
    ADOPTED,
    ADVANTAGE,
    CLOCK,
    GAIN,
    ROOT_INTERCEPT,
    ROOT_PREFIX,
    SPREAD,
    SWITCHED,
    logit,
    recorded_root_weights,
    settled,
)

WINDOW = 20_000
"""Pairs the judge keeps: about 20 days of labels at the drawn streams' scale (500 customers,
every payment labelled)."""
EVIDENCE = 3.0
"""Standard errors by which the candidate must lead the base. Each fraud is a unit here (the
lineage judge's unit is a block of 500 labels), and frauds of one day are not independent: the
bar is higher than the lineage judge's 2."""
DAY = 86_400.0

SIZE = "judge_window"
"""``metadata.learner`` key of a window judge's size: it marks a version judged so."""
PAIRS = "judge_window_pairs"
"""The pairs in the window when the version was published."""


class Pair(NamedTuple):
    """One label as the judge saw it before it was learned."""

    day: int  # the UTC day of its payment (POSIX seconds // 86,400)
    fraud: bool
    candidate: float  # the learned weights' log-odds
    base: float  # the lineage root's log-odds
    weight: float  # its sampling weight


def precisions_at_frauds(frauds: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """For each fraud, the weighted precision among the payments scored at least as high
    (ties count together, as scikit-learn's thresholds do)."""
    order = np.argsort(-scores, kind="stable")
    descending = scores[order]
    hits = np.cumsum((weights * frauds)[order])
    seen = np.cumsum(weights[order])
    # the last position (in descending order) of a score at least as high as each fraud's
    ends = len(scores) - np.searchsorted(descending[::-1], scores[frauds], side="left") - 1
    return hits[ends] / seen[ends]


def fraud_gains(pairs: Iterable[Pair]) -> list[float]:
    """Each fraud's contribution to its payment day's ``frauds * (AP candidate - AP base)``,
    over the days that hold both classes (a day with one class ranks nothing)."""
    days: dict[int, list[Pair]] = {}
    for pair in pairs:
        days.setdefault(pair.day, []).append(pair)
    gains: list[float] = []
    for day in sorted(days):
        group = days[day]
        frauds = np.array([p.fraud for p in group], dtype=bool)
        n_frauds = int(frauds.sum())
        if n_frauds == 0 or n_frauds == len(group):
            continue
        weights = np.array([p.weight for p in group], dtype=float)
        candidate = np.array([p.candidate for p in group], dtype=float)
        base = np.array([p.base for p in group], dtype=float)
        share = n_frauds * weights[frauds] / weights[frauds].sum()
        difference = precisions_at_frauds(frauds, candidate, weights) - precisions_at_frauds(
            frauds, base, weights
        )
        gains.extend((share * difference).tolist())
    return gains


def earned(advantage: float, spread: float) -> bool:
    """The candidate leads the base by :data:`EVIDENCE` standard errors (a spread of 0, e.g.
    gains too small to square, is no evidence)."""
    return spread > 0.0 and advantage > EVIDENCE * math.sqrt(spread)


class WindowJudge:
    """The judgement of the online steps against the base, over the last ``size`` labels of
    whatever lineages scored them."""

    def __init__(
        self,
        root_weights: Mapping[str, float],
        root_intercept: float,
        size: int = WINDOW,
        *,
        pairs: Iterable[Pair] = (),
        is_adopted: bool = False,
        advantage: float = 0.0,
        spread: float = 0.0,
        clock: float | None = None,
        switched_at: float | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a judge's window must hold at least 1 label; got {size}")
        self.root_weights = dict(root_weights)
        self.root_intercept = float(root_intercept)
        self.size = size
        self.pairs: deque[Pair] = deque(pairs, maxlen=size)
        self.adopted = is_adopted
        self.advantage = float(advantage)
        self.spread = float(spread)
        self.gain = 0.0  # the advantage's change at the last version
        self.clock = clock  # the latest report time of a label seen (POSIX seconds)
        self.switched_at = switched_at  # when scoring last switched weights

    @classmethod
    def of_root(cls, step: Any, size: int = WINDOW) -> WindowJudge:
        """A judge with no evidence yet; ``step``: the lineage root's last step."""
        return cls(dict(step._weights), float(step.intercept), size)

    def next_lineage(self, root_weights: Mapping[str, float], root_intercept: float) -> WindowJudge:
        """The judge of the next lineage (its root's last-step weights): the same pairs, as they
        were scored, the same verdict and switch times; new labels are scored by the new base."""
        judge = WindowJudge(
            root_weights,
            root_intercept,
            self.size,
            pairs=self.pairs,
            is_adopted=self.adopted,
            advantage=self.advantage,
            spread=self.spread,
            clock=self.clock,
            switched_at=self.switched_at,
        )
        judge.gain = self.gain
        return judge

    @classmethod
    def from_state(cls, state: Mapping[str, float]) -> WindowJudge | None:
        """The judge a version recorded (:meth:`state`), with an empty window (the pairs are
        in the learner's snapshot, not in the version); None if none recorded."""
        if SIZE not in state or ROOT_INTERCEPT not in state:
            return None
        judge = cls(
            recorded_root_weights(state),
            state[ROOT_INTERCEPT],
            int(state[SIZE]),
            is_adopted=bool(state.get(ADOPTED, 0.0)),
            advantage=state.get(ADVANTAGE, 0.0),
            spread=state.get(SPREAD, 0.0),
            clock=state.get(CLOCK),
            switched_at=state.get(SWITCHED),
        )
        judge.gain = float(state.get(GAIN, 0.0))
        return judge

    def judges(self, payment_time: float, reported_at: float) -> bool:
        """Every label is evidence (ranked within its payment day); it moves the clock."""
        self.clock = float(reported_at) if self.clock is None else max(self.clock, reported_at)
        return True

    def observe(
        self,
        columns: Mapping[str, float],
        learned_logit: float,
        is_fraud: bool,
        weight: float,
        *,
        payment_time: float,
    ) -> None:
        """One label, before it is learned: ``learned_logit`` is the candidate's log-odds of its
        ``columns``; the base's is computed here."""
        self.pairs.append(
            Pair(
                int(payment_time // DAY),
                bool(is_fraud),
                float(learned_logit),
                logit(self.root_weights, self.root_intercept, columns),
                float(weight),
            )
        )

    def judge(self) -> bool:
        """At a published version: the verdict over the window as it is now."""
        gains = fraud_gains(self.pairs)
        advantage = math.fsum(gains)
        self.gain = advantage - self.advantage
        self.advantage = advantage
        self.spread = math.fsum(g * g for g in gains)
        self.adopted, self.switched_at = settled(
            self.adopted, earned(self.advantage, self.spread), self.clock, self.switched_at
        )
        return self.adopted

    def state(self) -> dict[str, float]:
        """What a version records of the judge (the window stays in the learner)."""
        times = {CLOCK: self.clock, SWITCHED: self.switched_at}
        return (
            {
                SIZE: float(self.size),
                PAIRS: float(len(self.pairs)),
                ADVANTAGE: self.advantage,
                SPREAD: self.spread,
                ADOPTED: 1.0 if self.adopted else 0.0,
                GAIN: self.gain,
                ROOT_INTERCEPT: self.root_intercept,
            }
            | {name: float(t) for name, t in times.items() if t is not None}
            | {f"{ROOT_PREFIX}{name}": value for name, value in self.root_weights.items()}
        )
