"""Fitting the frozen expansions the online models learn on: scikit-learn's gradient-boosted
forests, exported as plain arrays (:class:`model_state.boosted.Boosted`) or tuples
(:class:`model_state.basis.Basis`) that the flow walks without scikit-learn.

Offline only: the flow scores and learns with what these functions return, and never imports
scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from features.catalog import FEATURE_NAMES
from model_state.basis import FOREST_LEAVES, FOREST_TREES, Basis, Tree, hat_means
from model_state.boosted import FOREST, TAIL_FEATURES, TAIL_QUANTILE, Boosted, widen


def fit_forest(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    sample_weight: np.ndarray | None = None,
    settings: dict[str, Any] | None = None,
) -> HistGradientBoostingClassifier:
    """The forest with ``settings`` (default :data:`FOREST`), fitted on one thread.

    scikit-learn's OpenMP threads spin-wait when another process wants a core: on this two-core
    machine with one busy process beside it a fit took 42 s on two threads and 22 s on one.
    """
    with threadpool_limits(limits=1):
        forest = HistGradientBoostingClassifier(random_state=seed, **(settings or FOREST))
        return forest.fit(x, y, sample_weight=sample_weight)


def fit_boosted(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    fraud_weight: float = 1.0,
    names: tuple[str, ...] = FEATURE_NAMES,
    settings: dict[str, Any] | None = None,
) -> Boosted:
    """Fit the forest (``settings``, default :data:`FOREST`) on ``x`` (columns in ``names``
    order) and ``y``, a fraud weighing ``fraud_weight``; measure the hats."""
    weight = np.where(y, fraud_weight, 1.0) if fraud_weight != 1.0 else None
    tails = tuple(
        (names.index(n), float(np.quantile(x[:, names.index(n)], TAIL_QUANTILE)))
        for n in TAIL_FEATURES
        if n in names and len(x)
    )
    # A tail with no value above its floor (every amount the same) would be a column of NaN
    # alone, which scikit-learn's binning cannot take ("window shape cannot be larger than input
    # array shape"): such a feature has no tail to split in, and gets none.
    tails = tuple((j, floor) for j, floor in tails if (x[:, j] > floor).any())
    model = fit_forest(widen(x, tails), y, seed, weight, settings)
    trees, counts, base = export_trees(model)
    nan_left = [np.asarray(p.nodes["missing_go_to_left"], dtype=bool) for (p,) in model._predictors]
    sizes = [len(t[0]) for t in trees]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    table: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left")}
    table |= {"right": [], "value": [], "count": []}
    table["nan_left"] = nan_left
    for (feature, threshold, left, right, value), count, offset in zip(
        trees, counts, offsets.tolist(), strict=True
    ):
        own = np.arange(len(feature), dtype=np.int64) + offset
        is_leaf = np.asarray(left) < 0
        table["feature"].append(np.where(is_leaf, 0, feature).astype(np.int64))
        table["threshold"].append(np.where(is_leaf, np.inf, threshold).astype(np.float64))
        table["left"].append(np.where(is_leaf, own, np.asarray(left) + offset))
        table["right"].append(np.where(is_leaf, own, np.asarray(right) + offset))
        table["value"].append(np.where(is_leaf, value, 0.0).astype(np.float64))
        table["count"].append(np.asarray(count, dtype=np.int64))
    nodes = {k: np.concatenate(v) for k, v in table.items()}
    boosted = Boosted(nodes, offsets, base, hat_means(x, names), names, tails)
    _check_boosted(boosted, model, x)
    return boosted


def fit_basis(
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
    exported, counts, base = export_trees(model)
    basis = Basis(exported, counts, base, hat_means(x, names), names)
    _check_basis(basis, model, x)
    return basis


def export_trees(
    model: HistGradientBoostingClassifier,
) -> tuple[list[Tree], list[tuple[int, ...]], float]:
    """The trees of a fitted binary HistGradientBoostingClassifier as plain tuples, each node's
    training row count, and the forest's starting log-odds.

    scikit-learn has no public accessor for them; this reads ``_predictors`` and
    ``_baseline_prediction`` (stable since 0.21), and the callers check that the copy predicts
    what the model predicts.
    """
    try:
        predictors = [p for (p,) in model._predictors]
        nodes = [p.nodes for p in predictors]
        base = float(np.ravel(model._baseline_prediction)[0])
    except (AttributeError, ValueError, TypeError) as exc:
        raise RuntimeError(
            "fit_basis cannot read the trees of scikit-learn's HistGradientBoostingClassifier "
            f"(its `_predictors`: {exc}); pin scikit-learn to a version where it can "
            "(tested with 1.9) or change model_state.offline.forests.export_trees"
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
    return trees, counts, base


def _check_basis(basis: Basis, model: HistGradientBoostingClassifier, x: np.ndarray) -> None:
    sample = x[:: max(1, len(x) // 500)]
    want = model.decision_function(sample)
    got = [basis(dict(zip(basis.names, row, strict=True)))["forest"] for row in sample.tolist()]
    worst = float(np.max(np.abs(np.asarray(got) - want))) if len(sample) else 0.0
    if worst > 1e-6:
        raise RuntimeError(
            f"fit_basis: the exported forest's log-odds differ from scikit-learn's by {worst:.3g}"
            " on training rows; scikit-learn's tree layout changed (see export_trees)"
        )


def _check_boosted(boosted: Boosted, model: HistGradientBoostingClassifier, x: np.ndarray) -> None:
    sample = x[:: max(1, len(x) // 500)]
    got = boosted.forest(sample)[0]
    expected = model.decision_function(boosted.widen(sample)) if len(sample) else got
    worst = float(np.max(np.abs(got - expected))) if len(sample) else 0.0
    if worst > 1e-6:
        raise RuntimeError(
            f"fit_boosted: the exported forest's log-odds differ from scikit-learn's by {worst:.3g}"
            " on training rows; scikit-learn's tree layout changed (see export_trees)"
        )
