"""The online step's versions, judged: scoring uses the learned weights only while they earn it.

The weekly retrain goes live only through the champion/challenger gate
(:mod:`model_state.offline.gate`); the online SGD steps publish a version every few hundred
labels with no such judgement, and at the drawn handbook streams' scale they cost up to 0.007 AP
in a test week (README, "Issue 22's targets"). The judge compares, on every label the learner
learns, the learned weights with the weights of the lineage's root (the version the steps started
from: the pre-trained or the last retrained forest, whose steps are all frozen but the last), both
**before** the label is learned (prequential: neither has seen it), and at each published version:

- ``gain`` of the labels since the last version: their number of frauds times the difference in
  average precision (learned minus root) over those labels, each label at its sampling weight;
  0 when the block holds no fraud or no legitimate label (nothing to rank);
- ``advantage = DECAY * advantage + gain``: recent blocks count most (half-life about 6.6
  versions, three to four days of labels at the drawn streams' scale), and beside it its
  ``spread = DECAY**2 * spread + gain**2``, the advantage's variance if each block's gain were
  as likely of either sign (no difference between the two weights);
- only labels of **recent payments** count: a payment made at or after the lineage's first
  label (``since``, its first label's report time: when the lineage started learning, i.e. went
  live). A label of an older payment is learned but not judged. With frauds-only labels, the
  labels a lineage learns first are the implicit negatives of payments 30 days old and the frauds
  reported lately: ranking one against the other compared two periods, not the weights, and the
  judge adopted versions that then cost up to 0.013 AP in the week scored (README, "The online
  step's versions judged");
- the version is **adopted** for scoring when ``advantage > EVIDENCE * sqrt(spread)``: the
  learned weights ranked the recent labels better than the root's by :data:`EVIDENCE` standard
  errors, and a week of recent payments has **matured**: a legitimate label has come for a
  payment made :data:`MATURE_AFTER` after ``since`` (the legitimate labels of a day's payments
  come last: 7 days after them with every payment labelled, 30 with frauds only, as implicit
  negatives). Before, a block holds the frauds of the recent payments only, or their first
  days' legitimate ones. Otherwise the version is scored with the root's weights
  (:func:`scoring_model`), and the learner goes on learning its own: a later version is adopted
  as soon as its weights earn it;
- scoring **switches** between the learned and the root's weights at most once a day
  (:data:`SWITCH_GAP`, on the clock of the labels' report times): a verdict that differs from
  the one scoring goes by waits until the last switch is a day old (:func:`settled`). Every
  switch changes the scale of the scores within the day's ranking; before this, the judge
  switched 5 or 6 times over the four test weeks of two drawn streams (frauds only).

With the bar at 0 (the advantage's sign alone), the verdict followed the noise of blocks of 500
labels, and scoring switching between the two weights cost more than either
(``evaluations/judge-sign-frauds-size500-drawn-5.txt``: week 2 -0.025 against the frozen model,
-0.007 with the versions not judged).

Everything the judge keeps is in each published version's ``metadata.learner``
(:meth:`OnlineJudge.state`: the advantage, the verdict, its times and the root's weights,
which a delta version does not otherwise hold), and the block it is collecting is empty at every
version, so a learner that goes on from a version judges exactly as the one that published it
(tested), and the learner's recovery snapshot pickles the judge with the rest. A scorer needs
only the version itself (:func:`scoring_model`). Judged only for families with a frozen
expansion (``boosted``, ``basis``): their root differs from a version in the last step's weights
alone.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sklearn.metrics import average_precision_score

from model_state.artifact import ModelArtifact, expansion_of

DECAY = 0.9
"""How much of the advantage a block of labels carries over to the next version."""
EVIDENCE = 2.0
"""Standard errors by which the learned weights must lead the root's to be scored with."""
SWITCH_GAP = 86_400.0
"""Seconds (of the labels' report times) scoring keeps its weights, learned or root's, after a
switch."""
MATURE_AFTER = 7 * 86_400.0
"""Seconds after the lineage's first label whose payments must have a legitimate label (a week
of recent payments matured) before the learned weights may score."""

