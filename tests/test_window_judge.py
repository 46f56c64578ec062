"""The window judge (issue 22 item 4): the online steps are judged on the last labels of any
lineage, each scored by the learned weights and by the lineage's base before it is learned, and
ranked only against the labels of payments made the same day. Its evidence survives a retrain
going live (in the evaluation's learner as in the flow's), its memory is bounded, and a learner
stopped anywhere and resumed from its snapshot decides as one that never stopped."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from dataflows.learning import LearnStep, Lineages
from model_state import artifact
from model_state.learner import OnlineLearner
from model_state.offline.train import new_boosted_model
from model_state.online_judge import ADOPTED, SWITCH_GAP, OnlineJudge, block_gain, scoring_model
from model_state.window_judge import (
    DAY,
    EVIDENCE,
    PAIRS,
    SIZE,
    Pair,
    WindowJudge,
    earned,
    fraud_gains,
)
from storage.labels import LabelledPayment
from tests.builders import TEST_KEY, model_metadata
from tests.test_boosted import BOOSTED, X, Y
from tests.test_online_step import labelled, weights_of

NOW = datetime(2026, 3, 2, tzinfo=UTC)
STRONG = "sgd:0.05"
HOUR = 3_600.0
SLOW = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def timed(k: int, i: int, *, paid: float, reported: float) -> LabelledPayment:
    return msgspec.structs.replace(
        labelled(k, X[i], bool(Y[i])), payment_time=paid, reported_at=reported
    )


def _root(
    folder: Path, version: str = "v00001", forest: float | None = None
) -> artifact.ModelArtifact:
    model = new_boosted_model(BOOSTED, STRONG)
    if forest is not None:  # a base that ranks otherwise
        model["LogisticRegression"]._weights["forest"] = forest
    return artifact.save(model, model_metadata(version), folder, key=TEST_KEY)


def _load(record: artifact.VersionRecord, root: artifact.ModelArtifact) -> artifact.ModelArtifact:
    model = artifact.loads(record.payload, record.metadata, lambda v: root, where="test")
    return artifact.ModelArtifact(model, record.metadata, record.payload)


days = st.lists(
    st.tuples(
        st.integers(0, 5),  # payment day
        st.booleans(),
        st.floats(-8, 8),
        st.floats(-8, 8),
        st.sampled_from([1.0, 10.0]),  # a legitimate label kept by sampling weighs 1 / rate
    ),
    max_size=80,
)


@given(days)
def test_each_days_fraud_gains_sum_to_its_frauds_times_the_ap_difference(
    rows: list[tuple[int, bool, float, float, float]],
) -> None:
    """Per fraud, the precision at its score under each weight: summed over a day, exactly the
    frauds' number times scikit-learn's difference in average precision of that day's labels."""
    pairs = [Pair(d, f, c, b, 1.0 if f else w) for d, f, c, b, w in rows]
    expected = []
    for day in sorted({p.day for p in pairs}):
        group = [p for p in pairs if p.day == day]
        frauds = [p.fraud for p in group]
        if any(frauds) and not all(frauds):
            expected.append(
                block_gain(
                    frauds,
                    [p.candidate for p in group],
                    [p.base for p in group],
                    [p.weight for p in group],
                )
            )
    gains = fraud_gains(pairs)
    mixed = {
        day for day in {p.day for p in pairs} if len({p.fraud for p in pairs if p.day == day}) == 2
    }
    assert len(gains) == sum(1 for p in pairs if p.fraud and p.day in mixed)
    assert sum(gains) == pytest.approx(sum(expected), abs=1e-9)
    assert all(-1.0 - 1e-12 <= g <= 1.0 + 1e-12 for g in gains)  # precisions lie in [0, 1]


