"""Train the pre-trained model: simulate a history, replay it through ``features/``, fit River.

    python -m model_state.train [--days 45] [--cards 4000] [--seed 7] [--family boosted]
                                [--no-compare] [--model-dir DIR]
    python -m model_state.train --history PATH [PATH ...] [--label-delay-days 7]
    python -m model_state.train --from-mysql

The history comes from the generator in ``test_data/`` (payments with known fraud, in arrival
order), from a bank's own files (``--history``, :mod:`model_state.offline.history`) or from what
the flow stored (``--from-mysql``). Features are computed by :func:`features.replay.replay`, the
same code the live flow runs, so the model sees at training time exactly what it will see when
scoring. Validation comes first and apart (:func:`train_rows`, :func:`train_history`); the
version that goes live is then fitted on every usable day.

Three model families, each a River ``LogisticRegression`` that goes on learning online, all
scored and explained by :class:`model_state.scorer.Scorer`:

``boosted`` (the default)
    ``FuncTransformer(Boosted) | LogisticRegression`` (:mod:`model_state.boosted`): the
    log-odds of a 500-tree gradient-boosted forest fitted here with scikit-learn and frozen, and
    every feature's hats; the regression starts as the forest alone (weight 1 on it, 0
    elsewhere) and learns online the corrections new labels show. A scheduled retrain
    (:mod:`model_state.offline.retrain`) fits a new forest on the labels stored since.
``basis``
    ``FuncTransformer(Basis) | LogisticRegression``: the logistic regression over a fixed
    expansion of the features (:mod:`model_state.basis`): hats, and the leaves and log-odds of
    a small 50-tree forest, all weights pre-trained in passes over the history.
``linear``
    ``StandardScaler | LogisticRegression`` on the 36 features: simpler, faster, and far
    weaker on this stream.

The families are compared on held-out generator streams by
``benchmarks/bench_models.py --seeds 101 202 303``; the shipped family is measured against the
handbook's references by ``python -m model_state.evaluate`` (README, "Evaluation"). On one core
(``benchmarks/bench_models.py --speed --seeds``) ``linear`` scores with reasons about 68,000
rows/s and pickles to ~4 KB, ``basis`` ~27,000 and ~50 KB, ``boosted`` ~11,000 in batches of
500 (~3,300 one at a time) and ~1.5 MB.

The model learns in ``--epochs`` passes over the training rows, each in a shuffled order
(seeded): a single pass in time order leaves SGD tuned to the last days it saw, and it then
scores cards with little history (every card when a flow starts with empty state) far too high.
Then it is given the optimizer it learns with online (:func:`pretrain`). The ``boosted``
family has nothing to pre-train but its forest. Fraud is rare (well
under 1 %); ``--fraud-weight`` makes each fraudulent example weigh more, and the scorer
corrects the probabilities for it. Weight 1 ranked best for both families (weight 3, same
online SGD step: average precision 0.36 against 0.38 for ``linear``, 0.78 against 0.80 for
``basis``), so it is the default.

**Comparison** (``--compare``, on by default on the command line): besides the chosen family,
a few River pipelines learn one pass, in time order, over the same subsample of the training
rows (every fraud and one legitimate payment in ten) and are measured on the held-out days:
validation ROC AUC and average precision, rows learned and predicted per second, and pickled
size. The figures go into the version's metadata ``metrics`` as ``compare_<name>_<figure>``.
On the default history (45 days, 4,000 cards; 24,000 rows learned): ``basis`` AP 0.82,
``linear`` 0.51, ``forest.ARFClassifier(n_models=5)`` 0.31 at 2,400 rows/s learned and
5.4 MB pickled, ``tree.HoeffdingAdaptiveTreeClassifier`` 0.18 and 1.4 MB. The tree learners'
state grows with traffic, and Bytewax copies and pickles the learner at every epoch, so the
choice is a logistic regression with a fixed-size state over a frozen forest.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import random
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
from river import compose, forest, linear_model, optim, preprocessing, tree
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from features.bounded import bounded
from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel, Payment
from features.replay import replay
from model_state import artifact, drift, signing
from model_state.basis import Basis
from model_state.boosted import Boosted
from model_state.offline.eval_stream import Replayed, Rows, replay_stream, training_rows, usable
from model_state.offline.forests import fit_basis, fit_boosted
from model_state.offline.online_optimizer import BOOSTED_ONLINE, online_optimizer
from model_state.scorer import Scorer
from settings.arguments import Parser, within
from settings.config import Config
from storage.refusals import refusing
from test_data.generator import SimulationSpec, simulate

Family = Literal["linear", "basis", "boosted"]
FAMILIES: tuple[Family, ...] = ("boosted", "basis", "linear")
DEFAULT_FAMILY: Family = "boosted"
# How each family goes on learning online once pre-trained (benchmarks/bench_models.py, 3 seeds):
# for ``linear``, AdaGrad ranked best (mean AP 0.47 against 0.38 with the pre-training SGD 0.01);
# for ``basis``, a small SGD step (0.003 to 0.01; 0.03 and Adam lose ground, AdaGrad ties).
BASIS_LEARNING_RATE = 0.02  # SGD step when pre-training the basis family
BASIS_ONLINE_LEARNING_RATE = 0.003
# For ``boosted``: model_state.offline.online_optimizer.BOOSTED_ONLINE (the intercept moves by
# SGD at BOOSTED_INTERCEPT_RATE).
BOOSTED_INTERCEPT_RATE = 0.0003
COMPARE_LEGIT_SHARE = 0.1
# A drift reference is taken from at most this many training rows, evenly spaced: a bin's share
# of 0.1 is then known to about 0.0013 (one standard error), and the ``boosted`` forest scores
# them in a few seconds (2 s for a small forest) however long the history.
DRIFT_REFERENCE_ROWS = 50_000
MOST_CARDS = 1_000_000  # ``--cards``: a simulation this machine holds (about 1.4 GB of draws)
MOST_SEED = 10**18  # ``--seed``: numpy's generators take 0 and up


def new_model() -> compose.Pipeline:
    """The ``linear`` family, untrained."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(0.01), l2=1e-4
    )


