"""The online judge (issue 22): an online version is scored with its learned weights only while
they ranked the labels since the last versions better than its lineage root's; the judgement is
deterministic, never changes what is learned, and travels in every published version and in the
learner's snapshot, so a learner stopped anywhere judges as one that never stopped."""

from __future__ import annotations

import itertools
import pickle
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.model_registry import ModelRegistry
from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.label_kinds import LabelKind
from model_state.learner import OnlineLearner
from model_state.offline.evaluate import scorer_for
from model_state.offline.online_optimizer import BOOSTED_ONLINE
from model_state.offline.train import new_boosted_model
from model_state.online_judge import (
    ADOPTED,
    DECAY,
    EVIDENCE,
    MATURE_AFTER,
    SWITCH_GAP,
    OnlineJudge,
    adopted,
    block_gain,
    next_advantage,
    next_spread,
    scoring_model,
    settled,
)
from storage.labels import LabelledPayment
from tests.builders import TEST_KEY, model_metadata
from tests.test_boosted import BOOSTED, X, Y
from tests.test_online_step import labelled, weights_of

NOW = datetime(2026, 3, 2, tzinfo=UTC)
STRONG = "sgd:0.05"  # a step large enough to move the ranking within a few hundred labels
HOUR, DAY = 3_600.0, 86_400.0


def timed(
    i: int, row: np.ndarray, fraud: bool, *, paid: float, reported: float | None = None
) -> LabelledPayment:
    """Label ``i`` of a payment made at ``paid`` (POSIX seconds), reported at ``reported``
    (default: at once)."""
    return msgspec.structs.replace(
        labelled(i, row, fraud),
        payment_time=paid,
        reported_at=paid if reported is None else reported,
    )


def hourly(i: int, row: np.ndarray, fraud: bool) -> LabelledPayment:
    """Label ``i`` of a payment made ``i`` hours after the first, reported at once: a week of
    payments matures in 168 labels."""
    return timed(i, row, fraud, paid=i * HOUR)


blocks = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.floats(-10, 10), min_size=n, max_size=n),
        st.lists(st.floats(-10, 10), min_size=n, max_size=n),
        st.lists(st.floats(0.1, 10), min_size=n, max_size=n),
    )
)


@given(blocks)
def test_a_block_gain_is_antisymmetric_and_zero_between_equal_scores(
    block: tuple[list[bool], list[float], list[float], list[float]],
) -> None:
    frauds, learned, root, weights = block
    gain = block_gain(frauds, learned, root, weights)
    assert gain == pytest.approx(-block_gain(frauds, root, learned, weights), abs=1e-9)
    assert block_gain(frauds, learned, learned, weights) == 0.0
    if all(frauds) or not any(frauds):
        assert gain == 0.0  # nothing to rank
    assert abs(gain) <= sum(frauds)  # AP lies in [0, 1]


def test_a_block_gain_is_the_frauds_times_the_ap_difference() -> None:
    frauds = [True, False, True, False]
    # learned ranks both frauds first (AP 1); root ranks a legitimate payment first (AP 0.8333)
    gain = block_gain(frauds, [3.0, 1.0, 2.0, 0.0], [2.0, 3.0, 1.0, 0.0], [1.0] * 4)
    assert gain == pytest.approx(2 * (1.0 - (1 / 2 + 2 / 3) / 2))
    with pytest.raises(ValueError, match="one score each"):
        block_gain(frauds, [1.0], [1.0] * 4, [1.0] * 4)


@given(st.lists(st.floats(-5, 5), max_size=30))
def test_the_advantage_decays_and_adopts_only_what_has_earned_it(gains: list[float]) -> None:
    advantage = spread = 0.0
    for gain in gains:
        expected = DECAY * advantage + gain
        advantage, spread = next_advantage(advantage, gain), next_spread(spread, gain)
        assert advantage == expected
        assert adopted(advantage, spread) is (advantage > 0 and advantage > EVIDENCE * spread**0.5)
    assert not adopted(0.0, 0.0)  # no evidence: the root's weights score


@given(st.floats(0.01, 5), st.integers(1, 30))
def test_a_steady_gain_is_adopted_and_one_block_is_not(gain: float, blocks: int) -> None:
    """One block's gain alone is one standard error of itself: never enough. The same gain
    version after version builds the evidence; the same loss never does."""
    assert not adopted(next_advantage(0.0, gain), next_spread(0.0, gain))
    advantage = spread = 0.0
    lost = lost_spread = 0.0
    for _ in range(blocks):
        advantage, spread = next_advantage(advantage, gain), next_spread(spread, gain)
        lost, lost_spread = next_advantage(lost, -gain), next_spread(lost_spread, -gain)
        assert not adopted(lost, lost_spread)
    assert adopted(advantage, spread) is (blocks >= 5)


