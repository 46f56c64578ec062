"""Prequential evaluation on one stream: pre-train on its first weeks, then score and learn.

    python -m model_state.evaluate --stream handbook [--seeds 1 2 3] [--days 70]
        [--go-live-day 42] [--size 5000] [--labels every|frauds|own]
        [--label-delay-days 7] [--implicit-days 30] [--drift [DAY]]
        [--online | --no-online] [--retrain | --no-retrain] [--balance | --no-balance]
        [--judge | --no-judge] [--judge-window N] [--rollback [--rollback-hold] | --shadow-first]
        [--ablation]
        [--legit-sample-rate 1]
        [--publish-every 500] [--online-optimizer SPEC] [--hold-forest] [--residual P]
        [--previous-step] [--retrain-days 7] [--top-k 100] [--out reports/evaluation]
        [--cache reports/cache | --no-cache]
    python -m model_state.evaluate --streams evaluations/handbook-streams.json [--only NAME ...]
    python -m model_state.evaluate --stream generator ...
    python -m model_state.evaluate --history PATH [PATH ...] [--go-live-day 42] ...

The protocol, the same for every stream:

1. **The stream** (:mod:`model_state.offline.eval_streams`). ``handbook``: the Fraud Detection
   Handbook's simulator (:mod:`test_data.handbook`; ``--size`` customers, twice as many
   terminals; ``--streams FILE`` runs each stream of a file of drawn parameters,
   :mod:`test_data.handbook_draws`); ``generator``: this project's own
   (:mod:`test_data.generator`; ``--size`` cards). ``--labels every`` (default) labels every
   payment ``--label-delay-days`` after it (the handbook's protocol: 7); ``--labels frauds``
   as banks do, only frauds, each reported 1 to 60 days after; ``--labels own`` keeps the
   generator's own delays. ``--drift [DAY]`` adds the drift scenario, a new attack pattern from
   day ``DAY`` (default: go-live + 4) that the pre-trained model never saw
   (:mod:`test_data.drift`). ``--history``: a bank's own payments and labels
   (:mod:`model_state.offline.history`), labels as they were reported.
2. **Replay** payments and labels in arrival order through the live feature code
   (:mod:`model_state.offline.eval_stream`): every payment's features as the flow would have
   scored it. Kept in ``--cache`` (the same arrays, read back).
3. **Labels become learnable** when reported; and a payment with no label by
   ``--implicit-days`` (the label delay, ``PAYSCORE_LABEL_DELAY_DAYS``; in ``every`` mode the
   ``--label-delay-days``) after it is learned as legitimate, an **implicit negative**
   (:func:`~model_state.offline.eval_stream.learning_schedule`); a fraud reported after its
   payment was learned so is a **correction** (:mod:`model_state.label_kinds`). With
   ``--legit-sample-rate`` below 1, legitimate labels are learned as a weighted sample.
4. **Go live** on day ``--go-live-day``. A model trained at time ``T`` may learn a payment made
   before ``T`` whose label was reported by ``T``, or, with no label by then, a payment older
   than the label delay (taken as legitimate, as a bank takes a payment nobody disputed); which
   of them it learns is the training's own rule (:func:`model_state.offline.train.training_set`).
   The pre-trained version is fitted that way at go-live
   (:func:`model_state.offline.train.train_rows`: validation on its last 7 days first, then
   every usable day).
5. **Score, then learn**, from go-live on, with:
   - ``online``: the live learner (:class:`~model_state.learner.OnlineLearner`, a version every
     ``--publish-every`` labels, scoring with the newest), retrained every ``--retrain-days``
     behind the champion/challenger gate of ``python -m model_state.retrain``, by its own
     functions (:mod:`model_state.offline.retrain`: the training set, the mature hold-out, the
     gate); each online version is scored with its own weights only while they rank the recent
     labels better than its lineage root's (:mod:`model_state.online_judge`, as the flow);
     ``--no-online``, ``--no-retrain``, ``--no-balance`` and ``--no-judge`` switch its online
     SGD steps ("weekly retrain only"), its retraining ("SGD only"), its label-balance guard
     and the online judge off (``--judge-window N``: judged instead on the last ``N`` labels of
     any lineage, :mod:`model_state.window_judge`); ``--online-optimizer`` (e.g.
     ``adagrad:0.05``, or ``adagrad:0.05:ramp=3000`` for a rate grown over the first labels),
     ``--hold-forest`` and ``--residual P`` (learn only the labels of payments the forest alone
     scores below ``P``) change its online step, as measured for issue 22 item 4; the report
     gives the days on which each run's judge first found a lineage's learned weights ahead of
     its root's and on which scoring took them; ``--rollback`` judges each accepted retrain
     again once live, beside the champion it replaced, on the payments it scored, and rolls it
     back if it ranked them worse (:mod:`model_state.offline.rollback`), and with
     ``--rollback-hold`` a retrain due before that verdict waits for it
     (:mod:`model_state.offline.retrain_hold`);
   - ``frozen``: the pre-trained version, never updated;
   - ``RF (handbook features)`` and ``LR (handbook features)``: the handbook's own baselines on
     its own 15 published features (:mod:`model_state.offline.handbook_reference`), fitted at
     go-live and retrained on the same schedule on the same training set; their terminal risk
     counts a fraud only once it was reported (with every payment labelled 7 days after, that
     is the handbook's own definition).
   ``--ablation`` adds the online model with each of its four moving parts switched off.
6. **Report** over the payments from go-live on (:mod:`model_state.offline.eval_report`): ROC
   AUC, average precision, card precision@k per day, Brier score and expected calibration error,
   per seed and their mean; average precision per test week; labels learned by kind, and how
   many came after the last payment was scored (they could change no score); with the drift
   scenario, recall and AP on the new pattern per day since it started and the days until half
   of its payments are in the daily top ``--top-k`` cards; plots.

Retrained forests are fitted once per seed and retrain time and shared by every variant that
retrains (a challenger depends on the labels, not on the champion; only the gate does); with
``--cache`` the pre-trained model, the challengers and the references' scores are kept too, so
that a second run (another variant, another report) fits nothing again. A cached run prints the
same figures as a fresh one (``tests/test_evaluate.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import pickle
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from tqdm import tqdm

from features.bounded import bounded
from features.catalog import DAY
from model_state import artifact, signing, window_judge
from model_state.artifact import ModelArtifact
from model_state.boosted import FOREST
from model_state.label_kinds import LabelKind, learn_weight
from model_state.learner import OnlineLearner
from model_state.offline import retrain, retrain_hold, rollback, train
from model_state.offline.eval_metrics import (
    calibration_metrics,
    card_precision_at_k,
    drift_metrics,
    format_table,
    handbook_card_precision_at_k,
    mean_table,
    ranking_metrics,
    test_weeks,
)
from model_state.offline.eval_references import LOGISTIC, RANDOM_FOREST, reference_scores
from model_state.offline.eval_results import Evaluation, OnlineRun
from model_state.offline.eval_stream import (
    Replayed,
    learning_schedule,
    replay_stream,
    training_rows,
    usable,
    with_label_delay,
)
from model_state.offline.eval_streams import (
    DRIFT_CARDS_PER_DAY,
    LABEL_MODES,
    STREAMS,
    StreamSpec,
    code_digest,
    replayed,
    verdicts,
)
from model_state.offline.online_optimizer import (
    BOOSTED_ONLINE,
    with_online_optimizer,
)
from model_state.offline.online_optimizer import (
    online_optimizer as optimizer_of,
)
from model_state.online_judge import ADOPTED, ADVANTAGE, SPREAD, adopted, scoring_model
from model_state.scorer import Scorer
from settings.arguments import Parser, within
from settings.config import Config
from storage.labels import LabelledPayment
from test_data.drift import NEW_PATTERN
from test_data.generator import SimulationSpec

__all__ = [
    "FROZEN",
    "LOGISTIC",
    "ONLINE",
    "RANDOM_FOREST",
    "STREAMS",
    "Variant",
    "cards_spec",
    "evaluate",
    "main",
    "metrics_table",
    "run_online",
    "score_frozen",
    "usable",
    "verdicts",
    "with_label_delay",
]

ONLINE = "online"
FROZEN = "frozen"
VALIDATION_DAYS = 7  # the pre-training's held-out last days, as `python -m model_state.train`
DEFAULT_IMPLICIT_DAYS = Config().label_delay_days
_FIT_CODE = (
    "model_state/boosted.py",
    "model_state/basis.py",
    "model_state/forest_walk.py",
    "model_state/scorer.py",
    "model_state/offline/train.py",
    "model_state/offline/forests.py",
    "model_state/offline/handbook_reference.py",
    "model_state/offline/eval_references.py",
)
"""The code a fit or a reference's scores depend on (with the functions of :func:`_fit_code`):
a change to any of it fits again."""


def _fit_code() -> str:
    """:data:`_FIT_CODE` and the sources of the functions of other modules a fit runs: the
    retrain's fitting (not its gate, nor its command), the usable rows."""
    own = "".join(
        inspect.getsource(f)
        for f in (
            retrain.Validation, retrain.mature_split, retrain.validate, retrain.fit_final,
            usable, training_rows, training_index,
        )
    )  # fmt: skip
    return code_digest(_FIT_CODE) + hashlib.sha256(own.encode()).hexdigest()