def linear_online_optimizer() -> optim.base.Optimizer:
    """What the ``linear`` family learns with online, once pre-trained."""
    return optim.AdaGrad(0.01)


def new_basis_model(basis: Basis, learning_rate: float = BASIS_LEARNING_RATE) -> compose.Pipeline:
    """The ``basis`` family over ``basis``, untrained."""
    return compose.FuncTransformer(basis) | linear_model.LogisticRegression(
        optimizer=optim.SGD(learning_rate), l2=0.0
    )


def new_boosted_model(boosted: Boosted, optimizer: str = BOOSTED_ONLINE) -> compose.Pipeline:
    """The ``boosted`` family over ``boosted``: the forest alone until labels correct it, then
    learning online with ``optimizer`` (:mod:`model_state.offline.online_optimizer`)."""
    linear = linear_model.LogisticRegression(
        optimizer=online_optimizer(optimizer), l2=0.0, intercept_lr=BOOSTED_INTERCEPT_RATE
    )
    linear._weights["forest"] = 1.0  # River exposes no initial weights but the initializer
    return compose.FuncTransformer(boosted) | linear


def examples(stream: Iterable[object], truth: dict[str, str | None]) -> Rows:
    rows = []
    for payment, features in tqdm(replay(stream), desc="features", unit=" payments"):
        rows.append((payment.event_time, features, truth.get(payment.transaction_id) is not None))
    return rows


def split(rows: Rows, validation_days: int) -> tuple[Rows, Rows]:
    """The rows to learn from, and those of the last ``validation_days`` days (held out)."""
    if not rows or validation_days <= 0:
        return list(rows), []
    cutoff = rows[-1][0] - timedelta(days=validation_days)
    return [r for r in rows if r[0] < cutoff], [r for r in rows if r[0] >= cutoff]


