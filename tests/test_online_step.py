"""The ``boosted`` family's online step (issue 22 item 4): the measured stronger step (AdaGrad
0.05, the forest's weight held) learns a new pattern from a few hundred frauds where the shipped
one does not, and both stay deterministic and replayable (a learner snapshotted or resumed from a
published version goes on exactly as one that never stopped)."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.learner import RESIDUAL_COLUMN, OnlineLearner, residual_bar
from model_state.offline.online_optimizer import BOOSTED_ONLINE, Ramp, online_optimizer
from model_state.offline.train import new_boosted_model
from storage.labels import LabelledPayment
from tests.builders import TEST_KEY, model_metadata
from tests.test_boosted import BOOSTED, X, Y

NOW = datetime(2026, 3, 2, tzinfo=UTC)
STRONGER = "adagrad:0.05"  # measured for issue 22 item 4 with the forest's weight held
RAMPED = "adagrad:0.05:ramp=20"  # its rate grown over the first 20 labels
NEW = 1  # the column the new pattern shows in (synthetic(): lognormal around 0.46, or 0)


def labelled(i: int, row: np.ndarray, fraud: bool) -> LabelledPayment:
    return LabelledPayment(
        transaction_id=f"t{i}",
        card_id="c",
        merchant_id="m",
        terminal_id="p",
        payment_time=float(i),
        reported_at=float(i),
        is_fraud=fraud,
        features=dict(zip(FEATURE_NAMES, row.tolist(), strict=True)),
        scored_by="v00001",
    )


def pattern_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Legitimate-looking payments but for one feature at a value no training payment had."""
    rows = X[~Y][rng.integers(0, int((~Y).sum()), n)].copy()
    rows[:, NEW] = rng.uniform(1_000.0, 3_000.0, n)  # log1p: knots 6 to 8, 5 sd above the rest
    return rows


def start(tmp_path: Path, optimizer: str) -> artifact.ModelArtifact:
    model = new_boosted_model(BOOSTED, optimizer)
    return artifact.save(model, model_metadata(), tmp_path, key=TEST_KEY)


def pattern_ap(optimizer: str, tmp_path: Path, frauds: int, *, hold: bool) -> tuple[float, float]:
    """The new pattern's AP against legitimate payments, before and after ``frauds`` of its
    frauds were learned among 20 legitimate labels each."""
    rng = np.random.default_rng(7)
    old = X[~Y][rng.integers(0, int((~Y).sum()), 20 * frauds)]
    new = pattern_rows(rng, frauds)
    learner = OnlineLearner(start(tmp_path, optimizer), publish_every=10**9, hold=hold)
    held_new, held_old = pattern_rows(rng, 200), X[~Y][-1000:]
    test = np.vstack([held_new, held_old])
    truth = np.r_[np.ones(len(held_new)), np.zeros(len(held_old))]

    def ap() -> float:
        p = [learner.model.predict_proba_one(dict(zip(FEATURE_NAMES, r, strict=True)))[True]
             for r in test.tolist()]  # fmt: skip
        return float(average_precision_score(truth, p))

    before = ap()
    for i in range(frauds):
        for j in range(20):
            learner.learn(labelled(i * 21 + j, old[i * 20 + j], False))
        learner.learn(labelled(i * 21 + 20, new[i], True))
    return before, ap()


def test_the_stronger_step_learns_a_new_pattern_the_shipped_one_does_not(tmp_path: Path) -> None:
    before, after = pattern_ap(STRONGER, tmp_path / "new", 150, hold=True)
    assert before < 0.5  # the forest never saw it
    assert after > 0.9, f"{STRONGER}: AP {before:.3f} -> {after:.3f}"
    old_before, old_after = pattern_ap(BOOSTED_ONLINE, tmp_path / "old", 150, hold=False)
    assert old_before == pytest.approx(before)
    assert old_after < 0.5, f"{BOOSTED_ONLINE}: AP {old_before:.3f} -> {old_after:.3f}"


def weights_of(learner: OnlineLearner) -> tuple[dict[str, float], float, bytes]:
    linear = learner.model["LogisticRegression"]
    return dict(linear.weights), linear.intercept, pickle.dumps(linear.optimizer)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    labels=st.lists(st.integers(0, len(X) - 1), min_size=2, max_size=60),
    cut=st.integers(1, 59),
    publish=st.booleans(),
    hold=st.booleans(),
    optimizer=st.sampled_from([BOOSTED_ONLINE, STRONGER, RAMPED]),
    residual=st.sampled_from([None, 0.01, 0.5]),
)
def test_a_learner_stopped_anywhere_goes_on_as_one_that_never_stopped(
    tmp_path: Path,
    labels: list[int],
    cut: int,
    publish: bool,
    hold: bool,
    optimizer: str,
    residual: float | None,
) -> None:
    """Snapshotted (pickled, as Bytewax does) or resumed from the version it published, a
    learner learns the rest of the labels into exactly the weights and optimizer state of one
    that learned them all: the step is deterministic and its state travels with the model,
    the ramped rate's step count and the residual's count of labels not learned too."""
    cut = min(cut, len(labels) - 1)
    root = artifact.save(
        new_boosted_model(BOOSTED, optimizer), model_metadata(),
        tmp_path / f"{len(labels)}-{cut}-{optimizer}-{hold}-{publish}-{residual}",
        key=TEST_KEY,
    )  # fmt: skip
    examples = [labelled(k, X[i], bool(Y[i])) for k, i in enumerate(labels)]
    straight = OnlineLearner(root, publish_every=10**9, hold=hold, residual=residual)
    for e in examples:
        straight.learn(e)
    stopped = OnlineLearner(root, publish_every=10**9, hold=hold, residual=residual)
    for e in examples[:cut]:
        stopped.learn(e)
    if publish:
        record = stopped.publish(NOW)
        model = artifact.loads(record.payload, record.metadata, lambda v: root, where="test")
        resumed = artifact.ModelArtifact(model, record.metadata, record.payload)
        stopped = OnlineLearner(resumed, publish_every=10**9, hold=hold, residual=residual)
    else:
        stopped = pickle.loads(pickle.dumps(stopped))
    for e in examples[cut:]:
        stopped.learn(e)
    assert weights_of(stopped) == weights_of(straight)
    assert stopped.skipped == straight.skipped
    assert stopped.learned_total == straight.learned_total == len(examples)