@dataclass(frozen=True)
class Variant:
    """How the online model runs: its online SGD steps, its retraining, its balance guard."""

    online: bool = True
    retrain: bool = True
    balance: bool = True
    optimizer: str | None = None  # None: the run's (``--online-optimizer``, else as trained)
    hold: bool = False  # the forest's weight held (model_state.learner.HELD_COLUMNS)
    judge: bool = True  # versions judged against their root (model_state.online_judge)
    window: int | None = None  # ... on the last labels of any lineage (model_state.window_judge)
    residual: float | None = None  # labels learned only below the forest's probability
    rollback: bool = False  # a live retrain rolled back if it ranks its payments worse
    shadow_first: bool = False  # ... or shadowing first, promoted unless it ranks them worse
    rollback_hold: bool = False  # with rollback: the next retrain waits for the verdict

    def name(self, shipped: Variant) -> str:
        if self == shipped:
            return ONLINE
        if self == previous_step(shipped):
            return PREVIOUS
        if (self.optimizer, self.hold) != (shipped.optimizer, shipped.hold):
            plain = dataclasses.replace(self, optimizer=shipped.optimizer, hold=shipped.hold)
            steps = f"steps {self.optimizer or 'as trained'}"
            return f"{plain.name(shipped)}, {steps}{'' if self.hold else ', forest weight learned'}"
        off = [n for n in PARTS if not getattr(self, n)]
        words = {
            "online": "no SGD",
            "retrain": "no retrain",
            "balance": "no balance guard",
            "judge": "versions not judged",
        }
        return "online, " + ", ".join(words[n] for n in off) if off else ONLINE


PREVIOUS = "online, previous step"
PREVIOUS_STEP = "sgd:0.0003"
"""The online step before issue 22 item 4 (and the flow's still): SGD 0.0003 a label on every
weight, the forest's too. ``--previous-step`` compares a run with another step against it."""


def previous_step(shipped: Variant) -> Variant:
    """``shipped`` with the online step it had before issue 22 item 4."""
    return dataclasses.replace(shipped, optimizer=PREVIOUS_STEP, hold=False, residual=None)


PARTS = ("online", "retrain", "balance", "judge")


def ablations(shipped: Variant, parts: tuple[str, ...] = PARTS) -> list[Variant]:
    """``shipped``, then every variant with one of its ``parts`` switched off."""
    out = [shipped]
    for part in parts:
        if getattr(shipped, part):
            out.append(dataclasses.replace(shipped, **{part: False}))
    return out