WARM_UP_DAYS = 30.0
"""A history's first days, whose features are not what they will be: every window (the longest
is 30 days) starts empty when the replay or the flow starts, and so do the terminals' and
merchants' fraud rates. Models learn them differently from what they score later (issue 22:
forests refitted with them ranked the handbook stream's later weeks lower; without them, not)."""
WARM_UP_MIN_FRAUDS = 1000
"""The warm-up is left out only when the mature payments after it hold at least this many
frauds (and legitimate ones): a young history keeps it rather than learn from a handful."""
WARM_UP_MIN_SPAN_DAYS = 14.0
"""... and span at least this many days: a fit holds out its last 7 days and learns on what
comes before. Without it a stream with many frauds (the handbook's drawn-2 at full scale, about
200 a day) passed 1,000 mature frauds five days after its warm-up, the warm-up was left out, and
the go-live fit refused a history "no longer than the 7 validation days"."""


def training_mask(
    event_time: np.ndarray, is_fraud: np.ndarray, *, first: float, now: float, maturity: float
) -> np.ndarray:
    """Which labelled payments known at ``now`` (POSIX seconds) a model fitted then learns.

    - Only **mature** ones, made at least ``maturity`` (the label delay) before ``now``: their
      label is final, a fraud reported or the payment taken as legitimate. A fraud reported
      sooner is left to the online learner (:mod:`model_state.learner`): learned with no
      legitimate payment of its days beside it, it would teach a forest that recent means
      fraud.
    - Not the history's **warm-up** (:data:`WARM_UP_DAYS` from ``first``, the first payment
      whose features the history holds), when the mature payments after it hold at least
      :data:`WARM_UP_MIN_FRAUDS` frauds and some legitimate ones and span at least
      :data:`WARM_UP_MIN_SPAN_DAYS`.
    """
    t = np.asarray(event_time, dtype=np.float64)
    y = np.asarray(is_fraud, dtype=bool)
    mature = t <= now - maturity
    after = mature & (t >= first + WARM_UP_DAYS * 86_400.0)
    if int(np.count_nonzero(y[after])) >= WARM_UP_MIN_FRAUDS and not y[after].all():
        kept = t[after]
        if float(kept.max() - kept.min()) >= WARM_UP_MIN_SPAN_DAYS * 86_400.0:
            return after
    return mature


def training_set(rows: Rows, *, first: datetime, now: datetime, maturity: timedelta) -> Rows:
    """The rows of ``rows`` (labelled payments known at ``now``, arrival order) a model
    learns (:func:`training_mask`); ``first``: the history's first payment. The pre-training,
    the retrain command and the evaluation all select with this."""
    if not rows:
        return []
    keep = training_mask(
        np.array([r[0].timestamp() for r in rows]),
        np.array([r[2] for r in rows], dtype=bool),
        first=first.timestamp(),
        now=now.timestamp(),
        maturity=maturity.total_seconds(),
    )
    return [r for r, k in zip(rows, keep.tolist(), strict=True) if k]