def test_a_fraud_gain_is_the_precision_at_its_score() -> None:
    # day 0: candidate ranks the fraud first (precision 1), base ranks it second (1/2)
    pairs = [Pair(0, True, 2.0, 1.0, 1.0), Pair(0, False, 1.0, 2.0, 1.0)]
    assert fraud_gains(pairs) == [pytest.approx(0.5)]
    y = [True, False]
    assert fraud_gains(pairs)[0] == pytest.approx(
        average_precision_score(y, [2.0, 1.0]) - average_precision_score(y, [1.0, 2.0])
    )


@given(
    st.lists(st.tuples(st.booleans(), st.floats(-8, 8), st.floats(-8, 8)), max_size=60),
    st.integers(0, 30),
)
def test_frauds_and_legitimate_labels_of_different_days_are_never_ranked(
    rows: list[tuple[bool, float, float]], shift: int
) -> None:
    """The two-period confound: frauds of recent payments and the implicit negatives of payments
    30 days older arrive together; ranked against each other they compare two periods. Here every
    day holds one class: no evidence, whatever the scores."""
    pairs = [Pair(100 if fraud else 100 - 30 - shift % 7, fraud, c, b, 1.0) for fraud, c, b in rows]
    assert fraud_gains(pairs) == []
    judge = WindowJudge({}, 0.0, 10)
    judge.pairs.extend(pairs)
    assert judge.judge() is False and judge.advantage == 0.0


@given(st.lists(st.floats(-1, 1), max_size=60))
def test_the_candidate_earns_scoring_only_by_evidence_standard_errors(gains: list[float]) -> None:
    advantage, spread = sum(gains), sum(g * g for g in gains)
    assert earned(advantage, spread) is (spread > 0 and advantage > EVIDENCE * spread**0.5)
    for gain in gains:  # one fraud's lead alone is one standard error of itself, never enough
        assert not earned(gain, gain * gain)
    assert not earned(0.0, 0.0)


@given(st.integers(1, 50), st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=200))
def test_the_window_holds_at_most_its_size_the_latest_labels(
    size: int, labels: list[tuple[int, bool]]
) -> None:
    judge = WindowJudge({"forest": 1.0}, -2.0, size)
    for k, (day, fraud) in enumerate(labels):
        judge.judges(day * DAY, day * DAY + k)
        judge.observe({"forest": float(k)}, float(k), fraud, 1.0, payment_time=day * DAY)
        assert len(judge.pairs) <= size
    kept = [p.candidate for p in judge.pairs]
    assert kept == [float(k) for k in range(len(labels))][-size:]
    state = judge.state()
    assert state[SIZE] == size and state[PAIRS] == len(judge.pairs)


@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.booleans(), st.floats(-5, 5), st.floats(-5, 5)),
        max_size=120,
    ),
    st.integers(1, 40),
    st.integers(0, 119),
)
def test_the_same_labels_in_the_same_order_give_the_same_decisions_after_a_crash(
    rows: list[tuple[int, bool, float, float]], every: int, crash: int
) -> None:
    """Decisions depend on the labels and their order only: a judge pickled (a recovery
    snapshot) anywhere and resumed decides as one that never stopped."""

    def run(stop: int | None) -> list[tuple[bool, float, float, float | None]]:
        judge = WindowJudge({"x": 1.0}, 0.0, 50)
        out = []
        for k, (day, fraud, candidate, x) in enumerate(rows):
            if k == stop:
                judge = pickle.loads(pickle.dumps(judge))
            judge.judges(day * DAY, day * DAY + k * HOUR)
            judge.observe({"x": x}, candidate, fraud, 1.0, payment_time=day * DAY)
            if (k + 1) % every == 0:
                out.append((judge.judge(), judge.advantage, judge.spread, judge.switched_at))
        return out

    assert run(crash) == run(None)


