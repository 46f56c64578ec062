"""Labels as the learner takes them: explicit, implicit or a correction; legitimate ones sampled.

Banks report frauds (chargebacks, disputes, analysts' verdicts) days to weeks late and almost
never report "legitimate". So a label reaches the learner in one of three kinds
(:class:`LabelKind`):

``explicit``
    A label message: a fraud report, or (rarely) a verdict of legitimate.
``implicit``
    A payment nobody reported as fraud within the label delay (``implicit_negative_days``) is
    taken as legitimate, as a bank takes it, and learned once as such.
``correction``
    A fraud reported *after* its payment was learned as an implicit negative: learned as a
    fraud and counted apart. It is not a contradiction: the implicit negative was a
    presumption, the report is the fact.

**Negative downsampling** (He et al. 2014, "Practical lessons from predicting clicks on ads at
Facebook", section 6.2): a legitimate label (explicit or implicit) is learned only when
:func:`sampled` keeps its transaction, at ``rate``, and then with weight ``1 / rate``, so that
what is learned has, in expectation, the weight of every legitimate label: the gradient of the
weighted sample is an unbiased estimate of the full one. (He et al. train on the sample unweighted
and re-calibrate the prediction, ``q = p / (p + (1 - p) / rate)``; weighting the loss instead is
the same correction applied while learning, which keeps the scorer's probabilities as they are.)
Every fraud and every correction is learned. Whether a transaction is kept is a pure function of
its id (:func:`sampled`): a replay after a crash keeps the same ones, and every process agrees.

>>> sampled("t-1", 1.0), sampled("t-1", 0.0)
(True, False)
>>> kept = sum(sampled(f"tx-{i}", 0.25) for i in range(100_000))
>>> 24_000 < kept < 26_000
True
>>> learn_weight(is_fraud=False, transaction_id="tx-0", rate=0.25)  # not kept: not learned
>>> learn_weight(is_fraud=False, transaction_id="tx-3", rate=0.25)  # kept: it stands for 4
4.0
>>> learn_weight(is_fraud=True, transaction_id="tx-3", rate=0.25)
1.0
"""

from __future__ import annotations

import hashlib
import math
from enum import StrEnum

__all__ = ["LabelKind", "learn_weight", "sampled"]

_SCALE = float(1 << 64)


class LabelKind(StrEnum):
    EXPLICIT = "explicit"
    IMPLICIT = "implicit"
    CORRECTION = "correction"


def _unit(transaction_id: str) -> float:
    """A number in [0, 1) fixed by the id: the first 8 bytes of its BLAKE2b digest."""
    digest = hashlib.blake2b(transaction_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def sampled(transaction_id: str, rate: float) -> bool:
    """Whether negative downsampling at ``rate`` (in [0, 1]) keeps ``transaction_id``'s
    legitimate label. Deterministic; the kept ids at a lower rate are a subset of those at a
    higher one."""
    if not 0.0 <= rate <= 1.0 or math.isnan(rate):
        raise ValueError(f"sampling rate must lie in [0, 1]; got {rate}")
    return rate >= 1.0 or _unit(transaction_id) < rate


def learn_weight(*, is_fraud: bool, transaction_id: str, rate: float) -> float | None:
    """The sampling weight a label is learned with, or None when it is not learned: 1 for a
    fraud (a correction is a fraud), ``1 / rate`` for a legitimate label :func:`sampled` keeps."""
    if is_fraud:
        return 1.0
    return 1.0 / rate if sampled(transaction_id, rate) else None
