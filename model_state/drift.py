"""Drift: how far the payments scored now are from those a model version was trained on.

The measure is the **population stability index** (PSI) of the fraud probability and of a few
features (:data:`DRIFT_FEATURES`), each against the distribution recorded with the model version
when it was trained (its metadata's ``drift_reference``, built by :func:`reference`).

**Bins.** For each subject the reference holds ``edges``, inner cut points, and ``shares``, the
share of the training values in each of the ``len(edges) + 1`` bins. The edges are quantiles of
the training values at 1/bins, 2/bins, ... taken as training values themselves (NumPy's
``inverted_cdf``), deduplicated (a discrete feature such as a count repeats quantiles), and
without the training maximum (no bin above it would hold a training value). Bins are
right-closed: bin ``i`` holds ``edges[i-1] < v <= edges[i]``, the first everything up to
``edges[0]``, the last everything above ``edges[-1]``; :func:`bin_of` (``np.searchsorted`` with
``side="left"``) is the one place that says so. So every bin holds at least one training value
(``edges[i]`` itself, or the maximum for the last), and values outside the training range fall
into the first or last bin, as the standard PSI bins them.

A feature that was constant in training gets no edges: one bin, share 1, and a PSI of 0 whatever
comes. A constant has no distribution to compare with; a watch on such a feature needs a range
check, not a PSI.

**PSI** (:func:`psi`): ``sum((a - e) * ln(a / e))`` over the bins, ``e`` the reference's share
and ``a`` the window's. Each term is >= 0 (``a - e`` and ``ln(a / e)`` have the same sign), so
the PSI is >= 0 and 0 only when the shares are equal; it is symmetric in ``a`` and ``e`` (it is
the sum of the two Kullback-Leibler divergences). Usual reading: below 0.1 stable, 0.1 to 0.25
a moderate shift, above 0.25 a large one.

**The window** (:class:`DriftMonitor`): the last ``window`` payments scored, as bin indices in a
ring buffer of fixed size with a count per bin, so each batch costs O(batch) NumPy work.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

import numpy as np

from features.catalog import FEATURE_NAMES

SCORE: Final = "fraud_probability"
"""The subject name of the model's fraud probability."""

DRIFT_FEATURES: Final[tuple[str, ...]] = (
    "amount_eur",
    "card_count_24h",
    "card_amount_sum_24h",
    "card_amount_to_mean_30d",
    "card_seconds_since_prev",
    "terminal_count_1d",
    "hour_of_day",
)
"""The features watched besides the score."""

_UNKNOWN = sorted(set(DRIFT_FEATURES) - set(FEATURE_NAMES))
if _UNKNOWN:
    raise ValueError(
        f"model_state.drift: DRIFT_FEATURES names {_UNKNOWN}, which are not in "
        "features.catalog.FEATURE_NAMES; expected catalogue feature names"
    )

Reference: TypeAlias = dict[str, dict[str, list[float]]]
"""Per subject, ``{"edges": [...], "shares": [...]}``: JSON-able, it goes into model metadata."""

DEFAULT_BINS: Final = 10
DEFAULT_WINDOW: Final = 10_000
DEFAULT_MIN_PAYMENTS: Final = 1_000
DEFAULT_FLOOR: Final = 1e-4
_SHARES_TOLERANCE: Final = 1e-6