@given(st.integers(1, 100), st.booleans(), st.floats(-3, 3), st.floats(-5, 5), st.floats(0, 1e9))
def test_a_version_records_the_verdict_and_a_scorer_reads_it_as_any_judges(
    size: int, verdict: bool, intercept: float, forest: float, clock: float
) -> None:
    judge = WindowJudge({"forest": forest}, intercept, size, is_adopted=verdict, clock=clock)
    judge.observe({"forest": 1.0}, 1.0, True, 1.0, payment_time=0.0)
    again = WindowJudge.from_state(judge.state())
    assert again is not None
    assert (again.size, again.adopted, again.root_weights, again.root_intercept, again.clock) == (
        size, verdict, {"forest": forest}, intercept, clock
    )  # fmt: skip
    assert len(again.pairs) == 0  # the pairs are the snapshot's, not the version's
    scored = OnlineJudge.from_state(judge.state())  # what scoring_model reads
    assert scored is not None and scored.adopted == verdict
    assert (scored.root_weights, scored.root_intercept) == ({"forest": forest}, intercept)
    assert WindowJudge.from_state(OnlineJudge({}, 0.0).state()) is None  # a lineage judge's


@SLOW
@given(labels=st.lists(st.integers(0, len(X) - 1), min_size=2, max_size=50))
def test_every_label_is_scored_before_it_is_learned(tmp_path: Path, labels: list[int]) -> None:
    """Each pair's candidate score is the weights that had learned exactly the labels before it
    (a learner not judged, stopped there), and its base score is the root's: no label is judged
    by weights that learned it."""
    root = _root(tmp_path / str(len(labels)))
    judged = OnlineLearner(root, publish_every=10**9, window=1000)
    plain = OnlineLearner(root, publish_every=10**9, judged=False)
    step = root.model["LogisticRegression"]
    for k, i in enumerate(labels):
        example = timed(k, i, paid=k * HOUR, reported=k * HOUR)
        columns = plain.prepare([example])
        assert columns is not None
        before = plain.model["LogisticRegression"]._raw_dot_one(columns[0])
        judged.learn(example)
        plain.learn(example)
        assert isinstance(judged.judge, WindowJudge)
        pair = judged.judge.pairs[-1]
        assert pair.candidate == pytest.approx(before, abs=1e-9)
        assert pair.base == pytest.approx(step._raw_dot_one(columns[0]), abs=1e-9)
    assert weights_of(judged) == weights_of(plain)  # judging changes nothing learned


