"""The Fraud Detection Handbook's baseline features and models, as an offline reference.

Offline only: the flow never imports this module. It reproduces chapters 3.3 "Baseline feature
transformation" and 3.4 "Baseline fraud detection system" of Le Borgne et al., *Reproducible
Machine Learning for Credit Card Fraud Detection - Practical Handbook*
(``BaselineFeatureTransformation.ipynb``, ``BaselineModeling.ipynb`` and ``shared_functions.py``
of github.com/Fraud-Detection-Handbook/fraud-detection-handbook), vectorised with numpy so that it
runs on any stream of contract payments (:func:`payment_columns`), not only on
:mod:`test_data.handbook`.

The 15 features (:data:`HANDBOOK_FEATURE_NAMES`, in the handbook's ``input_features`` order):

- ``TX_AMOUNT``: the amount.
- ``TX_DURING_WEEKEND``: 1 on Saturday and Sunday, else 0.
- ``TX_DURING_NIGHT``: 1 when the hour is ``<= 6`` (00:00 to 06:59:59), as the handbook's code
  has it (its prose says "between 0pm and 6am").
- ``CUSTOMER_ID_NB_TX_{w}DAY_WINDOW`` and ``CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW`` for
  ``w`` in 1, 7, 30: count and mean amount of the card's transactions with time in
  ``(t - w days, t]``, the current one included (pandas ``rolling("{w}d")``, closed on the
  right).
- ``TERMINAL_ID_NB_TX_{w}DAY_WINDOW`` and ``TERMINAL_ID_RISK_{w}DAY_WINDOW``: count of the
  terminal's transactions with time in ``(t - delay - w days, t - delay]`` and the share of them
  that are fraud (0 when there are none). The handbook gets this window as the difference of two
  rolling windows, ``(t - delay - w, t]`` minus ``(t - delay, t]``, which is the same set.

**The terminal risk uses the true class of every transaction older than the delay**: the
handbook assumes each label is known exactly ``delay_days`` (7) after its transaction, no sooner
and no later, and none is ever missing. The live flow learns a fraud rate only from labels that
have arrived; on a stream labelled that way (:meth:`test_data.handbook.HandbookStream.stream`)
the two agree in what they may know.

Deviations from the handbook's pandas code, both at ties only:

- A window holds *every* transaction of the card (or terminal) whose time lies in it, including
  others at the very same instant as the current one; pandas' rolling windows end at the current
  row, so of tied rows only the earlier ones in its (unstable) sort order count. This makes the
  features independent of the order of the input rows.
- Calendar features come from ``event_time + utc_offset_seconds`` (default 0: UTC); the handbook
  has naive local times.

Models (chapter 3.4, ``classifiers_dictionary`` and ``fit_model_and_get_predictions``): every
model is fitted on inputs standardised by a ``StandardScaler`` fitted on the training set
(``scale=True`` is the default there), and the classifiers have scikit-learn's defaults with
``random_state=0``: ``LogisticRegression()`` (L2, C=1, lbfgs, 100 iterations) and
``RandomForestClassifier()`` (100 trees, no depth limit, ``sqrt`` features per split, bootstrap).
Here ``random_state`` is the ``seed`` argument, ``n_jobs=1`` (the handbook: ``-1``), and those
defaults are written out so that a scikit-learn upgrade does not change them silently.

>>> day = 86_400.0
>>> t = np.array([0.0, 3600.0, 7 * day + 3600.0])  # Thu 1970-01-01 00:00, 01:00; Thu 8th 01:00
>>> x = handbook_features(t, np.array([1, 1, 1]), np.array([5, 5, 5]),
...                       np.array([10.0, 30.0, 50.0]), np.array([True, False, False]))
>>> dict(zip(HANDBOOK_FEATURE_NAMES[:5], x[1, :5].tolist()))  # doctest: +NORMALIZE_WHITESPACE
{'TX_AMOUNT': 30.0, 'TX_DURING_WEEKEND': 0.0, 'TX_DURING_NIGHT': 1.0,
 'CUSTOMER_ID_NB_TX_1DAY_WINDOW': 2.0, 'CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW': 20.0}
>>> # the third one's terminal window is (t - 8 days, t - 7 days]: the first two, one a fraud
>>> float(x[2, HANDBOOK_FEATURE_NAMES.index("TERMINAL_ID_RISK_1DAY_WINDOW")])
0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from features.contract import Payment

__all__ = [
    "DAY_SECONDS",
    "HANDBOOK_FEATURE_NAMES",
    "WINDOW_DAYS",
    "PaymentColumns",
    "fit_logistic_regression",
    "fit_random_forest",
    "handbook_features",
    "payment_columns",
]

DAY_SECONDS = 86_400.0
WINDOW_DAYS: tuple[int, int, int] = (1, 7, 30)
NIGHT_LAST_HOUR = 6
_THURSDAY = 3  # 1970-01-01, weekday() with Monday = 0

HANDBOOK_FEATURE_NAMES: tuple[str, ...] = (
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *(
        name
        for w in WINDOW_DAYS
        for name in (f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW")
    ),
    *(
        name
        for w in WINDOW_DAYS
        for name in (f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW", f"TERMINAL_ID_RISK_{w}DAY_WINDOW")
    ),
)


def _column(name: str, values: npt.ArrayLike, n: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"handbook_features: {name} must be one-dimensional; got shape {array.shape}"
        )
    if n is not None and len(array) != n:
        raise ValueError(
            f"handbook_features: {name} must have one value per transaction ({n}); got {len(array)}"
        )
    return array


class _Windows:
    """Sums over ``{j : group[j] == group[i], lo[i] < time[j] <= hi[i]}`` for every row ``i``.

    Rows are sorted once by (group, time, then ``tiebreak`` columns), so that the same rows in
    any input order give bit-identical sums.
    """

    def __init__(self, group: np.ndarray, time: np.ndarray, tiebreak: Iterable[np.ndarray]) -> None:
        self.code = np.unique(group, return_inverse=True)[1].reshape(-1).astype(np.int64)
        self.time = time
        self.order = np.lexsort((*reversed(tuple(tiebreak)), time, self.code))

    def sums(
        self, lo: np.ndarray, hi: np.ndarray, values: Iterable[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Counts and the sums of each of ``values`` over every row's window ``(lo, hi]``."""
        # Rank times and bounds together (exact comparisons, any float), then search the sorted
        # (group, rank) keys.
        points, rank = np.unique(np.concatenate((self.time, lo, hi)), return_inverse=True)
        rank = rank.reshape(-1).astype(np.int64)
        n, width = len(self.time), len(points)
        key = self.code * width
        sorted_key = (key + rank[:n])[self.order]
        below = np.searchsorted(sorted_key, key + rank[n : 2 * n], side="right")
        upto = np.searchsorted(sorted_key, key + rank[2 * n :], side="right")
        totals = []
        for v in values:
            prefix = np.zeros(n + 1, dtype=np.longdouble if v.dtype.kind == "f" else np.int64)
            np.cumsum(v[self.order], out=prefix[1:])
            totals.append(np.asarray(prefix[upto] - prefix[below], dtype=np.float64))
        return (upto - below).astype(np.float64), totals


