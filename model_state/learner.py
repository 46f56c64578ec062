"""The online learner: one owner of the model, learning from labelled payments, publishing versions.

It starts from the pre-trained version and learns each labelled payment once, from the features
that payment was scored with. A fraudulent example weighs the pre-trained version's
``positive_weight``, as in pre-training, so the scorer's prior correction stays right. Labels
arrive in another mix than payments happen in (frauds within days, confirmations of legitimate
payments after weeks), so each label's weight is also capped by a
:class:`~model_state.label_balance.LabelBalance` set to the pre-training's fraud share.

A label comes as one of three kinds (:class:`~model_state.label_kinds.LabelKind`): ``explicit``
(a label message), ``implicit`` (a payment nobody reported within the label delay, learned as
legitimate) or ``correction`` (a fraud reported after its payment was learned as an implicit
negative: learned as a fraud, counted apart). ``weight`` is the sampling weight
(:func:`model_state.label_kinds.learn_weight`: ``1 / rate`` for a legitimate label kept by
negative downsampling); the learner counts each kind and keeps the counts in every version.

Every ``publish_every`` labels (or when the flow asks, e.g. on a timer) it publishes a new
version named after its lineage: ``v00001.000001``, ``v00001.000002``, ... ordered as numbers
(:mod:`storage.versions`). A version records the learner's whole state in its metadata (counts,
the label-balance guard, ``labels_learned`` since the lineage's root) and lists the labels it
learned since its parent, so a learner can go on from any published version exactly where the
publishing learner stood (:meth:`OnlineLearner.resume`), and a label that a version learned
is never learned again on top of it (:meth:`OnlineLearner.knows`). Every version carries its
lineage root's ``drift_reference`` unchanged: drift is measured against what the root was trained
on (:mod:`model_state.drift`).

The whole learner pickles to a few kilobytes (``linear`` family), about 50 KB (``basis``: a
frozen 50-tree forest, :mod:`model_state.basis`) or about 1.5 MB (``boosted``: a frozen
500-tree forest as NumPy arrays, :mod:`model_state.boosted`); Bytewax snapshots it only in
epochs where labels arrive. The model learns online with the optimizer its pre-trained
version carries (:func:`model_state.offline.train.pretrain` sets it); with ``hold=True`` (the
evaluation's, not the flow's) the ``boosted`` family's forest weight is held at its lineage
root's value (:data:`HELD_COLUMNS`); with ``residual`` (the evaluation's too) it learns only the
labels of payments the forest alone scores low (:func:`residual_bar`).

Every version is **judged** (:mod:`model_state.online_judge`; families with a frozen expansion):
each label of a payment made since the lineage started learning is ranked by the learned weights
and by the lineage root's before it is learned, and a version whose weights did not rank those
labels better than the root's (or before a week of those payments has matured) records so in its
metadata; the flow and the evaluation then score it with the root's weights
(:func:`model_state.online_judge.scoring_model`), while the learner goes on learning its own.
With ``window`` (the evaluation's ``--judge-window``), the judge's evidence is instead the last
labels of whatever lineage, each scored before it was learned, and a learner going on to a new
lineage hands it on (:mod:`model_state.window_judge`).
"""

from __future__ import annotations

import copy
import hashlib
import math
from datetime import datetime
from typing import Any

from features.catalog import FEATURE_NAMES
from model_state.artifact import (
    ModelArtifact,
    ModelMetadata,
    VersionRecord,
    dumps,
    expansion_of,
    library_versions,
    root_of,
)
from model_state.boosted import Boosted
from model_state.label_balance import LabelBalance
from model_state.label_kinds import LabelKind
from model_state.online_judge import OnlineJudge
from model_state.window_judge import WindowJudge
from storage.labels import LabelledPayment
from storage.versions import version_key

KIND_COUNTS = ("explicit_fraud", "explicit_legit", "implicit", "correction")
"""The learner's counts of labels learned, by kind (explicit ones by class)."""


def _kind_count(kind: LabelKind, is_fraud: bool) -> str:
    if kind is LabelKind.EXPLICIT:
        return "explicit_fraud" if is_fraud else "explicit_legit"
    return kind.value


HELD_COLUMNS = ("forest",)
"""Columns of the ``boosted`` family whose weight a learner made with ``hold=True`` keeps at its
lineage root's value: the forest's log-odds, so that the online step learns only the corrections
on the hats beside it. Learned, the forest's weight takes most of every step (its column is a
log-odds of about -5 on every payment, a hat at most 1) and fell from 1 to about 0.4 within four
weeks of the drift scenario, moving every payment's score alike (issue 22 item 4,
``benchmarks/drift_cause.py``). Measured, not shipped: the flow's learner learns every weight
(README, "Evaluation")."""