ROOT_PREFIX = "judge_root:"
"""``metadata.learner`` key prefix of the root's weight of each column."""
ROOT_INTERCEPT = "judge_root_intercept"
ADVANTAGE = "judge_advantage"
ADOPTED = "judge_adopted"
SPREAD = "judge_spread"
GAIN = "judge_gain"
SINCE = "judge_since"
MATURED = "judge_matured"
CLOCK = "judge_clock"
SWITCHED = "judge_switched_at"


def logit(weights: Mapping[str, float], intercept: float, columns: Mapping[str, float]) -> float:
    """The logistic regression's log-odds of ``columns`` under ``weights`` (a missing weight
    is 0, as in River)."""
    return intercept + math.fsum(weights.get(name, 0.0) * value for name, value in columns.items())


def block_gain(
    frauds: Sequence[bool],
    learned: Sequence[float],
    root: Sequence[float],
    weights: Sequence[float],
) -> float:
    """The number of frauds times (AP of ``learned`` - AP of ``root``) over one block of labels
    (each at its sampling weight); 0 without both classes."""
    if not (len(frauds) == len(learned) == len(root) == len(weights)):
        raise ValueError(
            "a judged block needs one score each for the learned and the root weights and one "
            f"weight per label; got {len(frauds)} labels, {len(learned)} learned scores, "
            f"{len(root)} root scores, {len(weights)} weights"
        )
    n_frauds = sum(1 for fraud in frauds if fraud)
    if n_frauds == 0 or n_frauds == len(frauds):
        return 0.0
    y = [bool(f) for f in frauds]
    ap_learned = average_precision_score(y, list(learned), sample_weight=list(weights))
    ap_root = average_precision_score(y, list(root), sample_weight=list(weights))
    return n_frauds * float(ap_learned - ap_root)


def next_advantage(advantage: float, gain: float) -> float:
    return DECAY * advantage + gain


def next_spread(spread: float, gain: float) -> float:
    return DECAY * DECAY * spread + gain * gain


def settled(
    current: bool, earned: bool, now: float | None, switched_at: float | None
) -> tuple[bool, float | None]:
    """The verdict scoring goes by, and when it last switched: ``earned`` (the judgement of the
    labels so far) once the last switch is :data:`SWITCH_GAP` behind ``now``, ``current``
    before (``now``: the latest report time seen; None, or no switch yet: no wait)."""
    if earned == current:
        return current, switched_at
    if now is not None and switched_at is not None and now - switched_at < SWITCH_GAP:
        return current, switched_at
    return earned, now


def adopted(advantage: float, spread: float) -> bool:
    """The learned weights score only once they have earned it: an advantage above 0 by
    :data:`EVIDENCE` standard errors."""
    return advantage > 0.0 and advantage > EVIDENCE * math.sqrt(spread)


def recorded_root_weights(state: Mapping[str, float]) -> dict[str, float]:
    """The lineage root's weights a version's judge state records (``ROOT_PREFIX`` names)."""
    return {
        name[len(ROOT_PREFIX) :]: value
        for name, value in state.items()
        if name.startswith(ROOT_PREFIX)
    }


