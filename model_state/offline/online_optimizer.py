"""What the ``boosted`` family learns online with: its optimizer, chosen by measurement.

The pre-trained and retrained versions carry it
(:func:`model_state.offline.train.new_boosted_model`), and the flow's learner goes on with the
optimizer its version carries. Kept apart from the training code so that the evaluation's cached
fits (:mod:`model_state.offline.evaluate`) stay valid when it changes: the evaluation gives every
fitted model this optimizer, as the training would.

>>> type(online_optimizer("adagrad:0.05")).__name__, online_optimizer("sgd:0.01").learning_rate
('AdaGrad', 0.01)
"""

from __future__ import annotations

import copy
from typing import Any

from river import optim

BOOSTED_ONLINE = "sgd:0.0003"
"""Every weight moves by SGD 0.0003 a label (issue 22's measurement: README, "The model"). It
barely learns a new pattern (one fraud label moves the pattern's log-odds by 0.015, a legitimate
payment's by 0.013: ``benchmarks/drift_cause.py``); the stronger step measured for issue 22 item
4 (``adagrad:0.05`` with the forest's weight held, :data:`model_state.learner.HELD_COLUMNS`)
caught the pattern sooner on some streams but cost AP elsewhere in the first test weeks, so it
is not shipped (README, "Evaluation")."""

ONLINE_OPTIMIZERS = ("sgd", "adagrad", "adam")


def online_optimizer(spec: str) -> optim.base.Optimizer:
    """An optimizer from ``"<name>:<learning rate>"`` (``sgd``, ``adagrad`` or ``adam``), e.g.
    ``"adagrad:0.05"``: what a model learns online with (:func:`with_online_optimizer`)."""
    name, _, rate = spec.partition(":")
    try:
        lr = float(rate)
    except ValueError:
        lr = float("nan")
    if name not in ONLINE_OPTIMIZERS or not lr > 0:
        raise ValueError(
            f"online optimizer {spec!r}: expected <name>:<learning rate> with a name among "
            f"{', '.join(ONLINE_OPTIMIZERS)} and a rate > 0, e.g. adagrad:0.05"
        )
    return {"sgd": optim.SGD, "adagrad": optim.AdaGrad, "adam": optim.Adam}[name](lr)


def with_online_optimizer(model: Any, spec: str) -> Any:
    """A copy of ``model`` (a River pipeline ending in a logistic regression) that learns
    online with ``spec`` (:func:`online_optimizer`); its weights are kept, the optimizer starts
    afresh. The frozen expansion is shared, not copied."""
    expansion = next(iter(model.steps.values()))
    memo = {id(expansion): expansion} if len(model.steps) > 1 else {}
    clone = copy.deepcopy(model, memo)
    last = list(clone.steps.values())[-1]
    last.optimizer = online_optimizer(spec)
    return clone