def matrix(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Features as a float matrix (columns in FEATURE_NAMES order) and the truth as booleans."""
    x = np.array([[r[1][name] for name in FEATURE_NAMES] for r in rows], dtype=np.float64)
    return x.reshape(len(rows), len(FEATURE_NAMES)), np.array([r[2] for r in rows], dtype=bool)


def fit(
    rows: Rows, model: compose.Pipeline, *, weight: float, epochs: int, seed: int
) -> compose.Pipeline:
    """``epochs`` passes, each in a shuffled order; a fraud example weighs ``weight``."""
    order = list(range(len(rows)))
    rng = random.Random(seed)
    for epoch in range(epochs):
        rng.shuffle(order)
        for i in tqdm(order, desc=f"learning, pass {epoch + 1}/{epochs}", unit=" rows"):
            _, x, y = rows[i]
            # A pipeline passes extra keyword arguments to its last step's learn_one.
            model.learn_one(x, y, w=weight if y else 1.0)
    return model


def probability(model: Any, features: dict[str, float], positive_weight: float) -> float:
    """The model's fraud probability with the scorer's prior correction for ``positive_weight``.

    Equal to :class:`model_state.scorer.Scorer`'s for the ``linear`` family; works for any
    River classifier (the scorer needs a model it can explain).
    """
    p = model.predict_proba_one(features).get(True, 0.0)
    if positive_weight == 1.0:
        return p
    p = min(max(p, 1e-300), 1.0 - 1e-16)
    odds = p / (1.0 - p) / positive_weight
    return odds / (1.0 + odds)


def probabilities(model: Any, rows: list[dict[str, float]], positive_weight: float) -> list[float]:
    """:func:`probability` of each of ``rows``: the scorer's, in one batch when it explains
    the model."""
    try:
        scorer = Scorer(model, "-", review=1.0, decline=1.0, positive_weight=positive_weight)
    except TypeError:  # not a family the scorer explains: River's own probability
        return [probability(model, x, positive_weight) for x in rows]
    return [s.probability for s in scorer.score_batch(rows)]


def drift_reference(model: Any, rows: Rows, positive_weight: float) -> drift.Reference:
    """The distribution of ``rows`` (the rows ``model`` learned from) that drift is measured
    against once it scores (:func:`model_state.drift.reference`): the watched features and the
    model's probabilities, on at most :data:`DRIFT_REFERENCE_ROWS` of them, evenly spaced."""
    sample = rows[:: max(1, math.ceil(len(rows) / DRIFT_REFERENCE_ROWS))]
    x, _ = matrix(sample)
    p = np.array(probabilities(model, [r[1] for r in sample], positive_weight), dtype=np.float64)
    return drift.reference(x, p)


def with_drift_reference(
    model: Any, metadata: artifact.ModelMetadata, rows: Rows
) -> artifact.ModelMetadata:
    """``metadata`` of a version fitted on every one of ``rows``, with their drift reference."""
    reference = drift_reference(model, rows, metadata.positive_weight)
    return msgspec.structs.replace(metadata, drift_reference=reference)


def evaluate(model: compose.Pipeline, rows: Rows, weight: float) -> dict[str, float]:
    """Ranking metrics, and the mean corrected probability against the real fraud rate."""
    if not rows:
        return {}
    y = [int(r[2]) for r in rows]
    p = probabilities(model, [r[1] for r in rows], weight)
    metrics = {
        "validation_rows": float(len(rows)),
        "validation_frauds": float(sum(y)),
        "validation_fraud_rate": sum(y) / len(y),
        "mean_probability": sum(p) / len(p),
    }
    if 0 < sum(y) < len(y):
        metrics["roc_auc"] = float(roc_auc_score(y, p))
        metrics["average_precision"] = float(average_precision_score(y, p))
    return metrics


def pretrain(
    learn: Rows, *, family: Family, epochs: int, fraud_weight: float, seed: int
) -> compose.Pipeline:
    """A model of ``family`` fitted on ``learn``, ready to go on learning online."""
    if family == "linear":
        model = fit(learn, new_model(), weight=fraud_weight, epochs=epochs, seed=seed)
        list(model.steps.values())[-1].optimizer = linear_online_optimizer()
        return model
    if family == "basis":
        x, y = matrix(learn)
        basis = fit_basis(x, y, seed=seed)
        model = fit(learn, new_basis_model(basis), weight=fraud_weight, epochs=epochs, seed=seed)
        list(model.steps.values())[-1].optimizer = optim.SGD(BASIS_ONLINE_LEARNING_RATE)
        return model
    if family == "boosted":
        x, y = matrix(learn)
        return new_boosted_model(fit_boosted(x, y, seed=seed, fraud_weight=fraud_weight))
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def _candidates(expansion: Basis | Boosted | None, seed: int) -> dict[str, Callable[[], Any]]:
    candidates: dict[str, Callable[[], Any]] = {"linear": new_model}
    if isinstance(expansion, Basis):
        candidates["basis"] = lambda: new_basis_model(expansion)
    if isinstance(expansion, Boosted):
        candidates["boosted"] = lambda: new_boosted_model(expansion)
    candidates["hoeffding_adaptive_tree"] = lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=seed)
    candidates["arf5"] = lambda: forest.ARFClassifier(n_models=5, seed=seed)
    return candidates