def cards_spec(seed: int, days: int, cards: int) -> SimulationSpec:
    """A generator spec with its default shape: one merchant for every five cards."""
    return SimulationSpec(seed=seed, days=days, cards=cards, merchants=max(cards // 5, 2))


# ---------------------------------------------------------------------------------- caching


class FitCache:
    """Fitted models and reference scores of one stream, on disk: keyed by the stream, what was
    fitted (its settings and time) and a digest of the code that fits. ``folder`` None keeps
    nothing."""

    def __init__(self, folder: Path | None, stream_key: str) -> None:
        self._folder = folder
        self._stream = stream_key
        self._code = _fit_code() + json.dumps(FOREST, sort_keys=True)

    def get(self, what: dict[str, Any], make: Callable[[], Any]) -> Any:
        if self._folder is None:
            return make()
        text = json.dumps({"stream": self._stream, "code": self._code, **what}, sort_keys=True)
        path = self._folder / f"fit-{hashlib.sha256(text.encode()).hexdigest()[:24]}.pickle"
        if path.exists():
            return pickle.loads(path.read_bytes())
        value = make()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        partial.replace(path)
        return value


# --------------------------------------------------------------------------------- online


def online_as(model: Any, family: train.Family, spec: str | None) -> Any:
    """``model`` learning online with ``spec``, or with what its family's training gives it
    today (a cached fit may have been pickled with another)."""
    if spec is None and family != "boosted":
        return model
    return with_online_optimizer(model, spec or BOOSTED_ONLINE)


def scorer_for(version: ModelArtifact) -> Scorer:
    """The scorer the flow would use for ``version`` (with its root's weights if the online
    judge did not adopt it, :func:`~model_state.online_judge.scoring_model`); thresholds do not
    matter here."""
    return Scorer(
        scoring_model(version),
        version.version,
        review=0.5,
        decline=0.9,
        positive_weight=version.metadata.positive_weight,
    )


Retrain = Callable[[datetime, ModelArtifact, np.ndarray, np.ndarray], ModelArtifact | None]
"""Given the time, the champion, every payment's score so far and which payments were scored:
a new version to go on from, or None (refused)."""


@dataclass(frozen=True)
class RollbackRule:
    """When a live retrain is judged again beside the champion it replaced
    (:mod:`model_state.offline.rollback`): ``maturity`` seconds after a payment its label is
    final (the label delay, as the gate's hold-out), checked every ``check_every`` seconds of
    event time. With ``shadow_first`` the accepted retrain does not go live at once: it scores
    in the shadow beside the champion and goes live only if the same verdict does not find it
    worse (the alternative the rollback was measured against). With ``hold`` a retrain due while
    the live one's watch has no verdict waits for it (:mod:`model_state.offline.retrain_hold`)."""

    maturity: float
    min_frauds: int = rollback.DEFAULT_MIN_FRAUDS
    min_loss: float = rollback.DEFAULT_MIN_LOSS
    check_every: float = 3600.0
    shadow_first: bool = False  # the retrain shadows until judged, then goes live (or not)
    hold: bool = False  # the next retrain held while the live one awaits its verdict


@dataclass
class _Watched:
    """A retrain watched (:class:`~model_state.offline.rollback.Watch`): the model scoring the
    same payments in the shadow (the champion it replaced; with ``shadow_first`` the retrain
    itself, not live yet), and which payments those are."""

    watch: rollback.Watch
    other: ModelArtifact
    shadow: _Scoring
    rows: list[int]
    shadow_first: bool = False


class _Scoring:
    """Payments waiting to be scored by the current version, scored in batches as in the flow."""

    def __init__(self, replayed: Replayed, scores: np.ndarray, scorer: Scorer) -> None:
        self._replayed = replayed
        self._scores = scores
        self.scorer = scorer
        self._waiting: list[int] = []

    def add(self, row: int) -> None:
        self._waiting.append(row)
        if len(self._waiting) >= 1000:
            self.flush()

    def flush(self) -> None:
        if self._waiting:
            rows = [self._replayed.feature_dict(i) for i in self._waiting]
            probabilities = [s.probability for s in self.scorer.score_batch(rows)]
            self._scores[self._waiting] = probabilities
            self._waiting.clear()

    def scores_of(self, rows: np.ndarray) -> np.ndarray:
        """The scores of ``rows`` (scored already: :meth:`flush` first)."""
        return self._scores[rows]

    def switch(self, scorer: Scorer) -> None:
        """Score what waits with the old version; what comes next with ``scorer``."""
        self.flush()
        self.scorer = scorer


def run_online(
    replayed: Replayed,
    start: ModelArtifact,
    publish_every: int,
    *,
    schedule: np.ndarray | None = None,
    implicit_after: float | None = None,
    learner: OnlineLearner | None = None,
    learn: bool = True,
    balanced: bool = True,
    hold: bool = False,
    judged: bool = True,
    window: int | None = None,
    residual: float | None = None,
    sample_rate: float = 1.0,
    retrain: Retrain | None = None,
    retrain_every: timedelta = timedelta(days=7),
    rollback_rule: RollbackRule | None = None,
    progress: bool = False,
) -> OnlineRun:
    """Score every payment of ``schedule`` (default: the whole stream's) with the newest
    published version; learn each label when it becomes learnable.

    As in the flow (:mod:`dataflows.learning`), one :class:`OnlineLearner` learns each label
    from the features its payment was scored with and publishes a version every
    ``publish_every`` labels; scoring picks a version up as soon as it is published. A schedule
    of :func:`~model_state.offline.eval_stream.learning_schedule` also holds implicit negatives
    (``implicit_after`` seconds after their payment): each is learned as legitimate, once; a
    fraud reported later is learned as a correction, a legitimate label reported later is a
    duplicate (not learned again). With ``sample_rate`` below 1 a legitimate label is learned
    only when :func:`~model_state.label_kinds.learn_weight` keeps it, at weight ``1 / rate``.
    With ``retrain``, every ``retrain_every`` of event time from the first payment scored, a
    challenger is fitted (as ``python -m model_state.retrain`` on a schedule); if accepted,
    scoring and the learner go on from it. ``learn=False`` scores without online steps;
    ``learner`` replaces the first learner (tests). With ``rollback_rule``, each retrain that goes
    live is watched beside the champion it replaced and rolled back to it if it ranks the payments
    it scored worse (:mod:`model_state.offline.rollback`); scoring and the learner then go on from
    that champion as it was when replaced.
    """
    events = (replayed.schedule if schedule is None else schedule).tolist()
    n = len(replayed)
    settings: dict[str, Any] = {
        "balanced": balanced,
        "hold": hold,
        "judged": judged,
        "window": window,
        "residual": residual,
    }
    learner = learner or OnlineLearner(start, publish_every, **settings)
    scores = np.zeros(n)
    learned_before = np.zeros(n, dtype=np.int64)
    run = OnlineRun(scores, learned_before, versions=[start.version])
    scoring = _Scoring(replayed, scores, scorer_for(start))
    current = start
    roots = {start.version: start}  # lineage roots the learner's versions refer to
    learned = 0
    implicit_learned = np.zeros(n, dtype=bool)
    scored = np.zeros(n, dtype=bool)
    last_payment = max((k for k, e in enumerate(events) if e >= 0), default=-1)
    first = next((float(replayed.event_time[e]) for e in events if e >= 0), 0.0)
    next_retrain = first + retrain_every.total_seconds()
    scoring_own = 0.0  # the root scores until a version is adopted (1.0)
    evidence = False  # the lineage's learned weights led its root's by EVIDENCE standard errors
    watched: _Watched | None = None  # the last retrain accepted, until its verdict
    shadow_scores = np.zeros(n)
    next_check = first
    hold = retrain_hold.Hold() if rollback_rule is not None and rollback_rule.hold else None

    def live_from(model: ModelArtifact) -> OnlineLearner:
        """Score with ``model`` from now on, and learn on from it."""
        scoring.switch(scorer_for(model))
        run.versions.append(model.version)
        # previous: a window judge's evidence goes on (as in the flow)
        return OnlineLearner(model, publish_every, **settings, previous=learner)

    for position, entry in enumerate(
        tqdm(events, desc="online", unit=" events", disable=not progress)
    ):
        if entry >= 0:
            now = float(replayed.event_time[entry])
            fit_held = False  # a retrain held for the verdict just given is fitted now
            if watched is not None and rollback_rule is not None and now >= next_check:
                next_check = now + rollback_rule.check_every
                scoring.flush()
                watched = _judge_retrain(replayed, watched, scores, now, rollback_rule)
                verdict = watched.watch.verdict
                if verdict is not None:
                    run.rollbacks.append(
                        {"at": now, "shadow_first": rollback_rule.shadow_first}
                        | msgspec.to_builtins(verdict)
                    )
                    run.rolled_back += verdict.roll_back
                    # Live: rolled back to the champion it replaced. Shadow first: promoted
                    # unless it ranked worse.
                    if verdict.roll_back != rollback_rule.shadow_first:
                        current = watched.other
                        learner = live_from(current)
                        run.retrained += rollback_rule.shadow_first
                        scoring_own = float(current.metadata.learner.get(ADOPTED, 0.0))
                        evidence = False
                    if hold is not None:
                        hold, fit_held = hold.decided(watched.watch.retrained)
                    watched = None
            due = retrain is not None and now >= next_retrain
            if due:
                while next_retrain <= now:
                    next_retrain += retrain_every.total_seconds()
            fit = fit_held or due
            if due and not fit_held and hold is not None:
                hold, fit = hold.due(now)
                run.retrains_held += not fit
            if retrain is not None and fit:
                run.held_retrains_fitted += fit_held
                scoring.flush()
                fitted = retrain(datetime.fromtimestamp(now, UTC), current, scores, scored)
                if fitted is not None:
                    roots[fitted.version] = fitted
                    shadow_first = rollback_rule is not None and rollback_rule.shadow_first
                    if rollback_rule is not None:
                        run.rollbacks_superseded += watched is not None
                        watch = rollback.Watch(
                            retrained=fitted.version, previous=current.version, since=now
                        )
                        other = fitted if shadow_first else current
                        shadow = _Scoring(replayed, shadow_scores, scorer_for(other))
                        watched = _Watched(watch, other, shadow, [], shadow_first)
                        next_check = now
                        if hold is not None:
                            hold = hold.went_live(fitted.version)
                    if not shadow_first:
                        learner = live_from(fitted)
                        run.retrained += 1
                        current = fitted
                        scoring_own = 0.0
                        evidence = False
                else:
                    run.refused += 1
            scoring.add(entry)
            if watched is not None:
                watched.shadow.add(entry)
                watched.rows.append(entry)
            scored[entry] = True
            learned_before[entry] = learned
            continue
        implicit = entry < -n
        row = -1 - n - entry if implicit else -1 - entry
        if implicit:
            kind, fraud = LabelKind.IMPLICIT, False
            reported = float(replayed.event_time[row]) + (implicit_after or 0.0)
            implicit_learned[row] = True
        else:
            fraud = bool(replayed.verdict[row])
            reported = float(replayed.reported_at[row])
            kind = LabelKind.EXPLICIT
            if implicit_learned[row]:
                if not fraud:
                    run.duplicates += 1  # learned as legitimate already
                    continue
                kind = LabelKind.CORRECTION
        if not learn:
            continue
        weight = learn_weight(
            is_fraud=fraud, transaction_id=replayed.transaction_ids[row], rate=sample_rate
        )
        if weight is None:
            run.sampled_out += 1
            continue
        started = time.perf_counter()
        learner.learn(
            LabelledPayment(
                transaction_id=replayed.transaction_ids[row],
                card_id=replayed.card_ids[replayed.card[row]],
                merchant_id="",
                terminal_id="",
                payment_time=float(replayed.event_time[row]),
                reported_at=reported,
                is_fraud=fraud,
                features=replayed.feature_dict(row),
                scored_by=run.versions[-1],
            ),
            kind=kind,
            weight=weight,
        )
        learned += 1
        run.kinds[kind.value] = run.kinds.get(kind.value, 0) + 1
        if position > last_payment:
            run.learned_after_last_payment += 1
        if learner.due:
            record = learner.publish(datetime.fromtimestamp(reported, UTC))
            verdict = record.metadata.learner.get(ADOPTED)
            if verdict is not None:
                run.versions_adopted += verdict == 1.0
                run.judge_switches += verdict != scoring_own
                if verdict == 1.0 and scoring_own != 1.0:
                    run.adopted_at.append(reported)
                state = record.metadata.learner
                ahead = window_judge.earned if window_judge.SIZE in state else adopted
                if not evidence and ahead(state[ADVANTAGE], state[SPREAD]):
                    evidence = True  # whether or not a week of the lineage's labels matured
                    run.evidence_at.append(reported)
                scoring_own = verdict
            model = artifact.loads(
                record.payload, record.metadata, roots.__getitem__, where="learner"
            )
            current = ModelArtifact(model, record.metadata, record.payload)
        run.learn_seconds += time.perf_counter() - started
        if current.version != run.versions[-1]:  # published: score with it from now on
            scoring.switch(scorer_for(current))
            run.versions.append(current.version)
    scoring.flush()
    run.held_at_end = hold is not None and hold.held_since is not None
    run.labels_learned = learned
    reinstated = run.rolled_back if rollback_rule and not rollback_rule.shadow_first else 0
    run.versions_published = len(run.versions) - 1 - run.retrained - reinstated
    run.learner_bytes = len(pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL))
    return run


def _judge_retrain(
    replayed: Replayed, watched: _Watched, scores: np.ndarray, now: float, rule: RollbackRule
) -> _Watched:
    """``watched`` with its verdict once the payments it watched whose labels are final by
    ``now`` hold enough frauds (:func:`model_state.offline.rollback.decide`): a payment's label
    is final ``rule.maturity`` after it, a fraud if reported by ``now``, legitimate otherwise
    (an implicit negative; the gate's mature hold-out counts the same way). ``scores``: the
    live ones."""
    rows, truth = rollback.final_labels(
        replayed.event_time, replayed.reported_at, replayed.verdict, watched.rows, now,
        rule.maturity,
    )  # fmt: skip
    if int(truth.sum()) < rule.min_frauds:
        return watched  # not enough evidence yet: nothing to score again
    watched.shadow.flush()
    live, shadow = scores[rows], watched.shadow.scores_of(rows)
    mine, theirs = (shadow, live) if watched.shadow_first else (live, shadow)
    watch = rollback.decide(
        watched.watch, truth, mine, theirs, min_frauds=rule.min_frauds, min_loss=rule.min_loss
    )
    return dataclasses.replace(watched, watch=watch)


def score_frozen(
    replayed: Replayed, start: ModelArtifact, rows: np.ndarray, *, progress: bool = False
) -> np.ndarray:
    """``rows`` scored by the pre-trained version, which never learns."""
    scores = np.zeros(len(replayed))
    scoring = _Scoring(replayed, scores, scorer_for(start))
    for i in tqdm(rows.tolist(), desc="frozen", unit=" payments", disable=not progress):
        scoring.add(i)
    scoring.flush()
    return scores


def training_index(replayed: Replayed, at: float, delay: float) -> tuple[np.ndarray, np.ndarray]:
    """The payments (rows) a model trained at ``at`` learns, and their class: the usable ones
    (:func:`~model_state.offline.eval_stream.usable`) as the training's own rule selects them
    (:func:`model_state.offline.train.training_mask`; the history begins with the stream)."""
    rows, y = usable(replayed, at, delay)
    first = float(replayed.event_time.min()) if len(replayed) else 0.0
    keep = train.training_mask(replayed.event_time[rows], y, first=first, now=at, maturity=delay)
    return rows[keep], y[keep]


def training_set(replayed: Replayed, at: float, delay: float) -> train.Rows:
    """:func:`training_index` as training rows."""
    return training_rows(replayed, *training_index(replayed, at, delay))


class Retrainer:
    """What ``python -m model_state.retrain`` does at a time, by its own functions: the training
    set, a challenger validated on the most recent mature labels
    (:func:`model_state.offline.retrain.validate`), the gate against the champion
    (:func:`~model_state.offline.retrain.judge`), and the version fitted on every row
    (:func:`~model_state.offline.retrain.fit_final`). Challengers are fitted once per time
    and shared by every run that retrains; the gate is judged per champion."""

    def __init__(
        self,
        replayed: Replayed,
        delay: float,
        model_dir: Path,
        key: bytes,
        family: train.Family,
        seed: int,
        cache: FitCache,
        tolerance: float = retrain.DEFAULT_TOLERANCE,
        online_optimizer: str | None = None,
        min_gain: float = retrain.DEFAULT_MIN_GAIN,
        went_live: ModelArtifact | None = None,
    ) -> None:
        self._replayed, self._delay = replayed, delay
        # Lineage roots by version (the version that went live, then every retrained one): a
        # champion's root scores the hold-out's payments made before go-live (no stored score).
        self._roots = {went_live.version: went_live} if went_live is not None else {}
        self._model_dir, self._key = model_dir, key
        self._family, self._seed = family, seed
        self._cache = cache
        self._tolerance = tolerance
        self.online_optimizer = online_optimizer  # what retrained versions learn with
        self._min_gain = min_gain
        self._validations: dict[float, retrain.Validation] = {}
        self._fitted: dict[float, tuple[Any, artifact.ModelMetadata]] = {}
        self.verdicts: list[retrain.Verdict] = []

    def _rows(self, at: float) -> train.Rows:
        return training_set(self._replayed, at, self._delay)

    def _index(self, at: float) -> np.ndarray:
        return training_index(self._replayed, at, self._delay)[0]

    def validation(self, at: float) -> retrain.Validation:
        if at not in self._validations:
            what = {"fit": "validation", "at": at, "delay": self._delay,
                    "family": self._family, "seed": self._seed}  # fmt: skip
            self._validations[at] = self._cache.get(
                what,
                lambda: retrain.validate(
                    self._rows(at),
                    self._model_dir,
                    now=datetime.fromtimestamp(at, UTC),
                    maturity=timedelta(seconds=self._delay),
                    validation_days=VALIDATION_DAYS,
                    family=self._family,
                    seed=self._seed,
                ),
            )
        return self._validations[at]

    def fitted(self, at: float, parent: str, metrics: dict[str, float]) -> ModelArtifact:
        """The version fitted on every row at ``at`` (fitted once), recorded as a new version
        after ``parent``."""
        if at not in self._fitted:
            what = {"fit": "retrained", "at": at, "delay": self._delay,
                    "family": self._family, "seed": self._seed}  # fmt: skip
            self._fitted[at] = self._cache.get(
                what,
                lambda: retrain.fit_final(
                    self._rows(at),
                    self._model_dir,
                    version="-",
                    parent_version=None,
                    metrics={},
                    family=self._family,
                    seed=self._seed,
                ),
            )
        model, metadata = self._fitted[at]
        model = online_as(model, self._family, self.online_optimizer)
        metadata = msgspec.structs.replace(
            metadata,
            version=artifact.next_version(self._model_dir),
            parent_version=parent,
            metrics=metrics,
        )
        saved = artifact.save(model, metadata, self._model_dir, key=self._key)
        self._roots[saved.version] = saved
        return saved

    def went_live(self, version: ModelArtifact) -> None:
        """``version`` is a lineage root too (a run that went live with other online steps)."""
        self._roots[version.version] = version

    def root_of(self, champion: ModelArtifact) -> ModelArtifact | None:
        """``champion``'s lineage root: its forest and regression before any online step."""
        return self._roots.get(artifact.root_of(champion)[0])

    def __call__(
        self, now: datetime, champion: ModelArtifact, scores: np.ndarray, scored: np.ndarray
    ) -> ModelArtifact | None:
        at = now.timestamp()
        validation = self.validation(at)
        index = self._index(at)
        live = np.where(scored[index], scores[index], np.nan).tolist()
        live = [None if p != p else p for p in live]  # NaN: not scored live
        try:
            verdict = retrain.judge(
                validation, champion, self._tolerance, live, min_gain=self._min_gain,
                unscored=self.root_of(champion),
            )  # fmt: skip
        except retrain.NotEnoughLabelsError:
            return None
        self.verdicts.append(verdict)
        if not verdict.accepted:
            return None
        return self.fitted(at, champion.version, validation.metrics)


# -------------------------------------------------------------------------------- metrics


def metrics_table(
    replayed: Replayed, scores: dict[str, np.ndarray], rows: np.ndarray, *, k: int
) -> dict[str, dict[str, float]]:
    """Per model, over ``rows``: ROC AUC, AP, mean card precision@k per day, Brier score and
    expected calibration error. ``ceiling`` is card precision@k of a perfect ranking."""
    day = replayed.day[rows]
    truth = replayed.is_fraud[rows]
    card = replayed.card[rows]
    table: dict[str, dict[str, float]] = {}
    for name, score in {**scores, "ceiling": replayed.is_fraud.astype(np.float64)}.items():
        s = score[rows]
        row: dict[str, float] = {}
        if name != "ceiling":
            row |= ranking_metrics(truth, s)
            row |= calibration_metrics(truth, s)
        cp = card_precision_at_k(day, card, s, truth, k)
        row[f"card_precision_at_{k}"] = float(cp.mean()) if len(cp) else float("nan")
        cp = handbook_card_precision_at_k(day, card, s, truth, k)
        row[f"handbook_card_precision_at_{k}"] = float(cp.mean()) if len(cp) else float("nan")
        table[name] = row
    return table


# ----------------------------------------------------------------------------- evaluation


def live_schedule(
    replayed: Replayed, go_live: float, delay: float, *, implicit: bool
) -> np.ndarray:
    """The schedule from go-live on: every payment made from ``go_live`` scored, every label
    (and, with ``implicit``, every implicit negative ``delay`` seconds after its payment)
    learnable after ``go_live`` learned."""
    schedule = learning_schedule(replayed, delay if implicit else None)
    n = len(replayed)
    label_row = np.where(schedule < -n, -1 - n - schedule, -1 - schedule)
    safe = np.clip(label_row, 0, max(n - 1, 0))
    learnable_at = np.where(
        schedule < -n, replayed.event_time[safe] + delay, replayed.reported_at[safe]
    )
    keep = np.where(
        schedule >= 0,
        replayed.event_time[np.maximum(schedule, 0)] >= go_live,
        learnable_at > go_live,
    )
    return schedule[keep]


def pretrained(
    replayed: Replayed,
    go_live: float,
    delay: float,
    *,
    family: train.Family,
    seed: int,
    fits: FitCache,
    model_dir: Path,
    key: bytes,
    online_optimizer: str | None = None,
) -> ModelArtifact:
    """The version that goes live: fitted on the training set at ``go_live`` (once, kept in
    ``fits``), learning online with ``online_optimizer``, saved under ``model_dir``."""

    def fit() -> tuple[Any, artifact.ModelMetadata]:
        rows = training_set(replayed, go_live, delay)
        fitted = train.train_rows(
            rows, model_dir, key=key, seed=seed, validation_days=VALIDATION_DAYS, family=family
        )
        return fitted.model, fitted.metadata

    what = {"fit": "pretrained", "at": go_live, "delay": delay, "family": family, "seed": seed}
    model, metadata = fits.get(what, fit)
    model = online_as(model, family, online_optimizer)
    metadata = msgspec.structs.replace(metadata, version=artifact.next_version(model_dir))
    return artifact.save(model, metadata, model_dir, key=key)


def evaluate(
    stream: Replayed,
    description: str,
    *,
    seed: int,
    go_live_day: int,
    label_delay: timedelta = timedelta(days=7),
    implicit: bool = False,
    variants: list[Variant] | None = None,
    shipped: Variant = Variant(),
    family: train.Family = train.DEFAULT_FAMILY,
    publish_every: int = 500,
    retrain_every: timedelta | None = timedelta(days=7),
    sample_rate: float = 1.0,
    k: int = 100,
    references: bool = True,
    drift_start: float | None = None,
    online_optimizer: str | None = None,
    min_gain: float = retrain.DEFAULT_MIN_GAIN,
    cache: Path | None = None,
    stream_key: str = "",
    progress: bool = False,
) -> Evaluation:
    """Steps 3 to 6 of the module docstring on one replayed stream.

    ``label_delay``: a payment with no label this long after it is legitimate for training,
    and (with ``implicit``) learned online as an implicit negative. ``drift_start``: when the
    drift scenario's new pattern starts (POSIX seconds), to measure how fast each model catches
    it. ``cache`` with ``stream_key`` (the stream's :meth:`StreamSpec.key`) keeps the fits.
    """
    replayed = stream
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = seconds.get(name, 0.0) + now - clock
        clock = now

    if not len(replayed):
        raise ValueError(f"evaluate: the stream {description} has no payments")
    delay = label_delay.total_seconds()
    go_live = (np.floor(replayed.event_time.min() / DAY) + go_live_day) * DAY
    test = np.flatnonzero(replayed.event_time >= go_live)
    if not len(test):
        raise ValueError(
            f"evaluate: no payment on or after go-live day {go_live_day} in {description}; "
            "give a smaller --go-live-day or a longer stream"
        )
    schedule = live_schedule(replayed, go_live, delay, implicit=implicit)
    fits = FitCache(cache, stream_key) if stream_key else FitCache(None, "")
    scores: dict[str, np.ndarray] = {}
    runs: dict[str, OnlineRun] = {}
    gates: dict[str, list[retrain.Verdict]] = {}
    with tempfile.TemporaryDirectory(prefix="payscore-eval-") as folder:
        model_dir = Path(folder)
        key = secrets.token_bytes(signing.KEY_BYTES)  # versions live and die in this folder
        start = pretrained(
            replayed, go_live, delay, family=family, seed=seed, fits=fits, model_dir=model_dir,
            key=key, online_optimizer=online_optimizer,
        )  # fmt: skip
        lap("pre-training")
        retrainer = Retrainer(
            replayed, delay, model_dir, key, family, seed, fits,
            online_optimizer=online_optimizer, min_gain=min_gain, went_live=start,
        )  # fmt: skip
        for variant in variants or [shipped]:
            name = variant.name(shipped)
            retrainer.verdicts = []
            steps = variant.optimizer or online_optimizer
            retrainer.online_optimizer = steps
            first = start
            if steps != online_optimizer:  # the same fit, learning online with other steps
                first = pretrained(
                    replayed, go_live, delay, family=family, seed=seed, fits=fits,
                    model_dir=model_dir, key=key, online_optimizer=steps,
                )  # fmt: skip
                retrainer.went_live(first)
            run = run_online(
                replayed,
                first,
                publish_every,
                schedule=schedule,
                implicit_after=delay,
                learn=variant.online,
                balanced=variant.balance,
                hold=variant.hold,
                judged=variant.judge,
                window=variant.window,
                residual=variant.residual,
                sample_rate=sample_rate,
                retrain=retrainer if variant.retrain and retrain_every else None,
                retrain_every=retrain_every or timedelta(days=7),
                rollback_rule=RollbackRule(
                    maturity=delay, shadow_first=variant.shadow_first, hold=variant.rollback_hold
                )
                if variant.rollback or variant.shadow_first
                else None,
                progress=progress,
            )
            scores[name], runs[name] = run.scores, run
            gates[name] = list(retrainer.verdicts)
            lap(name)
    scores[FROZEN] = score_frozen(replayed, start, test, progress=progress)
    lap(FROZEN)
    if references:
        every = retrain_every.total_seconds() if retrain_every else None
        what = {"fit": "references", "go_live": go_live, "delay": delay, "every": every,
                "seed": seed, "test": len(test)}  # fmt: skip
        scores |= fits.get(
            what, lambda: reference_scores(replayed, test, go_live, delay, every, seed)
        )
        lap("references")
    settings = {
        "stream": description,
        "seed": seed,
        "go_live": datetime.fromtimestamp(go_live, UTC).isoformat(),
        "go_live_day": go_live_day,
        "label_delay_days": delay / DAY,
        "implicit_negatives": implicit,
        "legit_sample_rate": sample_rate,
        "online_optimizer": online_optimizer or "as trained",
        "online_model": dataclasses.asdict(shipped),  # its step: held forest, residual, judge
        "gate_min_gain": min_gain,
        "retrain_judged_again": {
            v.name(shipped): (
                "shadow first"
                if v.shadow_first
                else "live, next retrain held for the verdict"
                if v.rollback_hold
                else "live"
            )
            if v.rollback or v.shadow_first
            else "no"
            for v in variants or [shipped]
        },
        "family": family,
        "publish_every": publish_every,
        "retrain": "never"
        if retrain_every is None
        else f"every {retrain_every.total_seconds() / DAY:g} days of event time",
        "k": k,
        "start_version_metrics": start.metadata.metrics,
        "start_rows": start.metadata.rows,
    }
    table = metrics_table(replayed, scores, test, k=k)
    day_zero = np.floor(replayed.event_time.min() / DAY) * DAY
    for name, run in runs.items():
        table[name] |= {
            "labels_learned": float(run.labels_learned),
            "labels_learned_in_time": float(run.labels_learned - run.learned_after_last_payment),
            "labels_after_last_payment": float(run.learned_after_last_payment),
            "labels_per_second": run.labels_per_second,
            "versions_published": float(run.versions_published),
            "versions_adopted": float(run.versions_adopted),
            "judge_switches": float(run.judge_switches),
            "retrained": float(run.retrained),
            "retrains_refused": float(run.refused),
            "retrains_rolled_back": float(run.rolled_back),
            "sampled_out": float(run.sampled_out),
            "duplicates": float(run.duplicates),
            **{f"learned_{kind}": float(count) for kind, count in run.kinds.items()},
        }
        # the stream's day (0: its first) on which scoring first took a version's own weights,
        # and on which a lineage's learned weights first led its root's (only if they did)
        if run.adopted_at:
            table[name]["first_adopted_day"] = (run.adopted_at[0] - day_zero) / DAY
        if run.evidence_at:
            table[name]["first_evidence_day"] = (run.evidence_at[0] - day_zero) / DAY
    weeks = test_weeks(replayed.event_time[test], go_live)
    weekly = {
        name: [
            ranking_metrics(replayed.is_fraud[test][w], s[test][w])["average_precision"]
            for w in weeks
        ]
        for name, s in scores.items()
    }
    drift: dict[str, Any] = {}
    pattern = replayed.rows_of(NEW_PATTERN)
    if drift_start is not None and pattern[test].any():
        drift = {
            name: drift_metrics(
                day=replayed.day[test],
                card=replayed.card[test],
                score=s[test],
                is_fraud=replayed.is_fraud[test],
                pattern=pattern[test],
                start_day=int(
                    np.floor((drift_start - np.floor(replayed.event_time.min() / DAY) * DAY) / DAY)
                ),
                k=k,
            )
            for name, s in scores.items()
        }
        other = test[~pattern[test]]
        for name, s in scores.items():
            ranked = ranking_metrics(replayed.is_fraud[other], s[other])
            cp = card_precision_at_k(
                replayed.day[other], replayed.card[other], s[other], replayed.is_fraud[other], k
            )
            table[name] |= {
                "average_precision_other": ranked["average_precision"],
                "roc_auc_other": ranked["roc_auc"],
                f"card_precision_at_{k}_other": float(cp.mean()) if len(cp) else float("nan"),
            }
    lap("metrics")
    return Evaluation(
        settings, replayed, test, scores, table, runs, seconds, weekly=weekly, drift=drift,
        gates={name: [msgspec.to_builtins(v) for v in vs] for name, vs in gates.items()},
    )  # fmt: skip


# ---------------------------------------------------------------------------- the command


def summary(evaluation: Evaluation, k: int) -> str:
    """What the command prints for one stream: the metrics, AP per test week, the labels
    learned and the new pattern's figures (the report has the same)."""
    from model_state.offline.eval_report import drift_text, labels_text, weekly_table

    parts = [
        format_table(evaluation.table, k),
        "average precision per test week:\n" + weekly_table(evaluation),
        labels_text(evaluation),
    ]
    if evaluation.drift:
        parts.append(drift_text(evaluation, k))
    return "\n\n".join(parts)


def history_stream(paths: list[Path]) -> tuple[Replayed, str]:
    """A bank's own history, replayed: its events, and its fraud labels as the truth. The
    loader's whole summary (rejections by reason with examples) is printed."""
    from model_state.offline.history import load_history

    history = load_history(paths)
    summary = history.summary()
    print(summary, flush=True)
    truth: dict[str, str | None] = {
        label.transaction_id: "labelled fraud" for label in history.labels if label.is_fraud
    }
    text = f"history {', '.join(str(p) for p in paths)}: {summary.splitlines()[0]}"
    return replay_stream(history.stream(), truth, progress=True), text


def _specs(args: argparse.Namespace, go_live_day: int) -> list[StreamSpec]:
    drift = args.drift if args.drift is None or args.drift >= 0 else go_live_day + 4
    common = {"days": args.days, "size": args.size, "labels": args.labels,
              "label_delay_days": args.label_delay_days, "drift_start_day": drift}  # fmt: skip
    if args.streams:
        from test_data.handbook_draws import load

        entries = load(args.streams)
        if args.only:
            unknown = set(args.only) - {e["name"] for e in entries}
            if unknown:
                raise SystemExit(f"--only {sorted(unknown)}: not in {args.streams}")
            entries = [e for e in entries if e["name"] in args.only]
        return [
            StreamSpec(
                "handbook",
                int(e["seed"]),
                params=tuple(sorted(e["params"].items())),
                name=e["name"],
                **common,
            )
            for e in entries
        ]
    return [StreamSpec(args.stream, seed, **common) for seed in args.seeds]


def main(argv: list[str] | None = None) -> None:
    """The command; bad input (a history that cannot be read, a go-live day after the stream's
    end, an unknown optimizer) is one line naming it, not a traceback."""
    try:
        _main(argv)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"python -m model_state.evaluate: {bounded(str(exc))}") from None