def bin_of(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bin of each of ``values``: right-closed bins, ``i`` where
    ``edges[i-1] < v <= edges[i]`` (0 up to ``edges[0]``, ``len(edges)`` above the last).

    >>> bin_of(np.array([1.0, 3.0]), np.array([0.0, 1.0, 2.0, 3.0, 4.0])).tolist()
    [0, 0, 1, 1, 2]
    """
    return np.searchsorted(edges, values, side="left")


def bins_of(values: np.ndarray, bins: int = DEFAULT_BINS) -> dict[str, list[float]]:
    """Edges and shares of ``values`` (finite, at least one) in up to ``bins`` bins (see the
    module docstring).

    >>> bins_of(np.array([0.0, 0.0, 0.0, 1.0, 2.0]), bins=4)
    {'edges': [0.0, 1.0], 'shares': [0.6, 0.2, 0.2]}
    >>> bins_of(np.array([5.0, 5.0]))
    {'edges': [], 'shares': [1.0]}
    """
    quantiles = np.quantile(values, np.arange(1, bins) / bins, method="inverted_cdf")
    edges = np.unique(quantiles)
    edges = edges[edges < values.max()]
    counts = np.bincount(bin_of(edges, values), minlength=len(edges) + 1)
    return {"edges": edges.tolist(), "shares": (counts / len(values)).tolist()}


def reference(
    features: np.ndarray, probabilities: np.ndarray, bins: int = DEFAULT_BINS
) -> Reference:
    """The drift reference of a training set: bins of :data:`SCORE` (``probabilities``) and of
    each of :data:`DRIFT_FEATURES` (columns of ``features``, rows x FEATURE_NAMES).

    Every value must be finite: a reference is stored as JSON, which has no NaN.
    """
    features = np.asarray(features, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    _check_batch(features, probabilities, where="drift reference")
    if len(probabilities) == 0:
        raise ValueError("drift reference: no training rows given; expected at least one")
    if bins < 1:
        raise ValueError(f"drift reference: bins must be >= 1; got {bins}")
    subjects = {SCORE: probabilities} | {
        name: features[:, FEATURE_NAMES.index(name)] for name in DRIFT_FEATURES
    }
    out: Reference = {}
    for subject, values in subjects.items():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise ValueError(
                f"drift reference: {bad} of {len(values)} training values of {subject} are not "
                "finite; expected finite numbers"
            )
        out[subject] = bins_of(values, bins)
    return out


def psi(
    expected_shares: Sequence[float] | np.ndarray,
    actual_counts: Sequence[float] | np.ndarray,
    floor: float = DEFAULT_FLOOR,
) -> float:
    """Population stability index of ``actual_counts`` (payments per bin) against
    ``expected_shares`` (the reference's share per bin, same bins).

    ``sum((a - e) * ln(a / e))``, ``a`` the actual shares (counts over their total). A bin with
    no payment would make the logarithm infinite, so both shares are raised to at least
    ``floor`` first (not renormalised afterwards): a bin empty on one side adds about
    ``s * ln(s / floor)`` for share ``s`` on the other, not infinity. Every term stays >= 0.

    >>> psi([0.5, 0.5], [50, 50])
    0.0
    >>> round(psi([0.5, 0.5], [90, 10]), 4)
    0.8789
    """
    e = np.asarray(expected_shares, dtype=np.float64)
    c = np.asarray(actual_counts, dtype=np.float64)
    if e.ndim != 1 or e.shape != c.shape:
        raise ValueError(
            f"psi: expected shares of shape {e.shape} and actual counts of shape {c.shape}; "
            "expected two 1-D arrays of the same length"
        )
    if not floor > 0:
        raise ValueError(f"psi: floor must be > 0; got {floor}")
    if (c < 0).any():
        raise ValueError(f"psi: negative actual counts {c[c < 0].tolist()}; expected counts")
    total = c.sum()
    if not total > 0:
        raise ValueError("psi: the actual counts add up to 0; expected at least one payment")
    a = np.maximum(c / total, floor)
    e = np.maximum(e, floor)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftMonitor:
    """The PSI of each subject of a reference over a sliding window of the last ``window``
    payments.

    Watches the subjects of ``reference`` it can compute: :data:`SCORE` and catalogue features
    (others are skipped; an empty reference, from a version trained before drift was recorded,
    watches nothing). :meth:`values` stays empty until ``min_payments`` payments have been
    observed, so a fresh process does not alarm on its first few payments.

    Cost (one core, window 10,000, the 8 subjects of :func:`reference`, batches of 500):
    :meth:`observe` about 0.16 µs per payment (81 µs a batch), :meth:`values` about 6 µs a call;
    0.17 µs per payment when the values are read after every batch, up to twice that on a busy
    machine (``benchmarks/bench_drift.py`` prints the figures).
    """

    def __init__(
        self,
        reference: Mapping[str, Mapping[str, Sequence[float]]],
        window: int = DEFAULT_WINDOW,
        *,
        min_payments: int = DEFAULT_MIN_PAYMENTS,
        floor: float = DEFAULT_FLOOR,
    ) -> None:
        if window < 1:
            raise ValueError(f"DriftMonitor: window must be >= 1 payment; got {window}")
        if min_payments < 1:
            raise ValueError(f"DriftMonitor: min_payments must be >= 1; got {min_payments}")
        if not floor > 0:
            raise ValueError(f"DriftMonitor: floor must be > 0; got {floor}")
        self.window = window
        self.min_payments = min_payments
        self.floor = floor
        names = [s for s in reference if s == SCORE or s in FEATURE_NAMES]
        self.subjects: tuple[str, ...] = tuple(names)
        self._columns = [-1 if s == SCORE else FEATURE_NAMES.index(s) for s in names]
        self._edges = [_edges(s, reference[s]) for s in names]
        shares = [_shares(s, reference[s], len(e)) for s, e in zip(names, self._edges, strict=True)]
        sizes = [len(s) for s in shares]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._bins = int(self._offsets[-1])
        self._expected = np.maximum(np.concatenate([[], *shares]), floor)
        # Global bin index per payment and subject; ``self._bins`` marks an empty slot, and its
        # count (the last cell of ``_counts``) holds the empty slots.
        self._ring = np.full((window, len(names)), self._bins, dtype=np.int64)
        self._counts = np.zeros(self._bins + 1, dtype=np.int64)
        self._counts[self._bins] = self._ring.size
        self._next = 0
        self.observed = 0
        """Payments observed since the monitor started (the window holds the last of them)."""

    @property
    def size(self) -> int:
        """Payments in the window now."""
        return min(self.observed, self.window)

    def observe(self, features: np.ndarray, probabilities: np.ndarray) -> None:
        """Add a batch: ``features`` (rows x FEATURE_NAMES) and their fraud ``probabilities``.

        Only the last ``window`` rows of a larger batch can stay in the window. A NaN falls
        into the last bin (``np.searchsorted`` sorts it last).
        """
        features = np.asarray(features, dtype=np.float64)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        _check_batch(features, probabilities, where="DriftMonitor.observe")
        rows = len(probabilities)
        if rows == 0:
            return
        keep = min(rows, self.window)
        batch = np.empty((keep, len(self.subjects)), dtype=np.int64)
        for j, (column, edges) in enumerate(zip(self._columns, self._edges, strict=True)):
            values = probabilities[-keep:] if column < 0 else features[-keep:, column]
            batch[:, j] = bin_of(edges, values) + self._offsets[j]
        slots = (self._next + np.arange(keep)) % self.window
        size = self._bins + 1
        self._counts -= np.bincount(self._ring[slots].ravel(), minlength=size)
        self._counts += np.bincount(batch.ravel(), minlength=size)
        self._ring[slots] = batch
        self._next = (self._next + keep) % self.window
        self.observed += rows

    def counts(self) -> dict[str, list[int]]:
        """Payments of the window in each bin, per subject."""
        return {
            s: self._counts[self._offsets[j] : self._offsets[j + 1]].tolist()
            for j, s in enumerate(self.subjects)
        }

    def values(self) -> dict[str, float]:
        """The PSI of each subject over the window (:func:`psi`); empty until ``min_payments``
        payments have been observed."""
        if self.observed < self.min_payments or not self.subjects:
            return {}
        actual = np.maximum(self._counts[: self._bins] / self.size, self.floor)
        terms = (actual - self._expected) * np.log(actual / self._expected)
        sums = np.add.reduceat(terms, self._offsets[:-1])
        return dict(zip(self.subjects, sums.tolist(), strict=True))


def _check_batch(features: np.ndarray, probabilities: np.ndarray, *, where: str) -> None:
    width = len(FEATURE_NAMES)
    if features.ndim != 2 or features.shape[1] != width:
        raise ValueError(
            f"{where}: features of shape {features.shape}; expected (rows, {width}), columns "
            "in features.catalog.FEATURE_NAMES order"
        )
    if probabilities.shape != (features.shape[0],):
        raise ValueError(
            f"{where}: probabilities of shape {probabilities.shape} for {features.shape[0]} "
            f"rows of features; expected ({features.shape[0]},)"
        )


def _edges(subject: str, bins: Mapping[str, Sequence[float]]) -> np.ndarray:
    if "edges" not in bins or "shares" not in bins:
        raise ValueError(
            f"drift reference for {subject}: keys {sorted(bins)}; expected 'edges' and 'shares'"
        )
    edges = np.asarray(bins["edges"], dtype=np.float64)
    if edges.ndim != 1 or not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
        raise ValueError(
            f"drift reference for {subject}: edges {edges.tolist()}; expected finite numbers in "
            "strictly increasing order"
        )
    return edges


def _shares(subject: str, bins: Mapping[str, Sequence[float]], edges: int) -> np.ndarray:
    shares = np.asarray(bins["shares"], dtype=np.float64)
    if shares.shape != (edges + 1,):
        raise ValueError(
            f"drift reference for {subject}: {shares.size} shares for {edges} edges; expected "
            f"{edges + 1}"
        )
    if (
        not np.isfinite(shares).all()
        or (shares < 0).any()
        or not abs(shares.sum() - 1.0) <= _SHARES_TOLERANCE
    ):
        raise ValueError(
            f"drift reference for {subject}: shares {shares.tolist()} add up to "
            f"{shares.sum():.9g}; expected shares >= 0 adding up to 1"
        )
    return shares