def compare(
    learn: Rows, hold_out: Rows, chosen: compose.Pipeline, *, seed: int, max_predict: int = 20_000
) -> dict[str, float]:
    """One pass of each candidate pipeline over a subsample of ``learn``, measured on ``hold_out``.

    The subsample keeps every fraud and a ``COMPARE_LEGIT_SHARE`` of the legitimate rows, in
    time order (the way an online learner meets them). ``basis`` and ``boosted`` reuse the
    chosen model's expansion when it has one (fitting a forest is part of pre-training, not of
    online learning).
    """
    rng = random.Random(seed)
    sample = [r for r in learn if r[2] or rng.random() < COMPARE_LEGIT_SHARE]
    check = hold_out[:: max(1, math.ceil(len(hold_out) / max_predict))]
    y = [r[2] for r in check]
    metrics: dict[str, float] = {"compare_learn_rows": float(len(sample))}
    first = next(iter(chosen.steps.values()))
    expansion = getattr(first, "func", None)
    for name, make in _candidates(expansion, seed).items():
        model = make()
        started = time.perf_counter()
        for _, x, label in tqdm(sample, desc=f"compare {name}", unit=" rows", leave=False):
            model.learn_one(x, label)
        learned = time.perf_counter() - started
        started = time.perf_counter()
        p = [model.predict_proba_one(x).get(True, 0.0) for _, x, _ in check]
        predicted = time.perf_counter() - started
        prefix = f"compare_{name}_"
        metrics[prefix + "learn_rows_per_s"] = len(sample) / max(learned, 1e-9)
        metrics[prefix + "predict_rows_per_s"] = len(check) / max(predicted, 1e-9)
        metrics[prefix + "pickled_bytes"] = float(len(pickle.dumps(model)))
        if 0 < sum(y) < len(y):
            metrics[prefix + "roc_auc"] = float(roc_auc_score(y, p))
            metrics[prefix + "average_precision"] = float(average_precision_score(y, p))
    return metrics


def fit_version(
    rows: Rows,
    model_dir: Path,
    *,
    seed: int,
    validation_days: int = 7,
    epochs: int = 3,
    fraud_weight: float = 1.0,
    family: Family = DEFAULT_FAMILY,
    with_comparison: bool = False,
    origin: str = "pretrained",
    parent_version: str | None = None,
    version: str | None = None,
) -> tuple[Any, artifact.ModelMetadata, Rows]:
    """Fit on ``rows`` (arrival order) but the last ``validation_days``, measured on those.

    Returns the model, the metadata of the version it would be (the next in ``model_dir``
    unless ``version`` is given) and the held-out rows; ``validation_days`` 0 learns from
    every row and measures nothing. The metadata has no drift reference yet: a version that is
    kept gets one from :func:`with_drift_reference` (a validation model is only measured).
    """
    if not rows:
        raise ValueError("no payments to learn from: the replayed history is empty")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    learn, hold_out = split(rows, validation_days)
    if not learn:
        raise ValueError(
            f"the labelled history spans {rows[0][0]:%Y-%m-%d %H:%M} to "
            f"{rows[-1][0]:%Y-%m-%d %H:%M}, no longer than the {validation_days} validation "
            "days: nothing is left to learn from; give a longer history or fewer --validation-days"
        )
    model = pretrain(learn, family=family, epochs=epochs, fraud_weight=fraud_weight, seed=seed)
    metrics = evaluate(model, hold_out, fraud_weight)
    if with_comparison:
        metrics |= compare(learn, hold_out, model, seed=seed)
    metadata = artifact.ModelMetadata(
        version=version or artifact.next_version(model_dir),
        parent_version=parent_version,
        origin=origin,
        created_at=artifact.now_utc(),
        feature_names=FEATURE_NAMES,
        model_description=repr(model),
        training_window=(rows[0][0], rows[-1][0]),
        rows=len(learn),
        frauds=sum(1 for r in learn if r[2]),
        positive_weight=fraud_weight,
        metrics=metrics,
    )
    return model, metadata, hold_out