def _main(argv: list[str] | None) -> None:
    parser = Parser(
        prog="python -m model_state.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stream", choices=STREAMS, default="handbook")
    source.add_argument("--history", type=Path, nargs="+", help="files or folders of history")
    source.add_argument(
        "--streams", type=Path, help="handbook streams with drawn parameters (a JSON file)"
    )
    parser.add_argument("--only", nargs="+", help="with --streams: only these names")
    parser.add_argument(
        "--seeds", type=within(int, 0, train.MOST_SEED), nargs="+", default=[1],
        help="one run per seed",
    )  # fmt: skip
    parser.add_argument(
        "--days", type=within(int, 1, 3660), default=70, help="days of simulated stream"
    )
    parser.add_argument(
        "--size",
        type=within(int, 1, train.MOST_CARDS),
        default=None,
        help="customers (handbook: 5000) or cards (generator: 3000)",
    )
    parser.add_argument("--go-live-day", type=within(int, 0, 3660), default=42)
    parser.add_argument(
        "--labels",
        choices=LABEL_MODES,
        default="every",
        help="every: every payment labelled --label-delay-days after it; frauds: only frauds, "
        "reported 1 to 60 days after (then implicit negatives); own: the generator's delays",
    )
    parser.add_argument(
        "--label-delay-days",
        type=within(float, 0, 36_500),
        default=7.0,
        help="with --labels every: labels this long after their payment (and an unlabelled "
        "payment this old counts as legitimate)",
    )
    parser.add_argument(
        "--implicit-days",
        type=within(float, 0, 36_500, above=True),
        default=DEFAULT_IMPLICIT_DAYS,
        help="with --labels frauds or own, or --history: a payment with no label this long "
        "after it is learned as legitimate (PAYSCORE_LABEL_DELAY_DAYS's default)",
    )
    parser.add_argument(
        "--generator-delays",
        action="store_true",
        help="the same as --stream generator --labels own (kept for older commands)",
    )
    parser.add_argument(
        "--drift",
        type=within(int, 0, 3660),
        nargs="?",
        const=-1,
        default=None,
        help="add the drift scenario's new pattern from this day (default: go-live + 4)",
    )
    parser.add_argument("--online", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--retrain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--ablation", action="store_true", help="also run with each moving part switched off"
    )
    parser.add_argument(
        "--ablation-parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="with --ablation: only these parts switched off (one run each)",
    )
    parser.add_argument(
        "--legit-sample-rate",
        type=float,
        default=Config().legit_sample_rate,
        help="negative downsampling: the share of legitimate labels learned, at weight 1/rate",
    )
    parser.add_argument("--family", choices=train.FAMILIES, default=train.DEFAULT_FAMILY)
    parser.add_argument(
        "--online-optimizer",
        default=None,
        help="what the online model learns with, e.g. adagrad:0.05 (default: what the "
        "training gives it, as the flow runs it)",
    )
    parser.add_argument(
        "--hold-forest",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the online step holds the forest's weight (model_state.learner.HELD_COLUMNS)",
    )
    parser.add_argument(
        "--judge",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score an online version with its root's weights unless they ranked the recent "
        "labels worse (model_state.online_judge; --no-judge: as before issue 22's judge)",
    )
    parser.add_argument(
        "--judge-window",
        type=within(int, 1, 10**9),
        default=None,
        metavar="N",
        help="judge the online versions on the last N labels of any lineage, each scored before "
        "it was learned, ranked within its payment day (model_state.window_judge; default: the "
        "labels of the lineage's own payments, model_state.online_judge)",
    )
    parser.add_argument(
        "--residual",
        type=within(float, 0, 1, above=True),
        default=None,
        metavar="P",
        help="the online step learns only labels of payments the forest alone scores below "
        "probability P (model_state.learner.residual_bar; the boosted family)",
    )
    parser.add_argument(
        "--previous-step",
        action="store_true",
        help=f"also run the online model with the step it had before issue 22 item 4 "
        f"({PREVIOUS_STEP} on every weight, the forest's too), everything else as shipped",
    )
    parser.add_argument(
        "--min-gain",
        type=within(float, -1_000, 1_000),
        default=retrain.DEFAULT_MIN_GAIN,
        help="the retrain gate: a challenger must beat the champion by this many standard "
        "errors of the AP difference (python -m model_state.retrain --min-gain)",
    )
    parser.add_argument(
        "--rollback",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="judge each retrain again once it is live, beside the champion it replaced, on the "
        "payments it scored, and roll it back if it ranks them worse "
        "(model_state.offline.rollback; issue 22)",
    )
    parser.add_argument(
        "--shadow-first",
        action="store_true",
        help="instead of --rollback: an accepted retrain scores in the shadow beside the champion "
        "and goes live only once the same judgement on those payments does not find it worse",
    )
    parser.add_argument(
        "--rollback-hold",
        action="store_true",
        help="with --rollback: a retrain due while the live one's rollback verdict is pending "
        "waits for that verdict, then is fitted at once (model_state.offline.retrain_hold)",
    )
    parser.add_argument(
        "--publish-every", type=within(int, 1, 10**9), default=500, help="labels per version"
    )
    parser.add_argument(
        "--retrain-days", type=within(float, 0, 36_500), default=7.0, help="0: never"
    )
    parser.add_argument(
        "--top-k", type=within(int, 1, 1_000_000), default=100, help="cards checked a day"
    )
    parser.add_argument(
        "--references", action=argparse.BooleanOptionalAction, default=True,
        help="also fit the handbook's RF and LR",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("reports/evaluation"))
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("reports/cache"),
        help="keep replays, fits and reference scores here (the same figures, fitted once)",
    )
    parser.add_argument("--no-cache", dest="cache", action="store_const", const=None)
    args = parser.parse_args(argv)
    if args.generator_delays:
        args.stream, args.labels = "generator", "own"
    if args.label_delay_days < 0 or args.implicit_days <= 0:
        parser.error("--label-delay-days must be >= 0 and --implicit-days > 0")
    if args.rollback and args.shadow_first:
        parser.error("--rollback and --shadow-first are two ways to judge a retrain: give one")
    if args.rollback_hold and not args.rollback:
        parser.error("--rollback-hold holds the next retrain for a --rollback verdict: give both")
    if not 0 < args.legit_sample_rate <= 1:
        parser.error(f"--legit-sample-rate must lie in (0, 1]; got {args.legit_sample_rate}")
    from model_state.offline.eval_report import write_report  # matplotlib: the `eval` extra

    if args.judge_window is not None and args.judge_window < 1:
        parser.error(f"--judge-window must be >= 1 label; got {args.judge_window}")
    if args.online_optimizer:
        optimizer_of(args.online_optimizer)  # a clear error before anything runs
    shipped = Variant(
        online=args.online,
        retrain=args.retrain,
        balance=args.balance,
        hold=args.hold_forest,
        judge=args.judge,
        window=args.judge_window,
        residual=args.residual,
        rollback=args.rollback,
        shadow_first=args.shadow_first,
        rollback_hold=args.rollback_hold,
    )
    variants = ablations(shipped, tuple(args.ablation_parts)) if args.ablation else [shipped]
    if args.previous_step:
        variants.insert(1, previous_step(shipped))
    started = time.perf_counter()
    evaluations = []
    common: dict[str, Any] = {
        "go_live_day": args.go_live_day,
        "variants": variants,
        "shipped": shipped,
        "family": args.family,
        "publish_every": args.publish_every,
        "retrain_every": timedelta(days=args.retrain_days) if args.retrain_days > 0 else None,
        "sample_rate": args.legit_sample_rate,
        "online_optimizer": args.online_optimizer,
        "min_gain": args.min_gain,
        "k": args.top_k,
        "references": args.references,
        "cache": args.cache,
        "progress": True,
    }
    if args.history:
        stream, text = history_stream(args.history)
        evaluation = evaluate(
            stream, text, seed=args.seeds[0], label_delay=timedelta(days=args.implicit_days),
            implicit=True, **common,
        )  # fmt: skip
        print(f"\n{text}\n{summary(evaluation, args.top_k)}", flush=True)
        evaluations.append(evaluation)
    for spec in [] if args.history else _specs(args, args.go_live_day):
        stream = replayed(spec, args.cache, progress=True)
        every = spec.labels == "every"
        delay_days = spec.label_delay_days if every else args.implicit_days
        first = np.floor(stream.event_time.min() / DAY) * DAY
        drift = None if spec.drift_start_day is None else first + spec.drift_start_day * DAY
        evaluation = evaluate(
            stream, spec.describe(), seed=spec.seed, label_delay=timedelta(days=delay_days),
            implicit=not every, drift_start=drift,
            stream_key=spec.key() if args.cache else "", **common,
        )  # fmt: skip
        print(f"\n{spec.describe()}\n{summary(evaluation, args.top_k)}", flush=True)
        evaluations.append(evaluation)
    command = " ".join(["python -m model_state.evaluate", *sys.argv[1:]] if argv is None else
                       ["python -m model_state.evaluate", *argv])  # fmt: skip
    report = write_report(evaluations, args.out, command, time.perf_counter() - started)
    if len(evaluations) > 1:
        mean = mean_table([e.table for e in evaluations])
        print(f"\nmean over {len(evaluations)} streams\n{format_table(mean, args.top_k)}")
    print(f"\nreport: {report} ({time.perf_counter() - started:.0f} s)")


__all__ += ["DRIFT_CARDS_PER_DAY"]

if __name__ == "__main__":
    main()