@given(
    weights=st.dictionaries(st.text(min_size=1, max_size=8), st.floats(-3, 3), max_size=10),
    intercept=st.floats(-8, 8),
    gains=st.lists(st.floats(-5, 5), max_size=5),
)
def test_a_judge_recorded_in_a_version_is_the_judge_that_recorded_it(
    weights: dict[str, float], intercept: float, gains: list[float]
) -> None:
    judge = OnlineJudge(weights, intercept)
    for gain in gains:
        judge.advantage = next_advantage(judge.advantage, gain)
        judge.spread = next_spread(judge.spread, gain)
        judge.adopted = adopted(judge.advantage, judge.spread)
    again = OnlineJudge.from_state(judge.state())
    assert again is not None
    assert (
        again.root_weights, again.root_intercept, again.advantage, again.spread, again.adopted
    ) == (
        judge.root_weights, judge.root_intercept, judge.advantage, judge.spread, judge.adopted
    )  # fmt: skip
    assert OnlineJudge.from_state({"frauds": 3.0}) is None  # a version from before judging


def _root(tmp_path: Path, optimizer: str = STRONG) -> artifact.ModelArtifact:
    return artifact.save(
        new_boosted_model(BOOSTED, optimizer), model_metadata(), tmp_path, key=TEST_KEY
    )


def _load(record: artifact.VersionRecord, root: artifact.ModelArtifact) -> artifact.ModelArtifact:
    model = artifact.loads(record.payload, record.metadata, lambda v: root, where="test")
    return artifact.ModelArtifact(model, record.metadata, record.payload)


def _judge_of(learner: OnlineLearner) -> tuple[float, bool, float]:
    assert learner.judge is not None
    return learner.judge.advantage, learner.judge.adopted, learner.judge.gain


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    labels=st.lists(st.integers(0, len(X) - 1), min_size=4, max_size=80),
    every=st.integers(2, 30),
    cut=st.integers(1, 79),
    how=st.sampled_from(["published", "snapshot"]),
)
def test_a_learner_stopped_anywhere_judges_as_one_that_never_stopped(
    tmp_path: Path, labels: list[int], every: int, cut: int, how: str
) -> None:
    """Resumed from a published version (the judge's state is in its metadata) or from its
    pickled snapshot (mid-block), a learner publishes the same verdicts, the same recorded
    judgement and the same weights as one that learned every label without stopping."""
    cut = min(cut, len(labels) - 1)
    root = _root(tmp_path / f"{len(labels)}-{every}-{cut}-{how}")
    # Three hours apart, a week of payments matures within the labels drawn.
    examples = [timed(k, X[i], bool(Y[i]), paid=3 * k * HOUR) for k, i in enumerate(labels)]

    def run(stop: int | None) -> tuple[list[dict[str, float]], tuple[object, ...]]:
        learner = OnlineLearner(root, publish_every=every)
        last = root  # the last version published
        states = []
        for position, example in enumerate(examples):
            if position == stop:
                if how == "snapshot":
                    learner = pickle.loads(pickle.dumps(learner))
                elif learner.pending == 0 and position > 0:  # just published: go on from it
                    learner = OnlineLearner(last, publish_every=every)
            learner.learn(example)
            if learner.due:
                record = learner.publish(NOW)
                last = _load(record, root)
                states.append(dict(record.metadata.learner))
        return states, weights_of(learner)

    stop = cut if how == "snapshot" else (cut // every) * every
    assert run(stop) == run(None)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(labels=st.lists(st.integers(0, len(X) - 1), min_size=1, max_size=60))
def test_judging_never_changes_what_is_learned(tmp_path: Path, labels: list[int]) -> None:
    root = _root(tmp_path / str(len(labels)))
    judged = OnlineLearner(root, publish_every=10**9)
    plain = OnlineLearner(root, publish_every=10**9, judged=False)
    for k, i in enumerate(labels):
        judged.learn(labelled(k, X[i], bool(Y[i])))
        plain.learn(labelled(k, X[i], bool(Y[i])))
    assert weights_of(judged) == weights_of(plain)
    assert plain.judge is None


def _rows(rows: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(FEATURE_NAMES, r, strict=True)) for r in rows.tolist()]