def train_rows(
    rows: Rows, model_dir: Path, *, key: bytes, **options: Any
) -> artifact.ModelArtifact:
    """The version that goes live, fitted on every row of ``rows``, saved in ``model_dir``,
    signed.

    Validation comes first and apart: a model fitted on all but the last ``validation_days``
    (:func:`fit_version`) is measured on them, and those figures go into the metadata
    (``metrics``, with the validation span as ``validation_start`` and ``validation_end``,
    POSIX seconds). Then the model is fitted again on every row, the newest days included:
    leaving out the newest labelled week cost the frozen model most of its first week's
    average precision on the handbook's stream (issue 12: 0.508 against 0.619). The version
    records the drift reference of every row (:func:`with_drift_reference`).
    """
    model, metadata, hold_out = fit_version(rows, model_dir, **options)
    if hold_out:
        again = options | {"validation_days": 0, "with_comparison": False}
        final, full, _ = fit_version(rows, model_dir, **again)
        span = {
            "validation_start": hold_out[0][0].timestamp(),
            "validation_end": hold_out[-1][0].timestamp(),
            "validation_model_rows": float(metadata.rows),
        }
        model = final
        metadata = msgspec.structs.replace(full, metrics=metadata.metrics | span)
    metadata = with_drift_reference(model, metadata, rows)
    return artifact.save(model, metadata, model_dir, key=key, new=True)


def train(
    spec: SimulationSpec, model_dir: Path, *, key: bytes, **options: Any
) -> artifact.ModelArtifact:
    """Simulate ``spec``'s history, replay its features and train a new version on it
    (:func:`train_rows`; ``options`` as :func:`fit_version` takes them)."""
    simulation = simulate(spec)
    rows = examples(simulation.stream, simulation.truth)
    if not rows:
        raise ValueError(f"the simulated history {spec} has no payments to learn from")
    # The simulation's truth labels every payment: every one is mature.
    end = max(r[0] for r in rows)
    rows = training_set(rows, first=min(r[0] for r in rows), now=end, maturity=timedelta(days=0))
    return train_rows(rows, model_dir, key=key, seed=spec.seed, **options)


FUTURE_SKEW = timedelta(minutes=5)


def replay_history(
    events: Iterable[Payment | FraudLabel], *, now: datetime, progress: bool = True
) -> tuple[Replayed, float]:
    """A history's payments replayed through ``features/`` (labels in it feed the fraud rates
    as they were reported), and the history's end: its last payment or label. A payment or
    label dated after ``now`` cannot be history: it is left out (and counted in the message),
    or one stray date would move the end and make every unlabelled payment look old."""
    future: dict[str, int] = {"payments": 0, "labels": 0}
    limit = now + FUTURE_SKEW

    def past(stream: Iterable[Payment | FraudLabel]) -> Iterator[Payment | FraudLabel]:
        for event in stream:
            when = event.event_time if isinstance(event, Payment) else event.reported_at
            if when > limit:
                future["payments" if isinstance(event, Payment) else "labels"] += 1
                continue
            yield event

    replayed = replay_stream(past(events), {}, progress=progress)
    if any(future.values()):
        print(
            f"left out {future['payments']} payments and {future['labels']} labels dated after "
            f"now ({now:%Y-%m-%d %H:%M} UTC): a history holds the past"
        )
    if not len(replayed):
        raise ValueError("the history holds no valid payment to learn from")
    end = float(np.nanmax(np.concatenate([replayed.event_time, replayed.reported_at])))
    return replayed, end + 1e-6