def test_a_ramped_rate_makes_the_first_steps_small_and_reaches_the_full_rate() -> None:
    """AdaGrad moves a weight by its whole rate on its first gradient; ramped over N labels,
    the first step is rate / N, the N-th and later the full rate."""
    ramped = online_optimizer("adagrad:0.05:ramp=100")
    assert isinstance(ramped.lr, Ramp)
    assert ramped.lr.get(0) == pytest.approx(0.0005)
    assert ramped.lr.get(99) == pytest.approx(0.05)
    assert ramped.lr.get(10_000) == pytest.approx(0.05)
    rates = [ramped.lr.get(t) for t in range(300)]
    assert rates == sorted(rates)  # never falls
    w = ramped.step({"a": 0.0}, {"a": 1.0})
    plain = online_optimizer("adagrad:0.05").step({"a": 0.0}, {"a": 1.0})
    assert w["a"] == pytest.approx(-0.0005) and plain["a"] == pytest.approx(-0.05)
    for bad in ("adagrad:0.05:ramp=0", "adagrad:0.05:ramp=x", "adagrad:0.05:warm=3"):
        with pytest.raises(ValueError, match="ramp"):
            online_optimizer(bad)


def test_the_residual_learns_only_what_the_forest_scores_low(tmp_path: Path) -> None:
    """With ``residual``, a label whose payment the forest alone scores at or above the
    probability is counted and known but moves no weight; one below it is learned as without
    ``residual``."""
    root = start(tmp_path, STRONGER)
    plain = OnlineLearner(root, publish_every=10**9, hold=True)
    columns = plain.prepare([labelled(k, X[k], bool(Y[k])) for k in range(len(X))])
    assert columns is not None
    forest = np.array([c[RESIDUAL_COLUMN] for c in columns])
    # the probability the forest alone gives the median fraud (the scorer's prior correction)
    middle = float(np.median(forest[Y])) - math.log(root.metadata.positive_weight)
    probability = 1.0 / (1.0 + math.exp(-middle))
    bar = residual_bar(probability, root.metadata.positive_weight)
    assert bar == pytest.approx(float(np.median(forest[Y])))
    learner = OnlineLearner(root, publish_every=10**9, hold=True, residual=probability)
    high = [int(i) for i in np.flatnonzero(Y & (forest >= bar + 1e-9))[:5]]
    low = [int(i) for i in np.flatnonzero(Y & (forest < bar - 1e-9))[:5]]
    assert high and low
    before = weights_of(learner)
    for k, i in enumerate(high):
        learner.learn(labelled(k, X[i], True))
    assert weights_of(learner)[:2] == before[:2]
    assert learner.skipped == len(high) and learner.learned_total == len(high)
    for k, i in enumerate(low):
        learner.learn(labelled(100 + k, X[i], True))
        plain.learn(labelled(100 + k, X[i], True))
    assert weights_of(learner)[:2] == weights_of(plain)[:2] != before[:2]
    record = learner.publish(NOW)
    assert record.metadata.learner["residual_skipped"] == len(high)
    with pytest.raises(ValueError, match="probability"):
        OnlineLearner(root, publish_every=10, residual=1.0)


def test_the_forest_weight_is_held_where_the_hats_learn(tmp_path: Path) -> None:
    """The online step learns the hats; the forest's weight stays at its root's value, through
    publishing and resuming too. The step before (``hold=False``) moved it."""
    root = start(tmp_path, STRONGER)
    rng = np.random.default_rng(3)
    rows = rng.integers(0, len(X), 300)
    held = OnlineLearner(root, publish_every=10**9, hold=True)
    free = OnlineLearner(root, publish_every=10**9)
    for k, i in enumerate(rows.tolist()):
        held.learn(labelled(k, X[i], bool(Y[i])))
        free.learn(labelled(k, X[i], bool(Y[i])))
    assert held.model["LogisticRegression"].weights["forest"] == 1.0
    assert free.model["LogisticRegression"].weights["forest"] != 1.0
    hats = {k: v for k, v in held.model["LogisticRegression"].weights.items() if k != "forest"}
    assert max(abs(v) for v in hats.values()) > 0.05  # the hats learned
    record = held.publish(NOW)
    model = artifact.loads(record.payload, record.metadata, lambda v: root, where="test")
    resumed = OnlineLearner(
        artifact.ModelArtifact(model, record.metadata, record.payload), 10, hold=True
    )
    resumed.learn(labelled(999, X[0], True))
    assert resumed.model["LogisticRegression"].weights["forest"] == 1.0