def test_a_version_that_ranks_worse_is_scored_with_its_roots_weights(tmp_path: Path) -> None:
    """A step gone wrong (the forest's weight turned negative, as a runaway step could) ranks
    the next labels worse than the root: the judge refuses the version, which then scores
    exactly as its root; the learner keeps its own weights and its counts."""
    root = _root(tmp_path, BOOSTED_ONLINE)
    learner = OnlineLearner(root, publish_every=50)
    learner.model["LogisticRegression"]._weights["forest"] = -1.0
    order = np.random.default_rng(5).permutation(len(X))[:400]
    records = []
    for k, i in enumerate(order.tolist()):
        learner.learn(labelled(k, X[i], bool(Y[i])))
        if learner.due:
            records.append(learner.publish(NOW))
    assert len(records) == 8
    assert [r.metadata.learner[ADOPTED] for r in records] == [0.0] * 8
    assert _judge_of(learner)[0] < 0
    record = records[-1]
    version = _load(record, root)
    test = _rows(X[:300])
    ours = [p.probability for p in scorer_for(version).score_batch(test)]
    roots = [p.probability for p in scorer_for(root).score_batch(test)]
    own = [version.model.predict_proba_one(r)[True] for r in test]
    assert ours == pytest.approx(roots, abs=1e-12)
    assert own != pytest.approx(roots, abs=1e-6)  # the version keeps the learned weights
    assert version.model["LogisticRegression"].weights["forest"] < 0


def test_a_version_that_ranks_better_is_scored_with_its_own_weights(tmp_path: Path) -> None:
    """The same labels judged against a root that ranks them badly: the learned weights earned
    their place, and the version scores with them."""
    root = _root(tmp_path, BOOSTED_ONLINE)
    learner = OnlineLearner(root, publish_every=50)
    assert learner.judge is not None
    learner.judge.root_weights["forest"] = -1.0
    order = np.random.default_rng(5).permutation(len(X))[:400]
    verdicts = []
    for k, i in enumerate(order.tolist()):
        learner.learn(hourly(k, X[i], bool(Y[i])))
        if learner.due:
            record = learner.publish(NOW)
            verdicts.append(record.metadata.learner[ADOPTED])
    # one block's lead is never enough evidence; five in a row are (and by the fourth block, a
    # week of payments has matured)
    assert verdicts == [0.0] * 4 + [1.0] * 4
    assert _judge_of(learner)[0] > 0
    version = _load(record, root)
    assert scoring_model(version) is version.model


def test_a_root_and_an_unjudged_version_score_with_their_own_weights(tmp_path: Path) -> None:
    root = _root(tmp_path, BOOSTED_ONLINE)
    assert scoring_model(root) is root.model
    plain = OnlineLearner(root, publish_every=10**9, judged=False)
    plain.learn(labelled(0, X[0], bool(Y[0])))
    version = _load(plain.publish(NOW), root)
    assert ADOPTED not in version.metadata.learner
    assert scoring_model(version) is version.model


def test_the_flows_registry_scores_a_refused_version_as_its_root(tmp_path: Path) -> None:
    """The flow's model registry swaps to a newer online version as before; a version the judge
    refused scores every payment exactly as its lineage root, one it adopted with its own
    weights (the same function as the evaluation's scorer, ``scoring_model``)."""
    root = _root(tmp_path, BOOSTED_ONLINE)
    learner = OnlineLearner(root, publish_every=50)
    learner.model["LogisticRegression"]._weights["forest"] = -1.0
    order = np.random.default_rng(5).permutation(len(X))[:100]
    records = []
    for k, i in enumerate(order.tolist()):
        learner.learn(labelled(k, X[i], bool(Y[i])))
        if learner.due:
            records.append(learner.publish(NOW))
    refused = _load(records[-1], root)
    assert refused.metadata.learner[ADOPTED] == 0.0
    offers = [refused]

    def registry(fetch: Callable[[str | None], artifact.ModelArtifact | None]) -> ModelRegistry:
        return ModelRegistry(root, fetch, refresh_seconds=1, review=0.5, decline=0.9)

    # A registry's first look-up is made in line (a restarted flow scores with the newest
    # version at once): no thread to wait for.
    scorer = registry(lambda after: offers.pop() if offers else None).current()
    assert scorer.version == refused.version
    test = _rows(X[:200])
    roots = [p.probability for p in registry(lambda after: None).current().score_batch(test)]
    assert [p.probability for p in scorer.score_batch(test)] == pytest.approx(roots, abs=1e-12)
    own = [refused.model.predict_proba_one(r)[True] for r in test]
    assert own != pytest.approx(roots, abs=1e-6)


