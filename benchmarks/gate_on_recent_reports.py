"""Issue 22 item 1, frauds only: would a gate that also looks at the most recent payments, with
the frauds reported so far, have refused the retrains that cost later weeks?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gate_on_recent_reports.py \\
        --streams evaluations/handbook-streams.json --size 500 --only drawn-3 --labels frauds \\
        --out /tmp/gate-on-recent-reports

With frauds only, a payment's label is final once ``--label-delay-days`` (30) have passed, so the
gate's hold-out (the most recent mature labels) is payments 30 to 37 days old: on drawn-3 it
accepted a retrain that ranked those better and the next weeks worse (README, "Issue 22's
targets"). The payments of the last days are ranked by the flow already (their live scores),
and some of their frauds are reported; the rest of them are mostly legitimate.

Runs ``python -m model_state.evaluate`` with its arguments unchanged and, at every weekly gate,
prints one ``recent check`` line per window (the last 7 and 14 days before the gate): the
average precision of the champion as the flow ranked those payments (its live scores) and of
the version the retrain would publish (fitted on every mature row: none of these payments),
with the frauds reported by the gate's time as positives and every other payment as negative,
the difference, and its standard error (:func:`model_state.offline.gate.ap_difference_se`). It
changes no verdict: the evaluation's own gate lines and figures follow as usual.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from features.catalog import DAY, FEATURE_NAMES
from model_state.offline import evaluate, gate
from model_state.scorer import Scorer

WINDOWS_DAYS = (7, 14)
_gate = evaluate.Retrainer.__call__


def _checked(
    self: evaluate.Retrainer, now: datetime, champion: Any, scores: np.ndarray, scored: np.ndarray
) -> Any:
    at = now.timestamp()
    validation = self.validation(at)
    replayed = self._replayed
    day = (at - float(replayed.event_time.min())) / DAY
    if validation.average_precision is not None:
        published = self.fitted(at, champion.version, validation.metrics)
        scorer = Scorer(
            published.model, published.version, review=1.0, decline=1.0,
            positive_weight=published.metadata.positive_weight,
        )  # fmt: skip
        for days in WINDOWS_DAYS:
            rows = np.flatnonzero(
                (replayed.event_time >= at - days * DAY) & (replayed.event_time < at) & scored
            )
            reported = (replayed.verdict[rows] == 1) & (replayed.reported_at[rows] <= at)
            if not reported.any() or reported.all():
                print(f"\nrecent check, day {day:.0f}, last {days} days: no frauds reported yet")
                continue
            live = scores[rows]
            batch = [dict(zip(FEATURE_NAMES, f, strict=True)) for f in replayed.features[rows]]
            theirs = np.array([s.probability for s in scorer.score_batch(batch)])
            champion_ap = float(average_precision_score(reported, live))
            challenger_ap = float(average_precision_score(reported, theirs))
            se = gate.ap_difference_se(reported, theirs, live)
            truth_gain = float(
                average_precision_score(replayed.is_fraud[rows], theirs)
                - average_precision_score(replayed.is_fraud[rows], live)
            )
            print(  # on a line of its own: the progress bars end theirs with a carriage return
                f"\nrecent check, day {day:.0f}, last {days} days: {len(rows):,} payments, "
                f"{int(reported.sum())} frauds reported (of {int(replayed.is_fraud[rows].sum())}); "
                f"champion {champion.version} AP {champion_ap:.4f} as the flow ranked them, the "
                f"retrain's version {challenger_ap:.4f}: gain {challenger_ap - champion_ap:+.4f}, "
                f"standard error {se:.4f} (gain on every fraud, reported or not: "
                f"{truth_gain:+.4f})",
                flush=True,
            )
    return _gate(self, now, champion, scores, scored)


if __name__ == "__main__":
    evaluate.Retrainer.__call__ = _checked  # type: ignore[method-assign]
    evaluate.main(sys.argv[1:])