def history_rows(
    events: Iterable[Payment | FraudLabel],
    *,
    label_delay: timedelta,
    now: datetime | None = None,
    progress: bool = True,
) -> Rows:
    """:func:`replay_history`'s payments with the class a model trained at the history's end
    may use (:func:`model_state.offline.eval_stream.usable`): the label reported by then, or
    legitimate for a payment older than ``label_delay`` that nobody disputed; newer unlabelled
    payments are left out."""
    replayed, end = replay_history(events, now=now or datetime.now(UTC), progress=progress)
    return training_rows(replayed, *usable(replayed, end, label_delay.total_seconds()))


def train_history(
    events: Iterable[Payment | FraudLabel],
    model_dir: Path,
    *,
    key: bytes,
    label_delay: timedelta = timedelta(days=7),
    validation_days: int = 7,
    seed: int = 7,
    fraud_weight: float = 1.0,
    with_comparison: bool = False,
    now: datetime | None = None,
    **options: Any,
) -> artifact.ModelArtifact:
    """A version fitted on every usable payment of a bank's own history, validated first as the
    handbook validates (train, delay, test), so that the figures are honest for a bank that
    reports frauds quickly and legitimate payments never:

    - the hold-out is the payments made in the ``validation_days`` that end ``label_delay``
      before the history's end (all old enough for a verdict), with their class at the end;
    - the validation model learns what was usable when that window began
      (:func:`model_state.offline.eval_stream.usable`), nothing reported later.

    The version that goes live learns everything usable at the history's end, and records
    their drift reference (:func:`with_drift_reference`).
    """
    replayed, end = replay_history(events, now=now or datetime.now(UTC))
    delay = label_delay.total_seconds()
    first = datetime.fromtimestamp(float(replayed.event_time.min()), UTC)
    now_ = datetime.fromtimestamp(end, UTC)
    rows = training_set(
        training_rows(replayed, *usable(replayed, end, delay)), first=first, now=now_,
        maturity=label_delay,
    )  # fmt: skip
    frauds = sum(1 for r in rows if r[2])
    if not 0 < frauds < len(rows):
        raise ValueError(
            f"the history gives {len(rows)} usable payments, {frauds} of them labelled fraud: a "
            "model needs both classes; check that fraud labels were loaded (see the summary)"
        )
    common = {"seed": seed, "fraud_weight": fraud_weight, "validation_days": 0} | options
    metrics: dict[str, float] = {}
    if validation_days > 0:
        stop = end - delay
        begin = stop - validation_days * 86_400.0
        learn = training_set(
            training_rows(replayed, *usable(replayed, begin, delay)), first=first,
            now=datetime.fromtimestamp(begin, UTC), maturity=label_delay,
        )  # fmt: skip
        known, classes = usable(replayed, end, delay)
        when = replayed.event_time[known]
        window = (when >= begin) & (when < stop)
        hold_out = training_rows(replayed, known[window], classes[window])
        if not learn or not hold_out:
            raise ValueError(
                f"the history is too short to validate: {len(learn)} payments usable before the "
                f"validation window, {len(hold_out)} in it ({validation_days} days ending "
                f"{label_delay.days} days before the history's end); give a longer history or "
                "fewer --validation-days"
            )
        checked, _, _ = fit_version(learn, model_dir, **common)
        metrics = evaluate(checked, hold_out, fraud_weight) | {
            "validation_start": begin,
            "validation_end": stop,
            "validation_model_rows": float(len(learn)),
        }
        if with_comparison:
            metrics |= compare(learn, hold_out, checked, seed=seed)
    model, metadata, _ = fit_version(rows, model_dir, **common)
    metadata = msgspec.structs.replace(metadata, metrics=metrics)
    metadata = with_drift_reference(model, metadata, rows)
    return artifact.save(model, metadata, model_dir, key=key, new=True)


@refusing("python -m model_state.train", "models")
def main() -> None:
    try:
        _main()
    except (ValueError, FileNotFoundError, artifact.VersionExistsError) as exc:  # no traceback
        raise SystemExit(f"python -m model_state.train: {bounded(str(exc))}") from None