judged_labels = st.lists(
    st.tuples(
        st.floats(-20 * DAY, 20 * DAY),  # payment time
        st.floats(0, 40 * DAY),  # reported this long after its payment
        st.booleans(),
        st.floats(-5, 5),  # the root's log-odds
        st.booleans(),  # publish after it
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(judged_labels)
def test_no_version_is_adopted_before_a_week_of_recent_payments_has_matured(
    labels: list[tuple[float, float, bool, float, bool]],
) -> None:
    """Whatever comes and however much better the learned weights rank it (here: perfectly),
    a label of a payment made before the lineage's first label is never judged, and no version
    is adopted before a legitimate label of a payment made a week after that first label."""
    judge = OnlineJudge({"x": 1.0}, 0.0)
    reports = sorted(paid + delay for paid, delay, *_ in labels)
    first = reports[0]
    matured: float | None = None
    for (paid, _, fraud, root, publish), reported in zip(labels, reports, strict=True):
        pending = judge.pending
        if judge.judges(paid, reported):
            judge.observe({"x": root}, 10.0 if fraud else -10.0, fraud, 1.0, payment_time=paid)
            assert paid >= first
            if not fraud:
                matured = paid if matured is None else max(matured, paid)
        else:
            assert paid < first and judge.pending == pending
        assert judge.since == first
        if publish and judge.judge():
            assert matured is not None and matured >= first + MATURE_AFTER


def test_with_frauds_only_nothing_is_adopted_before_a_week_of_implicit_negatives(
    tmp_path: Path,
) -> None:
    """Frauds-only labels, as the flow learns them: every hour the implicit negative of a
    payment 30 days old, and every fifth hour a fraud reported 2 days after its payment. The
    root ranks worse than the learned weights on every label (its forest's weight turned
    negative), yet no version is scored with its own weights until the implicit negatives of
    the lineage's first week of payments have come (37 days); then the learned weights earn it
    within a few versions."""
    root = _root(tmp_path, BOOSTED_ONLINE)
    learner = OnlineLearner(root, publish_every=50)
    assert learner.judge is not None
    learner.judge.root_weights["forest"] = -1.0
    frauds, legit = np.flatnonzero(Y), np.flatnonzero(~Y)
    verdicts: list[tuple[float, float]] = []
    k = 0
    for hour in range(50 * 24):
        now = hour * HOUR
        negative = X[legit[hour % len(legit)]]
        examples = [
            (timed(k, negative, False, paid=now - 30 * DAY, reported=now), LabelKind.IMPLICIT)
        ]
        if hour % 5 == 0:
            fraud = X[frauds[hour % len(frauds)]]
            reported = timed(k + 1, fraud, True, paid=now - 2 * DAY, reported=now)
            examples.append((reported, LabelKind.EXPLICIT))
        for example, kind in examples:
            learner.learn(example, kind=kind)
            k += 1
            if learner.due:
                verdicts.append((now, learner.publish(NOW).metadata.learner[ADOPTED]))
    assert learner.judge.since == 0.0
    first_adopted = min(t for t, v in verdicts if v == 1.0)
    assert first_adopted >= 30 * DAY + MATURE_AFTER  # the first week's implicit negatives
    assert len([t for t, _ in verdicts if t < first_adopted]) > 15
    assert all(v == 1.0 for t, v in verdicts if t >= 43 * DAY)


@given(st.lists(st.tuples(st.floats(0, 2 * DAY), st.booleans()), max_size=200))
def test_scoring_switches_weights_at_most_once_a_day(steps: list[tuple[float, bool]]) -> None:
    """Whatever the sequence of judgements, scoring switches between the learned and the root's
    weights at most once within any :data:`SWITCH_GAP`, and goes by the judgement as soon as
    the last switch is that old."""
    current, switched_at, now = False, None, 0.0
    switches: list[float] = []
    for gap, earned in steps:
        now += gap
        was = current
        current, switched_at = settled(current, earned, now, switched_at)
        if current != was:
            switches.append(now)
            assert switched_at == now
        if current != earned:  # waiting: only within a day of the last switch
            assert switched_at is not None and now - switched_at < SWITCH_GAP
    assert all(b - a >= SWITCH_GAP for a, b in itertools.pairwise(switches))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 6 * HOUR), st.lists(st.booleans(), min_size=2, max_size=20)),
        max_size=60,
    ),
    st.randoms(use_true_random=False),
)
def test_a_judge_switches_at_most_once_a_day_whatever_the_blocks(
    blocks: list[tuple[float, list[bool]]], rng: random.Random
) -> None:
    """The judge itself, fed blocks whose learned scores are perfect or reversed at random (the
    verdict the labels alone would give flips often): its recorded verdict switches at most once
    a day of its clock, and the clock and the switch time travel in its state."""
    judge = OnlineJudge({"x": 1.0}, 0.0, since=0.0, matured=MATURE_AFTER)
    now = 0.0
    switches: list[float] = []
    for gap, frauds in blocks:
        now += gap
        sign = rng.choice([1.0, -1.0])
        for fraud in frauds:
            assert judge.judges(now, now)
            root = rng.uniform(-1, 1)
            judge.observe(
                {"x": root}, sign * (5.0 if fraud else -5.0), fraud, 1.0, payment_time=now
            )
        was = judge.adopted
        if judge.judge() != was:
            switches.append(now)
        again = OnlineJudge.from_state(judge.state())
        assert again is not None
        assert (again.clock, again.switched_at, again.adopted) == (
            judge.clock,
            judge.switched_at,
            judge.adopted,
        )
    assert all(b - a >= SWITCH_GAP for a, b in itertools.pairwise(switches))
