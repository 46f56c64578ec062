"""A live retrain judged again beside the champion it replaced: the decision's invariants, and
the evaluation's online run rolling a worse retrain back (and keeping one that ranks the same)."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_state import artifact
from model_state.offline import rollback
from model_state.offline.eval_report import labels_text
from model_state.offline.eval_results import Evaluation
from model_state.offline.eval_stream import Replayed, replay_stream, with_label_delay
from model_state.offline.evaluate import RollbackRule, run_online
from model_state.offline.train import new_model
from tests.builders import model_metadata
from tests.test_evaluate import _payment

WATCH = rollback.Watch(retrained="v00003", previous="v00002.000134", since=0.0)

labelled_scores = st.integers(2, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.05, 0.2, 0.5, 0.7, 0.95]), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.05, 0.2, 0.5, 0.7, 0.95]), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(data=labelled_scores, min_frauds=st.integers(1, 40), min_loss=st.sampled_from([0, 1, 2]))
def test_a_retrain_is_never_rolled_back_without_evidence(
    data: tuple[list[bool], list[float], list[float]], min_frauds: int, min_loss: float
) -> None:
    truth, mine, theirs = (np.array(x) for x in data)
    watch = rollback.decide(WATCH, truth, mine, theirs, min_frauds=min_frauds, min_loss=min_loss)
    frauds = int(truth.sum())
    if frauds < min_frauds or frauds == len(truth):
        assert watch is WATCH  # too few frauds, or nothing legitimate: undecided
        return
    verdict = watch.verdict
    assert verdict is not None and (verdict.rows, verdict.frauds) == (len(truth), frauds)
    if verdict.roll_back:  # only when the retrain ranked them worse, by the bar
        assert verdict.retrained_ap < verdict.previous_ap - min_loss * verdict.standard_error
    # The same ranking on both sides is never rolled back.
    same = rollback.decide(WATCH, truth, mine, mine, min_frauds=min_frauds, min_loss=min_loss)
    assert same.verdict is not None and not same.verdict.roll_back


@settings(max_examples=60, deadline=None)
@given(first=labelled_scores, later=labelled_scores)
def test_a_retrain_gets_at_most_one_verdict_and_the_same_one_on_replay(
    first: tuple[list[bool], list[float], list[float]],
    later: tuple[list[bool], list[float], list[float]],
) -> None:
    decided = rollback.decide(WATCH, *(np.array(x) for x in first), min_frauds=1)
    again = rollback.decide(WATCH, *(np.array(x) for x in first), min_frauds=1)
    assert decided == again  # deterministic: the bootstrap has a fixed seed
    if decided.decided:
        # Whatever comes later, the verdict stays the first one.
        assert rollback.decide(decided, *(np.array(x) for x in later), min_frauds=1) is decided


def test_a_clear_loss_is_rolled_back_with_a_bounded_reason() -> None:
    truth = np.array([True, False, False, False, False] * 40)
    watch = rollback.Watch(retrained="v" * 5000, previous="p" * 5000, since=0.0)
    decided = rollback.decide(
        watch, truth, np.where(truth, 0.2, 0.5), np.where(truth, 0.9, 0.1), min_frauds=40
    )
    assert decided.verdict is not None and decided.verdict.roll_back
    assert decided.verdict.retrained_ap < decided.verdict.previous_ap == 1.0
    reason = decided.verdict.reason()
    assert reason.startswith("rolled back: on 200 payments it scored live") and len(reason) <= 400
    shadowed = decided.verdict.reason(shadow=True)
    assert shadowed.startswith("not promoted: on 200 payments it scored in the shadow")
    assert len(shadowed) <= 400


def test_mismatched_inputs_and_bad_settings_are_refused_with_what_came() -> None:
    truth = np.array([True, False])
    with pytest.raises(ValueError, match="2 labels, 1 scores of the retrain and 2"):
        rollback.decide(WATCH, truth, np.array([0.1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="min_frauds must be >= 1 and min_loss >= 0; got 0"):
        rollback.decide(WATCH, truth, truth * 1.0, truth * 1.0, min_frauds=0)


# ------------------------------------------------------------------- in the evaluation's online run


def _stream(days: int, delay: timedelta) -> Replayed:
    """A payment every 30 minutes for ``days`` days; the largest amounts (one in six) are the
    frauds, each labelled ``delay`` after its payment."""
    payments = [
        msgspec.structs.replace(_payment(i, i % 7, 30.0 * i), amount_minor=500 + 137 * (i % 97))
        for i in range(days * 48)
    ]
    verdicts = {p.transaction_id: p.amount_minor > 500 + 137 * 80 for p in payments}
    return replay_stream(with_label_delay(payments, verdicts, delay), {})


def _model(replayed: Replayed, version: str, *, right: bool) -> artifact.ModelArtifact:
    """A model fitted on the stream's own features to its labels (``right``) or their opposite:
    the one ranks the frauds first, the other last."""
    model = new_model()
    for _ in range(3):
        for i in range(len(replayed)):
            model.learn_one(replayed.feature_dict(i), bool(replayed.verdict[i] == 1) == right)
    return artifact.ModelArtifact(model, model_metadata(version), b"")


@pytest.mark.parametrize("shadow_first", [False, True])
@pytest.mark.parametrize("worse", [True, False])
def test_a_retrain_that_ranks_its_payments_worse_is_rolled_back_or_never_promoted(
    worse: bool, shadow_first: bool
) -> None:
    delay = timedelta(days=2)
    replayed = _stream(12, delay)
    good = _model(replayed, "v00001", right=True)
    retrained: list[datetime] = []

    def retrain(
        now: datetime, champion: artifact.ModelArtifact, *live: np.ndarray
    ) -> artifact.ModelArtifact | None:
        if retrained:
            return None  # one retrain, then refused
        retrained.append(now)
        model = _model(replayed, "-", right=not worse).model
        return artifact.ModelArtifact(model, model_metadata("v00003", origin="retrained"), b"")

    rule = RollbackRule(maturity=delay.total_seconds(), min_frauds=10, shadow_first=shadow_first)
    run = run_online(
        replayed, good, 10**9, retrain=retrain, retrain_every=timedelta(days=3), rollback_rule=rule
    )
    assert len(retrained) == 1 and len(run.rollbacks) == 1 and run.rollbacks_superseded == 0
    verdict = run.rollbacks[0]
    went_live = retrained[0].timestamp()
    # Decided only once the retrain's payments had final labels, and on those alone.
    assert verdict["at"] >= went_live + delay.total_seconds()
    assert verdict["frauds"] >= 10 and verdict["retrained"] == "v00003"
    assert verdict["previous"] == good.version
    assert run.rolled_back == int(worse)
    if worse:
        assert verdict["retrained_ap"] < 0.5 < verdict["previous_ap"]
    # The report says what was decided, in the words of the form run.
    evaluation = Evaluation({}, replayed, np.arange(len(replayed)), {}, {}, {"online": run}, {})
    if shadow_first:
        outcome = "not promoted" if worse else "promoted"
    else:
        outcome = "rolled back" if worse else "kept"
    assert f": {outcome}: on {verdict['rows']} payments" in labels_text(evaluation)
    watched = (replayed.event_time >= went_live) & (replayed.event_time <= verdict["at"])
    later = replayed.event_time > verdict["at"]
    alone = run_online(replayed, good, 10**9)  # the champion, never retrained
    assert watched.any() and later.any()
    if shadow_first:  # the champion scores until the verdict; then the retrain if not worse
        np.testing.assert_allclose(run.scores[watched], alone.scores[watched])
        assert run.versions == [good.version] if worse else [good.version, "v00003"]
        assert run.retrained == int(not worse)
    elif worse:  # scored by the retrain while watched, then by the champion as it was
        assert not np.allclose(run.scores[watched], alone.scores[watched])
        assert run.versions == [good.version, "v00003", good.version]
        np.testing.assert_allclose(run.scores[later], alone.scores[later])
    else:  # the same ranking is kept: the retrain goes on scoring
        assert run.versions == [good.version, "v00003"]