def handbook_features(
    event_time: np.ndarray,
    card: np.ndarray,
    terminal: np.ndarray,
    amount: np.ndarray,
    is_fraud: np.ndarray,
    delay_days: float = 7.0,
    *,
    utc_offset_seconds: np.ndarray | float = 0.0,
    known_at: np.ndarray | None = None,
) -> np.ndarray:
    """The handbook's 15 features for every transaction, rows in the input order.

    Parameters
    ----------
    event_time
        POSIX seconds (float).
    card, terminal
        Codes or ids (anything :func:`numpy.unique` sorts: ints or strings).
    amount
        Amounts in the major unit (EUR, not cents).
    is_fraud
        The true class of each transaction (bool or 0/1).
    delay_days
        The handbook's delay period for the terminal windows.
    utc_offset_seconds
        Added to ``event_time`` for the weekend and night features (scalar or per row).
    known_at
        When each fraud became known (POSIX seconds; ``inf``: never), or None for the
        handbook's rule that every label is known exactly ``delay_days`` after its transaction.
        Given, a fraud counts in a terminal's risk at ``t`` only if known by ``t``: a fair
        reference for a stream whose frauds are reported late or not at all. With
        ``known_at = event_time + delay`` for every fraud the two rules agree.

    Returns
    -------
    float64 array of shape ``(n, 15)``, columns :data:`HANDBOOK_FEATURE_NAMES`.
    """
    t = _column("event_time", event_time, None).astype(np.float64)
    n = len(t)
    cards = _column("card", card, n)
    terminals = _column("terminal", terminal, n)
    amounts = _column("amount", amount, n).astype(np.float64)
    fraud_raw = _column("is_fraud", is_fraud, n)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(amounts))):
        bad = "event_time" if not np.all(np.isfinite(t)) else "amount"
        row = int(np.flatnonzero(~np.isfinite(t if bad == "event_time" else amounts))[0])
        raise ValueError(f"handbook_features: {bad} must be finite; row {row} is not")
    if fraud_raw.dtype != np.bool_ and not np.isin(fraud_raw, (0, 1)).all():
        raise ValueError(
            "handbook_features: is_fraud must be bool or 0/1; got values "
            f"{np.unique(fraud_raw)[:5].tolist()}"
        )
    if not (math.isfinite(delay_days) and delay_days >= 0):
        raise ValueError(f"handbook_features: delay_days must be finite and >= 0; got {delay_days}")
    fraud = fraud_raw.astype(np.int64)
    out = np.zeros((n, len(HANDBOOK_FEATURE_NAMES)), dtype=np.float64)
    if n == 0:
        return out

    local = t + np.broadcast_to(np.asarray(utc_offset_seconds, dtype=np.float64), (n,))
    day_number = np.floor(local / DAY_SECONDS)
    hour = np.floor((local - day_number * DAY_SECONDS) / 3600.0)
    out[:, 0] = amounts
    out[:, 1] = (day_number + _THURSDAY) % 7 >= 5
    out[:, 2] = hour <= NIGHT_LAST_HOUR

    by_card = _Windows(cards, t, (amounts,))
    by_terminal = _Windows(terminals, t, (fraud,))
    delay = delay_days * DAY_SECONDS
    if known_at is not None:
        known = _column("known_at", known_at, n).astype(np.float64)
    for k, w in enumerate(WINDOW_DAYS):
        width = w * DAY_SECONDS
        count, (total,) = by_card.sums(t - width, t, (amounts,))
        out[:, 3 + 2 * k] = count
        out[:, 4 + 2 * k] = total / count  # count >= 1: the window holds the transaction itself
        count, (frauds,) = by_terminal.sums(t - delay - width, t - delay, (fraud,))
        if known_at is not None:
            frauds = _known_frauds(terminals, t, fraud.astype(bool), known, delay, width)
        out[:, 9 + 2 * k] = count
        out[:, 10 + 2 * k] = np.divide(frauds, count, out=np.zeros(n), where=count > 0)
    return out


