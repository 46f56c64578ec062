"""The ``boosted`` expansion: a gradient-boosted forest's log-odds and every feature's hats, the
columns a River logistic regression learns on online.

:class:`Boosted` turns the catalogue's features into

- ``"forest"``: the log-odds of a gradient-boosted forest (scikit-learn's
  ``HistGradientBoostingClassifier`` with :data:`FOREST`, fitted once and frozen as arrays), and
- ``"<feature>@<k>"``: the hat functions of every feature on a log scale, as in
  :mod:`model_state.basis`.

A ``boosted`` model starts as the forest alone (the logistic regression's weight on
``"forest"`` is 1, every other weight 0) and learns online only the corrections the forest
misses: each weight moves from labels the forest never saw. Retraining
(:mod:`model_state.offline.retrain`) fits a new forest on every labelled payment and starts again.

The forest is walked for all trees at once with NumPy, for one payment (learning) or a batch
(scoring, :meth:`BoostedExplainer.batch`); reason codes split the forest's log-odds along each
tree path (Saabas: the change in expected value at every split), so they add up to the score.

Why :data:`FOREST`: the best of seven settings by average precision on the pre-training
history's held-out week (``benchmarks/bench_models.py --reference-grid``; the evaluation's
offline reference uses the same, :data:`model_state.offline.evaluate.REFERENCE`).

Versions pickle a :class:`Boosted` by reference to this module and by value as the tuple of
:meth:`Boosted.__getstate__`: keep both stable, or stored versions stop loading.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import scipy.sparse as sp

from features.catalog import FEATURE_NAMES
from model_state import forest_walk
from model_state.basis import LOG_KNOTS, _leaf_paths

FOREST: dict[str, Any] = {
    "max_iter": 500,
    "learning_rate": 0.05,
    "min_samples_leaf": 50,
    "l2_regularization": 1.0,
    "early_stopping": False,
}
"""The forest's settings (scikit-learn's defaults stop early after about ten trees here)."""

TAIL_FEATURES: tuple[str, ...] = (
    "amount_eur",
    "card_amount_max_24h",
    "card_amount_sum_24h",
    "card_amount_to_mean_30d",
)
"""Features the forest also sees as a *tail* column: the value above the training's
:data:`TAIL_QUANTILE`, missing (NaN) below it. scikit-learn bins every column into at most 255
quantiles of its values, so it cannot split an amount inside its top 0.4 %: on the Fraud
Detection Handbook's stream, where every payment above 220 EUR is a fraud, no split came above
about 198 EUR. Bins ignore missing values, so the tail column puts its 255 bins in the top 1 %
and a split can fall at any amount a fraud rule might use."""
TAIL_QUANTILE = 0.99

Nodes = dict[str, np.ndarray]
"""All trees' nodes in one table: ``feature``, ``threshold``, ``left``, ``right`` (a leaf points
at itself), ``value`` (a leaf's log-odds step), ``count`` (training rows through the node),
``nan_left`` (where a missing value goes)."""


def widen(x: np.ndarray, tails: tuple[tuple[int, float], ...]) -> np.ndarray:
    """``x`` with a tail column per (column, floor) of ``tails``: the value where above the
    floor, NaN elsewhere (see :data:`TAIL_FEATURES`)."""
    if not tails:
        return x
    columns = [j for j, _ in tails]
    tail = x[:, columns]
    return np.hstack([x, np.where(tail > np.array([f for _, f in tails]), tail, np.nan)])


class Boosted:
    """The fixed expansion of the ``boosted`` family (see the module docstring).

    ``boosted(features)`` gives the columns of one payment; :meth:`forest` walks a batch.
    """

    def __init__(
        self,
        nodes: Nodes,
        roots: np.ndarray,
        base: float,
        means: dict[str, float],
        names: tuple[str, ...] = FEATURE_NAMES,
        tails: tuple[tuple[int, float], ...] = (),
    ) -> None:
        self.nodes = nodes
        self.roots = roots
        self.base = base
        self.hat_means = means
        self.names = names
        self.tails = tails
        self._values = itemgetter(*names)  # a feature dict's values in ``names`` order, in C
        # The compiled walk's arrays, each contiguous and of one fixed type.
        self._roots = np.ascontiguousarray(roots, dtype=np.int64)
        self._feature = np.ascontiguousarray(nodes["feature"], dtype=np.int64)
        self._threshold = np.ascontiguousarray(nodes["threshold"], dtype=np.float64)
        self._left = np.ascontiguousarray(nodes["left"], dtype=np.int64)
        self._right = np.ascontiguousarray(nodes["right"], dtype=np.int64)
        self._nan_left = np.ascontiguousarray(
            nodes.get("nan_left", np.zeros(len(nodes["value"]), dtype=bool)), dtype=np.bool_
        )
        self._hat_names = np.array(
            [[f"{n}@{k}" for k in range(LOG_KNOTS + 1)] + [""] for n in names], dtype=object
        )
        # A tail column's splits are its source feature's, for reason codes.
        source = [*range(len(names)), *(j for j, _ in tails)]
        self._saabas, root_means = _saabas(nodes, roots, len(names), source)
        self.forest_mean = base + float(root_means.sum())

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.nodes, self.roots, self.base, self.hat_means, self.names, self.tails)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Boosted({len(self.names)} features, {len(self.roots)} trees)"

    @property
    def trees(self) -> int:
        return len(self.roots)

    def matrix(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        """Feature dicts as a float matrix, columns in ``names`` order."""
        values = self._values
        return np.array([values(x) for x in rows], dtype=np.float64).reshape(
            len(rows), len(self.names)
        )

    def __call__(self, x: dict[str, float]) -> dict[str, float]:
        return self.expand_many([x])[0]

    def expand_many(self, rows: Sequence[dict[str, float]]) -> list[dict[str, float]]:
        """The columns of each of ``rows``, walked at once: each equals ``self(row)``, bit for bit
        (the learner expands a batch of labels this way)."""
        x = self.matrix(rows)
        k, past = hats(x)
        forest = self.forest(x)[0].tolist()
        hat_names = self._hat_names
        out = []
        for ki, pi, log_odds in zip(k.tolist(), past.tolist(), forest, strict=True):
            columns: dict[str, float] = {}
            for j, (kj, pj) in enumerate(zip(ki, pi, strict=True)):
                columns[hat_names[j, kj]] = 1.0 - pj
                if pj > 0.0:
                    columns[hat_names[j, kj + 1]] = pj
            columns["forest"] = log_odds
            out.append(columns)
        return out

    def widen(self, x: np.ndarray) -> np.ndarray:
        """``x`` (columns in ``names`` order) with the forest's tail columns appended: a tail
        feature's value above its floor, NaN at or below it (see :data:`TAIL_FEATURES`)."""
        return widen(x, self.tails)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf (global node index) each tree sends each row of ``x`` (columns in ``names``
        order) to: (rows, trees). Compiled (:mod:`model_state.forest_walk`); the same leaves as
        :meth:`leaves_numpy`."""
        return forest_walk.leaves(
            np.ascontiguousarray(self.widen(x), dtype=np.float64),
            self._roots,
            self._feature,
            self._threshold,
            self._left,
            self._right,
            self._nan_left,
        )

    def leaves_numpy(self, x: np.ndarray) -> np.ndarray:
        """:meth:`leaves` in NumPy (the reference the compiled walk is tested against).

        All (row, tree) pairs step down together; those at a leaf drop out of the walk. A
        missing value (a tail column below its floor) goes where the tree sent missing values
        in training.
        """
        x = self.widen(x)
        nan_left = self._nan_left if len(self.tails) else None
        nodes = self.nodes
        feature, threshold, left, right = (
            nodes["feature"],
            nodes["threshold"],
            nodes["left"],
            nodes["right"],
        )
        n, trees = len(x), len(self.roots)
        at = np.tile(self.roots, n)
        cell = np.repeat(np.arange(n, dtype=np.int64) * x.shape[1], trees)  # row start in x.flat
        flat = np.ascontiguousarray(x, dtype=np.float64).ravel()
        walking = np.flatnonzero(left[at] != at)
        while walking.size:
            node = at[walking]
            value = flat[cell[walking] + feature[node]]
            go_left = value <= threshold[node]
            if nan_left is not None:
                go_left |= np.isnan(value) & nan_left[node]
            step = np.where(go_left, left[node], right[node])
            at[walking] = step
            walking = walking[left[step] != step]
        return at.reshape(n, trees)

    def forest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The forest's log-odds for each row of ``x``, and the leaves reached."""
        at = self.leaves(x)
        return self.base + self.nodes["value"][at].sum(axis=1), at

    def saabas(self, at: np.ndarray) -> np.ndarray:
        """Per row and feature, its share of ``forest - forest_mean`` along the paths ``at``.
        Compiled; bitwise the same as :meth:`saabas_sparse`."""
        m = self._saabas
        return forest_walk.saabas(at, m.indptr, m.indices, m.data, m.shape[1])

    def saabas_sparse(self, at: np.ndarray) -> np.ndarray:
        """:meth:`saabas` as SciPy's sparse product (the reference)."""
        n, trees = at.shape
        reached = sp.csr_matrix(
            (np.ones(n * trees), at.ravel(), np.arange(0, n * trees + 1, trees)),
            shape=(n, len(self.nodes["value"])),
        )
        return np.asarray((reached @ self._saabas).todense())

    def explainer(self, weights: dict[str, float], intercept: float) -> BoostedExplainer:
        return BoostedExplainer(self, weights, intercept)


class BoostedExplainer:
    """Splits a ``boosted`` model's log-odds into contributions of the catalogue's features.

    A hat column gives ``w * (hat - its training mean)`` to its feature; the forest's log-odds
    gives ``w_forest`` times its Saabas split. Contributions plus :attr:`offset` are the log-odds.
    """

    def __init__(self, boosted: Boosted, weights: dict[str, float], intercept: float) -> None:
        self._boosted = boosted
        names = boosted._hat_names
        self._hat_weights = np.array(
            [[weights.get(c, 0.0) if c else 0.0 for c in row] for row in names]
        )
        means = np.array(
            [[boosted.hat_means.get(c, 0.0) if c else 0.0 for c in row] for row in names]
        )
        self._hat_expected = (self._hat_weights * means).sum(axis=1)
        self._forest_weight = weights.get("forest", 0.0)
        self.offset = (
            intercept + float(self._hat_expected.sum()) + self._forest_weight * boosted.forest_mean
        )

    @property
    def names(self) -> tuple[str, ...]:
        return self._boosted.names

    def __call__(self, x: dict[str, float]) -> tuple[dict[str, float], float]:
        push = self.batch([x])[0]
        return dict(zip(self.names, push.tolist(), strict=True)), self.offset

    def batch(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        """Contributions for each of ``rows`` (rows, :attr:`names`); add :attr:`offset` for the
        log-odds."""
        return self.contributions(self._boosted.matrix(rows))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """:meth:`batch` for a matrix ``x`` with columns in :attr:`names` order."""
        k, past = hats(x)
        w = self._hat_weights
        features = np.arange(x.shape[1])[None, :]
        push = w[features, k] * (1.0 - past) + w[features, k + 1] * past - self._hat_expected
        if self._forest_weight:
            push += self._forest_weight * self._boosted.saabas(self._boosted.leaves(x))
        return push


def hats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`model_state.basis._knot` for every value of ``x``: knot index and how far past it."""
    z = np.log1p(np.maximum(x, 0.0))
    beyond = z >= LOG_KNOTS
    k = np.where(beyond, LOG_KNOTS, np.floor(z)).astype(np.int64)
    return k, np.where(beyond, 0.0, z - k)


def _saabas(
    nodes: Nodes, roots: np.ndarray, features: int, source: list[int]
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Per leaf, what reaching it adds to each feature (a sparse matrix over all nodes), and each
    tree's expected value (its root's count-weighted mean). A split on column ``c`` counts for
    feature ``source[c]``."""
    ends = [*roots.tolist()[1:], len(nodes["value"])]
    rows: list[int] = []
    cols: list[int] = []
    data: list[float] = []
    root_means = []
    for root, end in zip(roots.tolist(), ends, strict=True):
        own = slice(root, end)
        leaf = nodes["left"][own] == np.arange(root, end)
        tree = (
            tuple(nodes["feature"][own].tolist()),
            tuple(nodes["threshold"][own].tolist()),
            tuple(np.where(leaf, -1, nodes["left"][own] - root).tolist()),
            tuple(np.where(leaf, -1, nodes["right"][own] - root).tolist()),
            tuple(nodes["value"][own].tolist()),
        )
        counts = tuple(nodes["count"][own].tolist())
        paths, mean = _leaf_paths(tree, counts)
        root_means.append(mean)
        for node, path in paths.items():
            for f, delta in path:
                rows.append(root + node)
                cols.append(source[f])
                data.append(delta)
    shape = (len(nodes["value"]), features)
    return sp.csr_matrix((data, (rows, cols)), shape=shape), np.array(root_means)
