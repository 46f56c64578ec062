"""The handbook's baselines as the evaluation runs them: fitted at go-live and on the weekly
retrain schedule, on the same training set as the online model, scoring until their next fit.

Offline only (:mod:`model_state.offline.evaluate`); the features and models themselves are
:mod:`model_state.offline.handbook_reference`'s.
"""

from __future__ import annotations

import numpy as np

from features.catalog import DAY
from model_state.offline import handbook_reference, train
from model_state.offline.eval_stream import Replayed, usable

RANDOM_FOREST = "RF (handbook features)"
LOGISTIC = "LR (handbook features)"


def reference_scores(
    replayed: Replayed,
    test: np.ndarray,
    go_live: float,
    delay: float,
    retrain_every: float | None,
    seed: int,
    *,
    window_delay: float = 7 * DAY,
) -> dict[str, np.ndarray]:
    """The handbook's random forest and logistic regression on its own 15 features, fitted at
    go-live and every ``retrain_every`` seconds after on the training set, each scoring the
    payments until the next fit. Their terminal risk covers the handbook's windows
    (``window_delay`` before the payment) and counts a fraud once it was reported."""
    known = np.where(replayed.verdict == 1, replayed.reported_at, np.inf)
    x = handbook_reference.handbook_features(
        replayed.event_time,
        replayed.card,
        replayed.terminal,
        replayed.features[:, Replayed.column("amount_eur")],
        replayed.is_fraud,
        delay_days=window_delay / DAY,
        known_at=known,
    )
    out = {RANDOM_FOREST: np.zeros(len(replayed)), LOGISTIC: np.zeros(len(replayed))}
    fits = {
        RANDOM_FOREST: handbook_reference.fit_random_forest,
        LOGISTIC: handbook_reference.fit_logistic_regression,
    }
    first = float(replayed.event_time.min())
    times = replayed.event_time[test]
    end = float(times.max()) + 1.0 if len(times) else go_live
    at = go_live
    while at < end:
        until = at + retrain_every if retrain_every else end
        scoring = test[(times >= at) & (times < until)]
        rows, y = usable(replayed, at, delay)
        keep = train.training_mask(
            replayed.event_time[rows], y, first=first, now=at, maturity=delay
        )
        rows, y = rows[keep], y[keep]
        if len(scoring) and 0 < y.sum() < len(y):
            for name, fit in fits.items():
                out[name][scoring] = fit(x[rows], y, seed).predict_proba(x[scoring])[:, 1]
        at = until
    return out
