"""Train the pre-trained model: simulate a history, replay it through ``features/``, fit River.

    python -m model_state.train [--days 45] [--cards 4000] [--seed 7] [--family linear]
                                [--no-compare] [--model-dir DIR]

The history comes from the generator in ``test_data/`` (payments with known fraud, in arrival
order). Features are computed by :func:`features.replay.replay`, the same code the live flow
runs, so the model sees at training time exactly what it will see when scoring. The last
``--validation-days`` of the history are held out: the model learns from the rest and is
measured on the held-out days.

Two model families, both a River ``LogisticRegression`` that goes on learning online:

``linear``
    ``StandardScaler | LogisticRegression`` on the 36 features. What the scorer's reason codes
    read today (:mod:`model_state.scorer`), so it stays the default until the scorer reads the
    other family too.
``basis``
    ``FuncTransformer(Basis) | LogisticRegression``: the same logistic regression over a fixed
    expansion of the features (:class:`Basis`): every feature on a log scale through hat
    functions (a piecewise-linear curve per feature, so both tiny and huge amounts can raise
    the score), and the leaves and log-odds of a small gradient-boosted forest (50 trees of 8
    leaves, fitted once here with scikit-learn and frozen), which brings the interactions a
    linear model misses. Only the weights learn online. :class:`Explainer` splits every score
    into contributions of the catalogue's features, for reason codes.

Measured on the generator's held-out streams with a 7-day label delay (mean of seeds 101, 202,
303; ``benchmarks/bench_models.py``), average precision of the online model: ``linear`` 0.47,
``basis`` 0.80 (the offline HistGradientBoosting reference: 0.81). On one core ``linear``
predicts ~100,000 rows/s, learns ~31,000/s and pickles to ~3 KB; ``basis`` ~33,000, ~22,000
and ~50 KB.

The model learns in ``--epochs`` passes over the training rows, each in a shuffled order
(seeded): a single pass in time order leaves SGD tuned to the last days it saw, and it then
scores cards with little history (every card when a flow starts with empty state) far too high.
Then it is given the optimizer it learns with online (:func:`pretrain`). Fraud is rare (well
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
choice is a logistic regression with a fixed-size state; ``basis`` once the scorer explains it.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from river import compose, forest, linear_model, optim, preprocessing, tree
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from dataflows.config import Config
from features.catalog import FEATURE_NAMES
from features.replay import replay
from model_state import artifact
from test_data.generator import SimulationSpec, simulate

Family = Literal["linear", "basis"]
FAMILIES: tuple[Family, ...] = ("linear", "basis")
DEFAULT_FAMILY: Family = "linear"
# How each family goes on learning online once pre-trained (benchmarks/bench_models.py, 3 seeds):
# for ``linear``, AdaGrad ranked best (mean AP 0.47 against 0.38 with the pre-training SGD 0.01);
# for ``basis``, a small SGD step (0.003 to 0.01; 0.03 and Adam lose ground, AdaGrad ties).
BASIS_LEARNING_RATE = 0.02  # SGD step when pre-training the basis family
BASIS_ONLINE_LEARNING_RATE = 0.003
COMPARE_LEGIT_SHARE = 0.1


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


# ---------------------------------------------------------------------------- the basis family

LOG_KNOTS = 15
"""Hat functions sit at log1p(value) = 0, 1, ..., LOG_KNOTS (values up to about 3.3 million)."""
FOREST_TREES = 50
FOREST_LEAVES = 8

Tree = tuple[
    tuple[int, ...], tuple[float, ...], tuple[int, ...], tuple[int, ...], tuple[float, ...]
]
"""One tree, node by node: feature index, threshold (``<=`` goes left), left child (-1 at a
leaf), right child, value (a leaf's log-odds step)."""


def _leaf_paths(t: Tree, counts: tuple[int, ...]) -> dict[int, tuple[tuple[int, float], ...]]:
    """Each leaf's path as (feature index, change of the expected value) per split (Saabas)."""
    feature, _, left, right, value = t
    mean = list(value)

    def fill(node: int) -> float:  # count-weighted mean of the leaf values under node
        if left[node] >= 0:
            a, b = fill(left[node]), fill(right[node])
            ca, cb = counts[left[node]], counts[right[node]]
            mean[node] = (a * ca + b * cb) / max(ca + cb, 1)
        return mean[node]

    fill(0)
    paths: dict[int, tuple[tuple[int, float], ...]] = {}

    def walk(node: int, path: tuple[tuple[int, float], ...]) -> None:
        if left[node] < 0:
            paths[node] = path
            return
        for child in (left[node], right[node]):
            walk(child, (*path, (feature[node], mean[child] - mean[node])))

    walk(0, ())
    return paths


class Basis:
    """The fixed expansion the ``basis`` family's logistic regression learns on.

    ``basis(features)`` gives, for a dict keyed by :data:`~features.catalog.FEATURE_NAMES`:

    - ``"<feature>@<k>"``: the hat functions of ``log1p(max(value, 0))`` at the knots
      ``k = 0 .. LOG_KNOTS`` (at most two per feature, summing to 1);
    - ``"tree<i>:<node>"``: 1 for the leaf of tree ``i`` the payment falls in;
    - ``"forest"``: the forest's log-odds.

    It holds the forest's trees, each leaf's share of the training rows, and the mean of every
    hat over the training rows: the average payment against which :meth:`explainer` measures
    what pushed a score up. Nothing in it learns after :meth:`fit`.
    """

    def __init__(
        self,
        trees: list[Tree],
        counts: list[tuple[int, ...]],
        base: float,
        hat_means: dict[str, float],
        names: tuple[str, ...] = FEATURE_NAMES,
    ) -> None:
        self.trees = trees
        self.counts = counts
        self.base = base
        self.hat_means = hat_means
        self.names = names
        self._hat_names = [tuple(f"{n}@{k}" for k in range(LOG_KNOTS + 1)) for n in names]
        self._leaf_names = [
            {node: f"tree{i}:{node}" for node in range(len(t[0])) if t[2][node] < 0}
            for i, t in enumerate(trees)
        ]
        paths = [_leaf_paths(t, c) for t, c in zip(trees, counts, strict=True)]
        # Per tree and leaf: the features split on along its path, and their Saabas deltas.
        self._leaf_features = [
            {node: tuple(sorted({f for f, _ in path})) for node, path in p.items()} for p in paths
        ]
        self._leaf_deltas = paths
        # Each leaf's share of the training rows, and the forest's mean log-odds over them.
        self.leaf_means = {
            self._leaf_names[i][node]: counts[i][node] / max(counts[i][0], 1)
            for i in range(len(trees))
            for node in self._leaf_names[i]
        }
        self.forest_mean = base + sum(
            counts[i][node] / max(counts[i][0], 1) * t[4][node]
            for i, t in enumerate(trees)
            for node in self._leaf_names[i]
        )

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.trees, self.counts, self.base, self.hat_means, self.names)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Basis({len(self.names)} features, {len(self.trees)} trees)"

    def __call__(self, x: dict[str, float]) -> dict[str, float]:
        return self.expand(x)[0]

    def expand(self, x: dict[str, float]) -> tuple[dict[str, float], list[int]]:
        """The basis columns of ``x``, and the leaf it reaches in each tree."""
        out: dict[str, float] = {}
        values = [x[name] for name in self.names]
        for hats, v in zip(self._hat_names, values, strict=True):
            z = math.log1p(v) if v > 0.0 else 0.0
            if z >= LOG_KNOTS:
                out[hats[LOG_KNOTS]] = 1.0
                continue
            k = int(z)
            out[hats[k]] = 1.0 - (z - k)
            if z > k:
                out[hats[k + 1]] = z - k
        log_odds = self.base
        reached = []
        for (feature, threshold, left, right, value), leaves in zip(
            self.trees, self._leaf_names, strict=True
        ):
            node = 0
            while left[node] >= 0:
                node = left[node] if values[feature[node]] <= threshold[node] else right[node]
            out[leaves[node]] = 1.0
            log_odds += value[node]
            reached.append(node)
        out["forest"] = log_odds
        return out, reached

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        *,
        seed: int,
        trees: int = FOREST_TREES,
        leaves: int = FOREST_LEAVES,
        names: tuple[str, ...] = FEATURE_NAMES,
    ) -> Basis:
        """Fit the forest on ``x`` (columns in ``names`` order) and ``y``; measure the hats."""
        forest = HistGradientBoostingClassifier(
            max_iter=trees,
            max_leaf_nodes=leaves,
            learning_rate=0.1,
            min_samples_leaf=100,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
        with threadpool_limits(limits=1):  # OpenMP threads spin when the machine is busy
            model = forest.fit(x, y)
        exported, counts = _export(model)
        z = np.clip(np.log1p(np.maximum(x, 0.0)), 0.0, LOG_KNOTS)
        low = np.minimum(np.floor(z).astype(np.int64), LOG_KNOTS)
        frac = z - low
        hat_means: dict[str, float] = {}
        for j, name in enumerate(names):
            sums = np.bincount(low[:, j], weights=1.0 - frac[:, j], minlength=LOG_KNOTS + 2)
            sums += np.bincount(low[:, j] + 1, weights=frac[:, j], minlength=LOG_KNOTS + 2)
            for k in range(LOG_KNOTS + 1):
                if sums[k] > 0:
                    hat_means[f"{name}@{k}"] = float(sums[k] / len(x))
        basis = cls(exported, counts, float(np.ravel(model._baseline_prediction)[0]), hat_means)
        _check_export(basis, model, x)
        return basis

    def explainer(self, weights: dict[str, float], intercept: float) -> Explainer:
        """What explains scores for these logistic-regression weights (one model version)."""
        return Explainer(self, weights, intercept)


class Explainer:
    """Splits a ``basis`` model's log-odds into contributions of the catalogue's features.

    ``explainer(x)`` returns ``(contributions, offset)`` with ``sum(contributions.values()) +
    offset`` equal to the model's log-odds. A contribution is measured against the average
    training payment, like ``weight * scaled value`` for the ``linear`` family: a hat column
    gives ``w * (hat - its mean)`` to its feature; a tree's leaf gives ``w_leaf - mean w`` shared
    equally among the features split on along its path; the forest's log-odds is split along
    each path by the change in expected value at every split (Saabas).
    """

    def __init__(self, basis: Basis, weights: dict[str, float], intercept: float) -> None:
        self._basis = basis
        # hat column -> (feature index, weight)
        self._hats = {
            col: (j, weights.get(col, 0.0))
            for j, hats in enumerate(basis._hat_names)
            for col in hats
        }
        hat_expected = [
            sum(weights.get(col, 0.0) * basis.hat_means.get(col, 0.0) for col in hats)
            for hats in basis._hat_names
        ]
        self._start = [-e for e in hat_expected]
        forest_weight = weights.get("forest", 0.0)
        # Per tree and leaf: what reaching that leaf adds to each feature, all columns included.
        self._leaves: list[dict[int, tuple[tuple[int, float], ...]]] = []
        tree_expected = []
        for i, leaves in enumerate(basis._leaf_names):
            expected = sum(weights.get(col, 0.0) * basis.leaf_means[col] for col in leaves.values())
            tree_expected.append(expected)
            pushes: dict[int, tuple[tuple[int, float], ...]] = {}
            for node, col in leaves.items():
                split_on = basis._leaf_features[i][node]
                add = dict.fromkeys(split_on, 0.0)
                for f in split_on:
                    add[f] += (weights.get(col, 0.0) - expected) / len(split_on)
                for f, delta in basis._leaf_deltas[i][node]:
                    add[f] += forest_weight * delta
                pushes[node] = tuple(add.items())
            self._leaves.append(pushes)
        self.offset = (
            intercept + sum(hat_expected) + sum(tree_expected) + forest_weight * basis.forest_mean
        )

    def __call__(self, x: dict[str, float]) -> tuple[dict[str, float], float]:
        columns, reached = self._basis.expand(x)
        push = list(self._start)
        hats = self._hats
        for col, value in columns.items():
            hat = hats.get(col)
            if hat is not None:
                push[hat[0]] += hat[1] * value
        for pushes, node in zip(self._leaves, reached, strict=True):
            for f, amount in pushes[node]:
                push[f] += amount
        return dict(zip(self._basis.names, push, strict=True)), self.offset


def explain(model: compose.Pipeline, features: dict[str, float]) -> dict[str, float]:
    """Contributions of each catalogue feature to a ``basis`` model's log-odds for ``features``.

    For a reason code, take the largest positive ones (as the scorer does for ``linear``).
    Builds an :class:`Explainer` per call; a scorer should build one per model version.
    """
    steps = list(model.steps.values())
    if len(steps) != 2 or not isinstance(getattr(steps[0], "func", None), Basis):
        raise TypeError(
            "explain needs a FuncTransformer(Basis) | LogisticRegression pipeline "
            f"(the 'basis' family); got {model!r:.120}"
        )
    linear = steps[1]
    return steps[0].func.explainer(linear.weights, linear.intercept)(features)[0]


def _export(model: HistGradientBoostingClassifier) -> tuple[list[Tree], list[tuple[int, ...]]]:
    """The trees of a fitted binary HistGradientBoostingClassifier as plain tuples.

    scikit-learn has no public accessor for them; this reads ``_predictors`` (stable since
    0.21) and :func:`_check_export` verifies the copy predicts what the model predicts.
    """
    try:
        predictors = [p for (p,) in model._predictors]
        nodes = [p.nodes for p in predictors]
    except (AttributeError, ValueError, TypeError) as exc:
        raise RuntimeError(
            "Basis.fit cannot read the trees of scikit-learn's HistGradientBoostingClassifier "
            f"(its `_predictors`: {exc}); pin scikit-learn to a version where it can "
            "(tested with 1.9) or change model_state.train._export"
        ) from None
    trees: list[Tree] = []
    counts: list[tuple[int, ...]] = []
    for n in nodes:
        leaf = n["is_leaf"].astype(bool)
        trees.append(
            (
                tuple(int(v) for v in n["feature_idx"]),
                tuple(float(v) for v in n["num_threshold"]),
                tuple(
                    -1 if is_leaf else int(v) for v, is_leaf in zip(n["left"], leaf, strict=True)
                ),
                tuple(int(v) for v in n["right"]),
                tuple(float(v) for v in n["value"]),
            )
        )
        counts.append(tuple(int(v) for v in n["count"]))
    return trees, counts


def _check_export(basis: Basis, model: HistGradientBoostingClassifier, x: np.ndarray) -> None:
    sample = x[:: max(1, len(x) // 500)]
    want = model.decision_function(sample)
    got = [basis(dict(zip(basis.names, row, strict=True)))["forest"] for row in sample.tolist()]
    worst = float(np.max(np.abs(np.asarray(got) - want))) if len(sample) else 0.0
    if worst > 1e-6:
        raise RuntimeError(
            f"Basis.fit: the exported forest's log-odds differ from scikit-learn's by {worst:.3g}"
            " on training rows; scikit-learn's tree layout changed (see _export)"
        )


Rows = list[tuple[datetime, dict[str, float], bool]]
"""(event time, features, is fraud) per payment, in arrival order."""


def examples(stream: Iterable[object], truth: dict[str, str | None]) -> Rows:
    rows = []
    for payment, features in tqdm(replay(stream), desc="features", unit=" payments"):
        rows.append((payment.event_time, features, truth.get(payment.transaction_id) is not None))
    return rows


def split(rows: Rows, validation_days: int) -> tuple[Rows, Rows]:
    """The rows to learn from, and those of the last ``validation_days`` days (held out)."""
    if not rows:
        return [], []
    cutoff = rows[-1][0] - timedelta(days=validation_days)
    return [r for r in rows if r[0] < cutoff], [r for r in rows if r[0] >= cutoff]


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


def evaluate(model: compose.Pipeline, rows: Rows, weight: float) -> dict[str, float]:
    """Ranking metrics, and the mean corrected probability against the real fraud rate."""
    if not rows:
        return {}
    y = [int(r[2]) for r in rows]
    p = [probability(model, r[1], weight) for r in rows]
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
        basis = Basis.fit(x, y, seed=seed)
        model = fit(learn, new_basis_model(basis), weight=fraud_weight, epochs=epochs, seed=seed)
        list(model.steps.values())[-1].optimizer = optim.SGD(BASIS_ONLINE_LEARNING_RATE)
        return model
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def _candidates(basis: Basis | None, seed: int) -> dict[str, Callable[[], Any]]:
    candidates: dict[str, Callable[[], Any]] = {"linear": new_model}
    if basis is not None:
        candidates["basis"] = lambda: new_basis_model(basis)
    candidates["hoeffding_adaptive_tree"] = lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=seed)
    candidates["arf5"] = lambda: forest.ARFClassifier(n_models=5, seed=seed)
    return candidates


def compare(
    learn: Rows, hold_out: Rows, chosen: compose.Pipeline, *, seed: int, max_predict: int = 20_000
) -> dict[str, float]:
    """One pass of each candidate pipeline over a subsample of ``learn``, measured on ``hold_out``.

    The subsample keeps every fraud and a ``COMPARE_LEGIT_SHARE`` of the legitimate rows, in
    time order (the way an online learner meets them). ``basis`` reuses the chosen model's
    basis when it has one (fitting a forest is part of pre-training, not of online learning).
    """
    rng = random.Random(seed)
    sample = [r for r in learn if r[2] or rng.random() < COMPARE_LEGIT_SHARE]
    check = hold_out[:: max(1, math.ceil(len(hold_out) / max_predict))]
    y = [r[2] for r in check]
    metrics: dict[str, float] = {"compare_learn_rows": float(len(sample))}
    first = next(iter(chosen.steps.values()))
    basis = first.func if isinstance(getattr(first, "func", None), Basis) else None
    for name, make in _candidates(basis, seed).items():
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


def train_rows(
    rows: Rows,
    model_dir: Path,
    *,
    seed: int,
    validation_days: int = 7,
    epochs: int = 3,
    fraud_weight: float = 1.0,
    family: Family = DEFAULT_FAMILY,
    with_comparison: bool = False,
) -> artifact.ModelArtifact:
    """Fit on ``rows`` (replayed history, arrival order) and save a new version in ``model_dir``."""
    if not rows:
        raise ValueError("no payments to learn from: the replayed history is empty")
    learn, hold_out = split(rows, validation_days)
    model = pretrain(learn, family=family, epochs=epochs, fraud_weight=fraud_weight, seed=seed)
    metrics = evaluate(model, hold_out, fraud_weight)
    if with_comparison:
        metrics |= compare(learn, hold_out, model, seed=seed)
    metadata = artifact.ModelMetadata(
        version=artifact.next_version(model_dir),
        parent_version=None,
        origin="pretrained",
        created_at=artifact.now_utc(),
        feature_names=FEATURE_NAMES,
        model_description=repr(model),
        training_window=(rows[0][0], rows[-1][0]),
        rows=len(learn),
        frauds=sum(1 for r in learn if r[2]),
        positive_weight=fraud_weight,
        metrics=metrics,
    )
    return artifact.save(model, metadata, model_dir)


def train(
    spec: SimulationSpec,
    model_dir: Path,
    *,
    validation_days: int = 7,
    epochs: int = 3,
    fraud_weight: float = 1.0,
    family: Family = DEFAULT_FAMILY,
    with_comparison: bool = False,
) -> artifact.ModelArtifact:
    """Simulate ``spec``'s history, replay its features and train a new version on it."""
    simulation = simulate(spec)
    rows = examples(simulation.stream, simulation.truth)
    if not rows:
        raise ValueError(f"the simulated history {spec} has no payments to learn from")
    return train_rows(
        rows,
        model_dir,
        seed=spec.seed,
        validation_days=validation_days,
        epochs=epochs,
        fraud_weight=fraud_weight,
        family=family,
        with_comparison=with_comparison,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m model_state.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--days", type=int, default=45, help="days of simulated history")
    parser.add_argument("--cards", type=int, default=4000, help="cards in the simulation")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--validation-days", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fraud-weight", type=float, default=1.0)
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
        "--if-missing", action="store_true", help="do nothing when a model version already exists"
    )
    args = parser.parse_args()
    model_dir = args.model_dir or Path(Config.from_env(os.environ).model_dir)
    if args.if_missing and artifact.list_versions(model_dir):
        print(f"model {artifact.list_versions(model_dir)[-1]} exists in {model_dir}; not training")
        return
    # Keep the generator's default population shape: one merchant for every five cards.
    spec = SimulationSpec(
        seed=args.seed, days=args.days, cards=args.cards, merchants=max(args.cards // 5, 2)
    )
    result = train(
        spec,
        model_dir,
        validation_days=args.validation_days,
        epochs=args.epochs,
        fraud_weight=args.fraud_weight,
        family=args.family,
        with_comparison=args.compare,
    )
    m = result.metadata
    print(f"wrote model {m.version} to {model_dir / m.version}: {m.rows} rows, {m.frauds} frauds")
    for key, value in m.metrics.items():
        print(f"  {key:45s} {value:14.4f}")


if __name__ == "__main__":
    main()