RESIDUAL_COLUMN = "forest"
"""The ``boosted`` family's column a learner made with ``residual`` ranks a label by: the
forest's log-odds (the pre-training's weighting of frauds, as the scorer corrects it)."""


def residual_bar(probability: float, positive_weight: float) -> float:
    """The forest's log-odds at which the scorer's probability (its prior correction for
    ``positive_weight``, :class:`model_state.scorer.Scorer`) is ``probability``: a learner made
    with ``residual=probability`` learns a label only below it."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"residual: the forest's probability must be in (0, 1); got {probability}")
    return math.log(probability / (1.0 - probability)) + math.log(positive_weight)


def _judge_for(
    step: Any, state: dict[str, float], window: int | None, previous: OnlineLearner | None
) -> OnlineJudge | WindowJudge:
    """The judge of a learner that starts from a version whose last step is ``step`` and whose
    recorded learner state is ``state`` (empty for a lineage root)."""
    handed = getattr(previous, "judge", None)
    if window is None and isinstance(handed, WindowJudge):
        window = handed.size  # the next lineage is judged as the last one was
    recorded = WindowJudge.from_state(state) if state else None
    if recorded is None:
        lineage = (OnlineJudge.from_state(state) if state else None) or OnlineJudge.of_root(step)
        if window is None:
            return lineage
        # the base: the lineage root's weights (an online version records them)
        recorded = WindowJudge(lineage.root_weights, lineage.root_intercept, window)
    if isinstance(handed, WindowJudge):
        # The pairs as they were scored; new labels scored by this lineage's base.
        return handed.next_lineage(recorded.root_weights, recorded.root_intercept)
    return recorded


class OnlineLearner:
    balanced = True  # a learner pickled before the switch existed had the guard on
    root: tuple[str, str] | None = None  # ... and published whole versions
    judge: OnlineJudge | WindowJudge | None = None  # ... and was not judged
    residual: float | None = None  # ... and learned every label
    skipped = 0

    def __init__(
        self,
        start: ModelArtifact,
        publish_every: int,
        *,
        balanced: bool = True,
        hold: bool = False,
        judged: bool = True,
        window: int | None = None,
        residual: float | None = None,
        previous: OnlineLearner | None = None,
    ) -> None:
        """``balanced=False`` turns the label-balance guard off (the evaluation's ablation);
        ``hold=True`` keeps the forest's weight as ``start`` has it (:data:`HELD_COLUMNS`; the
        evaluation's ``--hold-forest``); ``judged=False`` publishes versions that are scored with
        their own weights whatever they earn (:mod:`model_state.online_judge`; the evaluation's
        ``--no-judge``); ``residual`` (a probability, the ``boosted`` family only) learns only the
        labels of payments the forest alone scores below it, so that the frauds it already ranks
        high do not move the hats (:func:`residual_bar`; the evaluation's ``--residual``). A
        label not learned is still counted, recorded in the version and judged: it is known, as
        a learned one is, and never learned again.

        ``window`` judges with the last ``window`` labels of whatever lineage
        (:mod:`model_state.window_judge`) instead of the labels of the lineage's own payments
        (:mod:`model_state.online_judge`, the default); ``previous``: the learner this one
        replaces (a retrain gone live, a rollback): a window judge hands its pairs on to this
        one, and this one judges with a window of the same size (the flow's learner and the
        evaluation's go on to a new lineage so)."""
        if publish_every < 1:
            raise ValueError(f"publish_every must be >= 1 label; got {publish_every}")
        # The frozen expansion (a forest) is shared, not copied: nothing learns it.
        expansion = expansion_of(start.model)
        memo = {id(expansion): expansion} if expansion is not None else {}
        self.model: Any = copy.deepcopy(start.model, memo)
        # Versions refer to the root's expansion instead of holding it (model_state.artifact).
        self.root = root_of(start) if expansion is not None else None
        # With hold, the boosted family's forest weight stays as its version has it.
        self.held: dict[str, float] = {}
        if hold and isinstance(expansion, Boosted):
            weights = self._last_step._weights
            self.held = {name: weights[name] for name in HELD_COLUMNS if name in weights}
        self.residual = None
        if residual is not None:
            if not isinstance(expansion, Boosted):
                raise ValueError(
                    f"residual: only the boosted family has the forest's column to rank labels "
                    f"by; version {start.version} expands with {type(expansion).__name__}"
                )
            self.residual = residual_bar(residual, start.metadata.positive_weight)
        self.lineage = start.version.partition(".")[0]
        self.version = start.version
        self.sequence = version_key(start.version)[1]
        self.publish_every = publish_every
        self.positive_weight = start.metadata.positive_weight
        # Drift is measured against the training of the lineage's root: every version carries it.
        self.drift_reference = start.metadata.drift_reference
        state = start.metadata.learner
        if state:  # an online version: go on from the learner that published it
            self.frauds = int(state["frauds"])
            self.legit = int(state["legit"])
            share = state["expected_fraud_share"]
            self.learned_total = start.metadata.labels_learned
        else:  # a lineage's root: its training counts
            self.frauds = max(start.metadata.frauds, 0)
            self.legit = max(start.metadata.rows - start.metadata.frauds, 0)
            share = (self.frauds + 1.0) / (self.frauds + self.legit + 2.0)
            self.learned_total = 0
        # Labels arrive in another mix than payments happen in (see model_state.label_balance).
        self.balance = LabelBalance(share)
        self.balanced = balanced
        if state:
            self.balance.frauds = state["balance_frauds"]
            self.balance.legit = state["balance_legit"]
            self.balance.clock = state.get("balance_clock")
        self.unpublished: list[tuple[int, int]] = []  # labels learned since the last version
        self.implicit_unpublished: list[str] = []  # implicit negatives since then (their ids)
        # Labels learned by kind since the lineage's root (explicit ones split by class).
        self.kinds: dict[str, int] = {name: int(state.get(name, 0)) for name in KIND_COUNTS}
        self.skipped = int(state.get("residual_skipped", 0)) if state else 0
        # The judgement of the learned weights against the lineage root's (a family with a
        # frozen expansion only): recorded in every version, so going on from one judges alike.
        self.judge = None
        if judged and expansion is not None:
            self.judge = _judge_for(self._last_step, state, window, previous)

    @property
    def _last_step(self) -> Any:
        return next(reversed(self.model.steps.values()))

    @property
    def _implicit_unpublished(self) -> list[str]:
        """Implicit negatives learned since the last published version (a learner pickled
        before they existed has none)."""
        if "implicit_unpublished" not in self.__dict__:
            self.implicit_unpublished = []
        return self.implicit_unpublished

    @property
    def pending(self) -> int:
        """Labels learned since the last published version (implicit negatives included)."""
        return len(self.unpublished) + len(self._implicit_unpublished)

    def knows(self, example: LabelledPayment) -> bool:
        """True if the model already holds ``example``: a version at or before this learner's
        learned it (the label is replayed after a crash)."""
        return example.learned_version is not None and version_key(
            example.learned_version
        ) <= version_key(self.version)

    def prepare(self, examples: list[LabelledPayment]) -> list[dict[str, float]] | None:
        """What the model's last step learns from, for each of ``examples`` at once, or None
        when the model has no batch expansion. The ``boosted`` forest is frozen, so its columns do
        not depend on what is learned in between: walking a batch of labels at once gives each
        label the same columns as walking it alone (tested), at a fraction of the cost."""
        expand = getattr(expansion_of(self.model), "expand_many", None)
        if expand is None or not examples:
            return None
        return expand([example.features for example in examples])

    def learn(
        self,
        example: LabelledPayment,
        prepared: dict[str, float] | None = None,
        *,
        kind: LabelKind = LabelKind.EXPLICIT,
        weight: float = 1.0,
    ) -> None:
        """Learn one labelled payment; ``prepared``: its columns from :meth:`prepare`.

        ``kind``: an ``implicit`` label must be legitimate, a ``correction`` a fraud. ``weight``:
        the sampling weight (``1 / rate`` for a legitimate label kept by negative downsampling);
        the label counts as that many in the label-balance guard.
        """
        if kind is LabelKind.IMPLICIT and example.is_fraud:
            raise ValueError(
                f"label of transaction {example.transaction_id}: an implicit label is a "
                "legitimate payment nobody reported; got is_fraud=True"
            )
        if kind is LabelKind.CORRECTION and not example.is_fraud:
            raise ValueError(
                f"label of transaction {example.transaction_id}: a correction is a fraud "
                "reported after its payment was learned as legitimate; got is_fraud=False"
            )
        if not (weight > 0 and weight < float("inf")):
            raise ValueError(
                f"label of transaction {example.transaction_id}: weight must be a finite number "
                f"> 0; got {weight}"
            )
        if example.is_fraud:
            self.frauds += 1
        else:
            self.legit += 1
        counts = getattr(self, "kinds", None)  # a learner pickled before kinds were counted
        if counts is None:
            counts = self.kinds = dict.fromkeys(KIND_COUNTS, 0)
        counts[_kind_count(kind, example.is_fraud)] += 1
        sample = weight
        judge = self.judge  # None: not judged, or a learner pickled before judging (the class says)
        judged = judge is not None and judge.judges(example.payment_time, example.reported_at)
        bar = getattr(self, "residual", None)  # a learner pickled before: learns every label
        if prepared is None and (judged or bar is not None):
            prepared = example.features  # the columns the last step learns from (the expansion's)
            for step in list(self.model.steps.values())[:-1]:
                prepared = step.transform_one(prepared)
        if judge is not None and judged:
            assert prepared is not None
            # Both weights rank the label before it is learned: neither has seen it.
            judge.observe(
                prepared,
                self._last_step._raw_dot_one(prepared),
                example.is_fraud,
                sample,
                payment_time=example.payment_time,
            )
        if bar is not None and prepared is not None and prepared[RESIDUAL_COLUMN] >= bar:
            self.skipped += 1  # the forest ranks it high already: not learned, but known
        else:
            self._step(example, prepared, sample)
        self.learned_total += 1
        if kind is LabelKind.IMPLICIT:  # no label message: its ledger row is its transaction's
            self._implicit_unpublished.append(example.transaction_id)
        else:
            self.unpublished.append((example.label_partition, example.label_offset))

    def _step(
        self, example: LabelledPayment, prepared: dict[str, float] | None, sample: float
    ) -> None:
        """The online step on one label (``sample``: its sampling weight)."""
        weight = sample * (self.positive_weight if example.is_fraud else 1.0)
        if self.balanced:
            weight *= self.balance.weight(
                is_fraud=example.is_fraud, reported_at=example.reported_at, count=sample
            )
        if prepared is None:
            self.model.learn_one(example.features, example.is_fraud, w=weight)
        else:  # the pipeline's learn_one, with its (stateless) expansion done already
            self._last_step.learn_one(prepared, example.is_fraud, w=weight)
        held = getattr(self, "held", None)  # a learner pickled before: learns every weight
        if held:
            weights = self._last_step._weights
            for name, value in held.items():
                weights[name] = value

    def recorded_as(self, version: str) -> None:
        """This learner's last published version was recorded under the name ``version`` (the
        next free one of its lineage, :mod:`model_state.checkpoints`): its next versions are
        named after it, and a label learned by it is one this learner knows."""
        lineage, sequence = version_key(version)
        if lineage != version_key(self.version)[0] or sequence <= self.sequence:
            raise ValueError(
                f"version {version} is no later name of this learner's lineage; it is at "
                f"{self.version}"
            )
        self.version, self.sequence = version, sequence

    @property
    def due(self) -> bool:
        return self.pending >= self.publish_every

    def publish(self, now: datetime) -> VersionRecord:
        """A new version with everything learned so far; call only when ``pending > 0``."""
        if self.pending == 0:
            raise ValueError(f"nothing learned since {self.version}; no new version to publish")
        self.sequence += 1
        parent, self.version = self.version, f"{self.lineage}.{self.sequence:06d}"
        payload = dumps(self.model, self.root)
        state = {
            "frauds": float(self.frauds),
            "legit": float(self.legit),
            "expected_fraud_share": self.balance.expected_fraud_share,
            "balance_frauds": self.balance.frauds,
            "balance_legit": self.balance.legit,
        }
        if self.balance.clock is not None:
            state["balance_clock"] = self.balance.clock
        state |= {name: float(n) for name, n in getattr(self, "kinds", {}).items()}
        if getattr(self, "residual", None) is not None:
            state["residual_skipped"] = float(self.skipped)
        judge = self.judge
        if judge is not None:
            judge.judge()
            state |= judge.state()
        metadata = ModelMetadata(
            version=self.version,
            parent_version=parent,
            origin="online",
            created_at=now,
            feature_names=FEATURE_NAMES,
            model_description=repr(self.model),
            rows=self.legit + self.frauds,
            frauds=self.frauds,
            labels_learned=self.learned_total,
            positive_weight=self.positive_weight,
            library_versions=library_versions(),
            content_hash=hashlib.sha256(payload).hexdigest(),
            learner=state,
            base_version=self.root[0] if self.root else "",
            base_hash=self.root[1] if self.root else "",
            # A learner pickled before drift was recorded has none.
            drift_reference=getattr(self, "drift_reference", {}),
        )
        learned, self.unpublished = tuple(self.unpublished), []
        implicit, self.implicit_unpublished = tuple(self._implicit_unpublished), []
        return VersionRecord(metadata, payload, learned, implicit)