class OnlineJudge:
    """The judgement of one learner's lineage: the root's weights, the advantage so far and the
    block of labels since the last version."""

    since: float | None = None  # a judge pickled before these were kept has none
    matured: float | None = None
    clock: float | None = None
    switched_at: float | None = None

    def __init__(
        self,
        root_weights: Mapping[str, float],
        root_intercept: float,
        advantage: float = 0.0,
        spread: float = 0.0,
        is_adopted: bool = False,
        since: float | None = None,
        matured: float | None = None,
        clock: float | None = None,
        switched_at: float | None = None,
    ) -> None:
        self.root_weights = dict(root_weights)
        self.root_intercept = float(root_intercept)
        self.advantage = float(advantage)
        self.spread = float(spread)
        self.adopted = is_adopted
        # The first label's report time (POSIX seconds): labels of older payments are not
        # judged. ``matured``: the latest payment time of a judged legitimate label.
        self.since = since
        self.matured = matured
        # The latest report time of a label seen, and when scoring last switched weights.
        self.clock = clock
        self.switched_at = switched_at
        self.gain = 0.0
        self._frauds: list[bool] = []
        self._learned: list[float] = []
        self._root: list[float] = []
        self._weights: list[float] = []

    @classmethod
    def of_root(cls, step: Any) -> OnlineJudge:
        """A new lineage's judge: ``step`` is its root's last step (a River logistic regression)."""
        return cls(dict(step._weights), float(step.intercept))

    @classmethod
    def from_state(cls, state: Mapping[str, float]) -> OnlineJudge | None:
        """The judge a version recorded (:meth:`state`), or None if it recorded none."""
        if ROOT_INTERCEPT not in state:
            return None
        judge = cls(
            recorded_root_weights(state),
            state[ROOT_INTERCEPT],
            advantage=state.get(ADVANTAGE, 0.0),
            spread=state.get(SPREAD, 0.0),
            is_adopted=bool(state.get(ADOPTED, 0.0)),
            since=state.get(SINCE),
            matured=state.get(MATURED),
            clock=state.get(CLOCK),
            switched_at=state.get(SWITCHED),
        )
        judge.gain = float(state.get(GAIN, 0.0))
        return judge

    @property
    def pending(self) -> int:
        return len(self._frauds)

    @property
    def mature(self) -> bool:
        """A week of recent payments has a legitimate label: the judge may adopt."""
        return (
            self.since is not None
            and self.matured is not None
            and self.matured >= self.since + MATURE_AFTER
        )

    def judges(self, payment_time: float, reported_at: float) -> bool:
        """Whether a label (its payment's and its report's time, POSIX seconds) is judged: its
        payment was made at or after the lineage's first label. The first label sets that time;
        every label moves the judge's clock (:func:`settled`) to its report time."""
        if self.since is None:
            self.since = float(reported_at)
        self.clock = float(reported_at) if self.clock is None else max(self.clock, reported_at)
        return payment_time >= self.since

    def observe(
        self,
        columns: Mapping[str, float],
        learned_logit: float,
        is_fraud: bool,
        weight: float,
        *,
        payment_time: float,
    ) -> None:
        """One judged label (:meth:`judges`), before it is learned: ``learned_logit`` is the
        learned weights' log-odds of its ``columns``."""
        if not is_fraud:
            self.matured = payment_time if self.matured is None else max(self.matured, payment_time)
        self._frauds.append(bool(is_fraud))
        self._learned.append(float(learned_logit))
        self._root.append(logit(self.root_weights, self.root_intercept, columns))
        self._weights.append(float(weight))

    def judge(self) -> bool:
        """Close the block (at a published version): update the advantage, return the verdict."""
        self.gain = block_gain(self._frauds, self._learned, self._root, self._weights)
        self.advantage = next_advantage(self.advantage, self.gain)
        self.spread = next_spread(self.spread, self.gain)
        earned = self.mature and adopted(self.advantage, self.spread)
        self.adopted, self.switched_at = settled(self.adopted, earned, self.clock, self.switched_at)
        self._frauds, self._learned, self._root, self._weights = [], [], [], []
        return self.adopted

    def state(self) -> dict[str, float]:
        """What a version records of the judge (the block is empty at a version)."""
        times = {
            SINCE: self.since,
            MATURED: self.matured,
            CLOCK: self.clock,
            SWITCHED: self.switched_at,
        }
        return (
            {
                ADVANTAGE: self.advantage,
                SPREAD: self.spread,
                ADOPTED: 1.0 if self.adopted else 0.0,
                GAIN: self.gain,
                ROOT_INTERCEPT: self.root_intercept,
            }
            | {name: float(t) for name, t in times.items() if t is not None}
            | {f"{ROOT_PREFIX}{name}": value for name, value in self.root_weights.items()}
        )


def scoring_model(version: ModelArtifact) -> Any:
    """The model the flow scores with for ``version``: its own, or, for an online version its
    judge did not adopt, the same pipeline with the lineage root's last-step weights."""
    judge = OnlineJudge.from_state(version.metadata.learner)
    if judge is None or judge.adopted:
        return version.model
    model = version.model
    expansion = expansion_of(model)
    memo = {id(expansion): expansion} if expansion is not None else {}
    clone = copy.deepcopy(model, memo)
    step = next(reversed(clone.steps.values()))
    weights = step._weights
    for name in list(weights.keys()):
        weights[name] = judge.root_weights.get(name, 0.0)
    for name, value in judge.root_weights.items():
        weights[name] = value
    step.intercept = judge.root_intercept
    return clone
