"""The ``basis`` expansion: a fixed set of columns a logistic regression learns on, and what
explains its scores.

:class:`Basis` turns the catalogue's 36 features into

- hat functions of every feature on a log scale (a piecewise-linear curve per feature, so both
  tiny and huge amounts can raise the score), and
- the leaves and log-odds of a small gradient-boosted forest (``FOREST_TREES`` trees of
  ``FOREST_LEAVES`` leaves, fitted once with scikit-learn and frozen as plain tuples), which
  bring the interactions a linear model misses.

Why 50 trees of 8 leaves: with their leaves as columns, larger forests ranked worse on held-out
streams (100 x 16 and 200 x 8: average precision about 0.74 to 0.81 against 0.77 to 0.83 for
50 x 8 on seeds 101, 202, 303), the weights over their many leaves fitting the few frauds too
closely; 30 x 8, 50 x 6 and 80 x 6 ranked within 0.005 of it.

Nothing in a :class:`Basis` learns after :func:`model_state.offline.forests.fit_basis`; the
logistic regression on top of it does (the ``basis`` family of :mod:`model_state.offline.train`).
:class:`Explainer` splits the model's log-odds into one contribution per catalogue feature, for
reason codes (:mod:`model_state.scorer`).

Model versions pickle a :class:`Basis` by reference to this module (``model_state.basis.Basis``)
and by value as the tuple of :meth:`Basis.__getstate__`: keep both stable, or stored versions
stop loading.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from features.catalog import FEATURE_NAMES

LOG_KNOTS = 15
"""Hat functions sit at log1p(value) = 0, 1, ..., LOG_KNOTS (values up to about 3.3 million)."""
FOREST_TREES = 50
FOREST_LEAVES = 8

Tree = tuple[
    tuple[int, ...], tuple[float, ...], tuple[int, ...], tuple[int, ...], tuple[float, ...]
]
"""One tree, node by node: feature index, threshold (``<=`` goes left), left child (-1 at a
leaf), right child, value (a leaf's log-odds step)."""


def _leaf_paths(
    t: Tree, counts: tuple[int, ...]
) -> tuple[dict[int, tuple[tuple[int, float], ...]], float]:
    """Each leaf's path as (feature index, change of the expected value) per split (Saabas), and
    the tree's expected value (the count-weighted mean of its leaves)."""
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
    return paths, mean[0]


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
        paths = [_leaf_paths(t, c)[0] for t, c in zip(trees, counts, strict=True)]
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
            k, past = _knot(v)
            out[hats[k]] = 1.0 - past
            if past > 0.0:
                out[hats[k + 1]] = past
        reached = self.leaves(values)
        log_odds = self.base
        for tree, leaves, node in zip(self.trees, self._leaf_names, reached, strict=True):
            out[leaves[node]] = 1.0
            log_odds += tree[4][node]
        out["forest"] = log_odds
        return out, reached

    def leaves(self, values: list[float]) -> list[int]:
        """The leaf each tree sends ``values`` (features in ``names`` order) to."""
        reached = []
        for feature, threshold, left, right, _ in self.trees:
            node = 0
            while left[node] >= 0:
                node = left[node] if values[feature[node]] <= threshold[node] else right[node]
            reached.append(node)
        return reached

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
        # Per feature, the weight of each of its hats (knots 0 .. LOG_KNOTS, and 0 past the last).
        self._hat_weights = [
            [weights.get(col, 0.0) for col in hats] + [0.0] for hats in basis._hat_names
        ]
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
        # Basis.expand's columns, each weighed as it is made rather than collected in a dict.
        basis = self._basis
        values = [x[name] for name in basis.names]
        push = list(self._start)
        for j, (v, w) in enumerate(zip(values, self._hat_weights, strict=True)):
            k, past = _knot(v)
            push[j] += w[k] * (1.0 - past) + w[k + 1] * past
        for pushes, node in zip(self._leaves, basis.leaves(values), strict=True):
            for f, amount in pushes[node]:
                push[f] += amount
        return dict(zip(basis.names, push, strict=True)), self.offset


def hat_means(x: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """The mean of every hat column ``"<feature>@<k>"`` over the rows of ``x`` (zeros left out)."""
    z = np.clip(np.log1p(np.maximum(x, 0.0)), 0.0, LOG_KNOTS)
    low = np.minimum(np.floor(z).astype(np.int64), LOG_KNOTS)
    frac = z - low
    means: dict[str, float] = {}
    for j, name in enumerate(names):
        sums = np.bincount(low[:, j], weights=1.0 - frac[:, j], minlength=LOG_KNOTS + 2)
        sums += np.bincount(low[:, j] + 1, weights=frac[:, j], minlength=LOG_KNOTS + 2)
        for k in range(LOG_KNOTS + 1):
            if sums[k] > 0:
                means[f"{name}@{k}"] = float(sums[k] / len(x))
    return means


def _knot(v: float) -> tuple[int, float]:
    """Where ``log1p(v)`` falls among the knots: the knot ``k`` at or below it and how far past
    it (0 to 1; 0 at and beyond the last knot). Values below zero count as zero."""
    z = math.log1p(v) if v > 0.0 else 0.0
    if z >= LOG_KNOTS:
        return LOG_KNOTS, 0.0
    k = int(z)
    return k, z - k