def _known_frauds(
    terminal: np.ndarray,
    t: np.ndarray,
    fraud: np.ndarray,
    known: np.ndarray,
    delay: float,
    width: float,
) -> np.ndarray:
    """For every row ``i``: frauds ``j`` of its terminal with ``t_j`` in
    ``(t_i - delay - width, t_i - delay]`` and ``known_j <= t_i``.

    Fraud ``j`` counts for the rows of its terminal with ``t_i`` in ``[a_j, b_j)``,
    ``a_j = max(t_j + delay, known_j)`` and ``b_j = t_j + delay + width``; so the count is
    ``#{a_j <= t_i} - #{b_j <= t_i}`` over the terminal's frauds with ``a_j < b_j``. Times are
    ranked together first, so that the comparisons are exact.
    """
    n = len(t)
    code = np.unique(terminal, return_inverse=True)[1].reshape(-1).astype(np.int64)
    j = np.flatnonzero(fraud & np.isfinite(known))
    a = np.maximum(t[j] + delay, known[j])
    b = t[j] + delay + width
    live = a < b
    j, a, b = j[live], a[live], b[live]
    points, rank = np.unique(np.concatenate((t, a, b)), return_inverse=True)
    rank = rank.reshape(-1).astype(np.int64)
    width_rank = len(points)
    row_key = code * width_rank + rank[:n]
    start_key = np.sort(code[j] * width_rank + rank[n : n + len(j)])
    end_key = np.sort(code[j] * width_rank + rank[n + len(j) :])
    # within the row's terminal: starts at or before t_i, minus ends at or before t_i
    floor = code * width_rank
    started = np.searchsorted(start_key, row_key, "right") - np.searchsorted(
        start_key, floor, "left"
    )
    ended = np.searchsorted(end_key, row_key, "right") - np.searchsorted(end_key, floor, "left")
    return (started - ended).astype(np.float64)