def _learn(learner: OnlineLearner, start: int, count: int) -> list[float]:
    verdicts = []
    for k in range(start, start + count):
        i = k % len(X)
        learner.learn(timed(k, i, paid=(k // 40) * DAY, reported=(k // 40) * DAY + 7 * DAY))
        if learner.due:
            verdicts.append(learner.publish(NOW).metadata.learner[ADOPTED])
    return verdicts


def test_the_evidence_survives_a_new_lineage_and_new_labels_meet_the_new_base(
    tmp_path: Path,
) -> None:
    """A retrain goes live: the new lineage's learner keeps every pair, as it was scored, and the
    window's size; the labels after it are scored by the new base. The evaluation hands it on
    so (``previous``), and so does the flow's learner when it finds a newer lineage."""
    first = _root(tmp_path / "1")
    second = _root(tmp_path / "2", "v00002", forest=0.5)
    learner = OnlineLearner(first, publish_every=50, window=300)
    _learn(learner, 0, 120)
    assert isinstance(learner.judge, WindowJudge)
    before = list(learner.judge.pairs)
    assert len(before) == 120

    # the flow's learner, finding the retrain recorded
    lineages = Lineages(lambda version: second, refresh_seconds=0)
    flows = LearnStep(learner, 0.0, 3600, None, lineages)._learner  # it looks when built
    evaluations = OnlineLearner(second, 50, previous=learner)  # model_state.evaluate's live_from
    for went_on in (flows, evaluations):
        assert went_on.version == "v00002" and isinstance(went_on.judge, WindowJudge)
        assert list(went_on.judge.pairs) == before and went_on.judge.size == 300
        assert went_on.judge.root_weights["forest"] == 0.5
        example = timed(500, 3, paid=9 * DAY, reported=16 * DAY)
        went_on.learn(example)
        columns = went_on.prepare([example])
        assert columns is not None
        base = second.model["LogisticRegression"]._raw_dot_one(columns[0])
        assert went_on.judge.pairs[-1].base == pytest.approx(base, abs=1e-9)
        assert list(went_on.judge.pairs)[:-1] == before
    # a lineage judge is not handed on: the next lineage starts its own
    plain = OnlineLearner(first, publish_every=50)
    assert isinstance(OnlineLearner(second, 50, previous=plain).judge, OnlineJudge)


def test_a_base_that_ranks_worse_within_days_gives_way_and_scoring_takes_the_steps(
    tmp_path: Path,
) -> None:
    """Against a base with the forest's weight turned negative, the learned weights rank each
    day's labels better: once the evidence holds, scoring takes them, and the version then
    scores with its own weights."""
    root = _root(tmp_path / "r")
    learner = OnlineLearner(root, publish_every=100, window=2000)
    assert isinstance(learner.judge, WindowJudge)
    learner.judge.root_weights["forest"] = -1.0
    assert _learn(learner, 0, 1200)[-1] == 1.0
    assert learner.judge.advantage > EVIDENCE * learner.judge.spread**0.5
    learner.learn(timed(10**6, 0, paid=60 * DAY, reported=60 * DAY))
    record = learner.publish(NOW)
    assert record.metadata.learner[ADOPTED] == 1.0
    version = _load(record, root)
    assert scoring_model(version) is version.model


@SLOW
@given(
    labels=st.lists(st.integers(0, len(X) - 1), min_size=4, max_size=80),
    every=st.integers(2, 30),
    cut=st.integers(1, 79),
)
def test_a_learner_resumed_from_its_snapshot_judges_as_one_that_never_stopped(
    tmp_path: Path, labels: list[int], every: int, cut: int
) -> None:
    cut = min(cut, len(labels) - 1)
    root = _root(tmp_path / f"{len(labels)}-{every}-{cut}")
    examples = [
        timed(k, i, paid=(k // 10) * DAY, reported=(k // 10) * DAY + HOUR * k)
        for k, i in enumerate(labels)
    ]

    def run(stop: int | None) -> tuple[list[dict[str, float]], tuple[object, ...]]:
        learner = OnlineLearner(root, publish_every=every, window=25)
        states = []
        for position, example in enumerate(examples):
            if position == stop:
                learner = pickle.loads(pickle.dumps(learner))
            learner.learn(example)
            if learner.due:
                states.append(dict(learner.publish(NOW).metadata.learner))
        return states, weights_of(learner)

    assert run(cut) == run(None)


def test_scoring_switches_at_most_once_a_day() -> None:
    """A verdict that turns within a day of the last switch waits (the judge's clock is the
    labels' report time)."""
    judge = WindowJudge({"x": 1.0}, 0.0, 1000)  # the base's log-odds: x

    def day_of(day: int, candidate_right: bool, reported: float) -> None:
        for k in range(4):
            fraud = k == 0
            right = 1.0 if fraud else 0.0
            candidate = right if candidate_right else 1.0 - right
            judge.judges(day * DAY, reported)
            judge.observe({"x": 1.0 - candidate}, candidate, fraud, 1.0, payment_time=day * DAY)

    for day in range(12):  # the candidate ranks each day's fraud first, the base last
        day_of(day, True, day * DAY)
    assert judge.judge() is True
    switched = judge.switched_at
    assert switched is not None
    for day in range(12, 40):  # then the base leads, but within a day of the switch
        day_of(day, False, switched + 10.0)
    assert judge.judge() is True and judge.switched_at == switched
    assert judge.advantage < 0
    judge.judges(40 * DAY, switched + SWITCH_GAP)
    assert judge.judge() is False