def _main() -> None:
    parser = Parser(
        prog="python -m model_state.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--history",
        type=Path,
        nargs="+",
        help="train on your own history: JSON lines (Kafka messages) or CSV files or folders",
    )
    source.add_argument(
        "--from-mysql", action="store_true", help="train on what the flow stored in MySQL"
    )
    parser.add_argument(
        "--label-delay-days",
        type=float,
        default=7.0,
        help="with --history or --from-mysql: an unlabelled payment older than this counts as "
        "legitimate (newer ones are left out)",
    )
    # Simulation sizes a machine can hold: --cards 99999999999 was numpy's MemoryError traceback
    # (127 GiB), 10**24 an OverflowError one.
    parser.add_argument(
        "--days", type=within(int, 1, 3660), default=45, help="days of simulated history"
    )
    parser.add_argument(
        "--cards", type=within(int, 1, MOST_CARDS), default=4000, help="cards in the simulation"
    )
    parser.add_argument("--seed", type=within(int, 0, MOST_SEED), default=7)
    parser.add_argument("--validation-days", type=within(int, 0, 36_500), default=7)
    parser.add_argument("--epochs", type=within(int, 1, 1_000), default=3)
    parser.add_argument("--fraud-weight", type=within(float, 0, 1e6, above=True), default=1.0)
    parser.add_argument("--family", choices=FAMILIES, default=DEFAULT_FAMILY)
    parser.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also compare River pipelines on a subsample (about a minute)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="where versions go (default: PAYSCORE_MODEL_DIR)",
    )
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when a model version already exists that fits this code and records "
        "a drift reference",
    )
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    model_dir = args.model_dir or Path(config.model_dir)
    key = signing.read_key(Path(config.model_key_file), create=True)
    # nan passed "< 0" and came back as "cannot convert float NaN to integer"; 1e300 as an
    # OverflowError traceback. A century at most, as PAYSCORE_LABEL_DELAY_DAYS.
    if not 0 <= args.label_delay_days <= 36_500:
        raise ValueError(
            f"--label-delay-days must be a number of days from 0 to 36,500; got "
            f"{args.label_delay_days}"
        )
    if args.if_missing and artifact.list_versions(model_dir):
        try:
            newest = artifact.load(model_dir, key=key)
        except artifact.ModelMismatchError as exc:  # e.g. trained before a feature change
            print(f"the newest model does not fit this code ({exc}); training a new one")
        else:
            if newest.metadata.drift_reference:
                print(f"model {newest.version} exists in {model_dir}; not training")
                return
            print(
                f"the newest model {newest.version} in {model_dir} records no drift reference "
                "(trained before drift was monitored; model_state.drift needs one to compare "
                "scoring with training); training a new one"
            )
    options: dict[str, Any] = {
        "validation_days": args.validation_days,
        "epochs": args.epochs,
        "fraud_weight": args.fraud_weight,
        "family": args.family,
        "with_comparison": args.compare,
    }
    if args.history or args.from_mysql:
        from model_state.offline import history

        if args.history:
            loaded = history.load_history(args.history)
        else:
            from storage.engine import make_engine

            loaded = history.load_from_mysql(make_engine(config.models_mysql_dsn))
        print(loaded.summary())
        result = train_history(
            loaded.stream(),
            model_dir,
            key=key,
            label_delay=timedelta(days=args.label_delay_days),
            seed=args.seed,
            origin="history" if args.history else "stored",
            **options,
        )
    else:
        # Keep the generator's default population shape: one merchant for every five cards.
        spec = SimulationSpec(
            seed=args.seed, days=args.days, cards=args.cards, merchants=max(args.cards // 5, 2)
        )
        result = train(spec, model_dir, key=key, **options)
    m = result.metadata
    print(f"wrote model {m.version} to {model_dir / m.version}: {m.rows} rows, {m.frauds} frauds")
    for key, value in m.metrics.items():
        print(f"  {key:45s} {value:14.4f}")


if __name__ == "__main__":
    main()