class PaymentColumns(NamedTuple):
    """Contract payments as the columns :func:`handbook_features` takes."""

    event_time: np.ndarray  # float64 POSIX seconds
    card: np.ndarray  # str ids
    terminal: np.ndarray  # str ids
    amount: np.ndarray  # float64, each payment's major unit
    is_fraud: np.ndarray  # bool
    utc_offset_seconds: np.ndarray  # float64, each event time's own offset
    transaction_id: list[str]


def payment_columns(
    payments: Iterable[Payment], truth: Mapping[str, str | bool | None]
) -> PaymentColumns:
    """Columns of ``payments`` for :func:`handbook_features`.

    ``truth`` maps a transaction id to its scenario name or ``True`` for fraud, ``None`` or
    ``False`` (or no entry) for a legitimate one. Amounts are not converted between currencies.
    """
    rows = [
        (
            p.event_timestamp,
            p.card_id,
            p.terminal_id,
            p.amount,
            truth.get(p.transaction_id) not in (None, False),
            p.event_time.utcoffset().total_seconds(),  # type: ignore[union-attr]
            p.transaction_id,
        )
        for p in payments
    ]
    t, c, term, a, f, off, tid = zip(*rows, strict=True) if rows else ((),) * 7
    return PaymentColumns(
        event_time=np.asarray(t, dtype=np.float64),
        card=np.asarray(c, dtype=str),
        terminal=np.asarray(term, dtype=str),
        amount=np.asarray(a, dtype=np.float64),
        is_fraud=np.asarray(f, dtype=bool),
        utc_offset_seconds=np.asarray(off, dtype=np.float64),
        transaction_id=list(tid),
    )


def _check_training_set(who: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y).astype(int)
    if xs.ndim != 2 or ys.ndim != 1 or len(xs) != len(ys):
        raise ValueError(
            f"{who}: expected x of shape (n, features) and y of shape (n,); "
            f"got {xs.shape} and {ys.shape}"
        )
    classes = np.unique(ys).tolist()
    if classes != [0, 1]:
        raise ValueError(f"{who}: y must hold both classes 0 and 1; got classes {classes}")
    return xs, ys


def fit_random_forest(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Pipeline:
    """The handbook's random forest (chapter 3.4) on standardised inputs, fitted on ``x, y``."""
    xs, ys = _check_training_set("fit_random_forest", x, y)
    model = make_pipeline(
        StandardScaler(),
        RandomForestClassifier(
            n_estimators=100,
            criterion="gini",
            max_depth=None,
            min_samples_split=2,
            min_samples_leaf=1,
            max_features="sqrt",
            bootstrap=True,
            random_state=seed,
            n_jobs=1,
        ),
    )
    return model.fit(xs, ys)


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Pipeline:
    """The handbook's logistic regression (chapter 3.4) on standardised inputs, fitted to
    ``x, y``."""
    xs, ys = _check_training_set("fit_logistic_regression", x, y)
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=1.0, solver="lbfgs", max_iter=100, random_state=seed),
    )
    return model.fit(xs, ys)
