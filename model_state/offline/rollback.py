"""A retrain judged again after it went live: on the payments it scored, beside the champion it
replaced, and rolled back if it ranked them worse.

The gate (:mod:`model_state.offline.gate`) judges a challenger on the most recent mature labels,
a week its forest was not fitted on, before it goes live. At full scale a retrain accepted by
1.1 standard errors then ranked the next two weeks 0.03 AP below the frozen model (issue 22,
README "Retraining that never makes things worse"): the hold-out was not like the weeks it
scored. Here the retrain is judged once more, on the very payments it scored live:

- when a retrain goes live, a :class:`Watch` begins: the champion it replaced (``previous``) keeps
  scoring every payment beside it (in the shadow; it no longer learns), from ``since`` on;
- the watch is decided **once**, at the first check at which the watched payments whose labels
  are final (made at least the label delay ago: the same maturity as the gate's hold-out) hold
  :data:`DEFAULT_MIN_FRAUDS` frauds and a legitimate payment: the retrain is **rolled back** when
  its average precision on them is below the previous champion's by more than
  :data:`DEFAULT_MIN_LOSS` standard errors of the paired difference
  (:func:`~model_state.offline.gate.ap_difference_se`), and kept otherwise;
- a later retrain that goes live before the watch is decided **supersedes** it: the watch ends
  undecided (nothing is rolled back without its own evidence, and the live retrain is no longer
  the one watched).

Why these numbers (chosen before any run): 1 standard error is the gate's own bar (``--min-gain
1``), the same evidence the other way. With F frauds one fraud moves AP by at most 1/F: at 100
a single fraud cannot move it by more than 0.01, a third of the 0.03 a week the accepted retrain
cost at full scale, where a day's payments hold about 85 frauds (the gate's hold-outs: 583 to
636 a week). Deciding once, at a fixed amount of evidence, is one test, not a test repeated
every hour until it happens to fire. The earliest decision comes one label delay after the
retrain went live (7 days with every payment labelled, 30 with frauds only), plus the time to
collect the frauds: a rollback cannot help the week right after a retrain, only the weeks after.

Pure logic: :func:`decide` is a function of the watch and the labelled scores it is given.

>>> w = Watch(retrained="v3", previous="v2.000134", since=0.0)
>>> truth = np.array([True, False, False, False] * 50)
>>> w2 = decide(w, truth, retrained=np.where(truth, 0.1, 0.9), previous=np.where(truth, 0.9, 0.1),
...             min_frauds=40)
>>> w2.verdict.roll_back, decide(w2, truth, truth * 1.0, truth * 0.0, min_frauds=40) is w2
(True, True)
"""

from __future__ import annotations

import msgspec
import numpy as np
from sklearn.metrics import average_precision_score

from model_state.offline.gate import ap_difference_se

DEFAULT_MIN_FRAUDS = 100
"""Frauds among the watched payments with final labels before the watch is decided."""
DEFAULT_MIN_LOSS = 1.0
"""The retrain is rolled back when it ranks them worse by this many standard errors."""
REASON_CHARS = 400
"""A rollback's reason is at most this long (it goes into the version's metadata and logs)."""


class RollbackVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """A live retrain against the champion it replaced, on the payments both scored."""

    retrained: str
    previous: str
    retrained_ap: float
    previous_ap: float
    standard_error: float  # of the AP difference (paired bootstrap)
    rows: int
    frauds: int
    min_loss: float

    @property
    def roll_back(self) -> bool:
        return self.retrained_ap < self.previous_ap - self.min_loss * self.standard_error

    def reason(self, *, shadow: bool = False) -> str:
        """Why it was rolled back or kept (``shadow``: a retrain shadowing before it goes live,
        not promoted or promoted), bounded to :data:`REASON_CHARS`."""
        outcome = (
            ("not promoted" if self.roll_back else "promoted")
            if shadow
            else ("rolled back" if self.roll_back else "kept")
        )
        text = (
            f"{outcome}: on {self.rows} payments it scored "
            f"{'in the shadow' if shadow else 'live'} whose labels are final ({self.frauds} "
            f"frauds), retrain "
            f"{self.retrained} AP {self.retrained_ap:.4f}, previous champion {self.previous} "
            f"{self.previous_ap:.4f} (difference {self.retrained_ap - self.previous_ap:+.4f}; "
            f"judged worse below -{self.min_loss:g} standard errors, "
            f"-{self.min_loss * self.standard_error:.4f})"
        )
        return text[:REASON_CHARS]


class Watch(msgspec.Struct, frozen=True, kw_only=True):
    """One live retrain watched beside the champion it replaced; ``verdict`` once decided."""

    retrained: str
    previous: str
    since: float  # POSIX seconds: when the retrain went live
    verdict: RollbackVerdict | None = None

    @property
    def decided(self) -> bool:
        return self.verdict is not None


def final_labels(
    event_time: np.ndarray,
    reported_at: np.ndarray,
    is_fraud: np.ndarray,
    rows: np.ndarray,
    now: float,
    maturity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The watched ``rows`` whose labels are final at ``now`` and those labels: a payment's
    label is final ``maturity`` seconds after it (the label delay, as the gate's mature
    hold-out), a fraud if reported by ``now``, legitimate otherwise (an implicit negative).
    Nothing reported after ``now`` is used."""
    rows = np.asarray(rows, dtype=np.int64)
    rows = rows[np.asarray(event_time)[rows] + maturity <= now]
    truth = (np.asarray(is_fraud)[rows] == 1) & (np.asarray(reported_at)[rows] <= now)
    return rows, truth


def decide(
    watch: Watch,
    truth: np.ndarray,
    retrained: np.ndarray,
    previous: np.ndarray,
    *,
    min_frauds: int = DEFAULT_MIN_FRAUDS,
    min_loss: float = DEFAULT_MIN_LOSS,
) -> Watch:
    """``watch`` with its verdict, given the watched payments whose labels are final now
    (``truth``) and both models' scores of them; unchanged when already decided (at most one
    verdict a retrain) or when they hold fewer than ``min_frauds`` frauds or no legitimate
    payment (no rollback without evidence). Deterministic: the bootstrap has a fixed seed."""
    if watch.decided:
        return watch
    if min_frauds < 1 or min_loss < 0:
        raise ValueError(
            f"rollback: min_frauds must be >= 1 and min_loss >= 0; got {min_frauds}, {min_loss}"
        )
    truth = np.asarray(truth, dtype=bool)
    mine = np.asarray(retrained, dtype=np.float64)
    theirs = np.asarray(previous, dtype=np.float64)
    if not len(truth) == len(mine) == len(theirs):
        raise ValueError(
            f"rollback: {len(truth)} labels, {len(mine)} scores of the retrain and "
            f"{len(theirs)} of the previous champion; expected as many of each"
        )
    frauds = int(truth.sum())
    if frauds < min_frauds or frauds == len(truth):
        return watch
    verdict = RollbackVerdict(
        retrained=watch.retrained,
        previous=watch.previous,
        retrained_ap=float(average_precision_score(truth, mine)),
        previous_ap=float(average_precision_score(truth, theirs)),
        standard_error=ap_difference_se(truth, mine, theirs),
        rows=len(truth),
        frauds=frauds,
        min_loss=min_loss,
    )
    return msgspec.structs.replace(watch, verdict=verdict)
