"""The next retrain held while the live one awaits its rollback verdict: the schedule's
invariants, the labels a verdict may use, and the evaluation's online run with the hold."""

from __future__ import annotations

import copy
import itertools
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_state import artifact
from model_state.offline import rollback
from model_state.offline.evaluate import RollbackRule, run_online
from model_state.offline.retrain_hold import Hold
from tests.builders import model_metadata
from tests.test_rollback import _model, _stream

# What happens next to the schedule: a retrain due (the gate accepting it or not), or the
# verdict on the live retrain's watch (ignored when none is pending).
happenings = st.lists(
    st.tuples(st.sampled_from(["due", "verdict"]), st.booleans()), min_size=1, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(happenings=happenings)
def test_no_retrain_goes_live_while_a_verdict_is_pending_and_a_held_one_waits_for_it(
    happenings: list[tuple[str, bool]],
) -> None:
    hold = Hold()
    went_live: list[tuple[float, str]] = []  # (when, version)
    verdicts: list[tuple[float, str]] = []
    held_due: list[float] = []  # due times held since the last verdict
    fitted: list[float] = []

    def fit(now: float, accepted: bool) -> None:
        nonlocal hold
        fitted.append(now)
        if accepted:
            assert not hold.pending  # a retrain is never promoted over a pending watch
            version = f"r{len(fitted)}"
            hold = hold.went_live(version)  # raises if it would supersede a watch
            went_live.append((now, version))

    for now, (what, accepted) in enumerate(happenings):
        if what == "due":
            before = hold
            hold, now_fit = hold.due(float(now))
            assert now_fit == (not before.pending)
            if now_fit:
                fit(float(now), accepted)
            else:
                held_due.append(float(now))
                # at most one retrain waits: the first due time held, whatever came since
                assert hold.held_since == held_due[0] and hold.watching == before.watching
        elif hold.pending:
            watched = hold.watching
            assert watched is not None
            hold, now_fit = hold.decided(watched)
            verdicts.append((float(now), watched))
            assert not hold.pending and hold.held_since is None
            assert now_fit == bool(held_due)  # held retrains fitted once the verdict came, once
            held_due.clear()
            if now_fit:
                fit(float(now), accepted)
    # Every retrain that went live, but the last, got its verdict before the next went live:
    # no watch was superseded, and the verdicts come in the order they went live.
    for (_, version), (next_live, _) in itertools.pairwise(went_live):
        decided = [at for at, v in verdicts if v == version]
        assert len(decided) == 1 and decided[0] <= next_live
    # Nothing fitted while a watch was pending, but at the verdict's own time.
    for (live, version), (at, judged) in zip(went_live, verdicts, strict=False):
        assert judged == version
        assert not [f for f in fitted if live < f < at]


def test_a_promotion_over_a_pending_watch_and_a_verdict_on_another_are_refused() -> None:
    hold = Hold().went_live("v00003")
    with pytest.raises(ValueError, match="v00004 went live while the watch on v00003 had no"):
        hold.went_live("v00004")
    with pytest.raises(ValueError, match="a verdict on v00002, but the watch pending is on v00"):
        hold.decided("v00002")
    with pytest.raises(ValueError, match="the watch pending is on None"):
        Hold().decided("v00003")


watched_labels = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0, 100), min_size=n, max_size=n),  # payment times
        st.lists(st.floats(0, 200), min_size=n, max_size=n),  # report delays
        st.lists(st.booleans(), min_size=n, max_size=n),  # frauds
        st.floats(0, 200),  # now
        st.floats(0, 50),  # maturity
    )
)


@settings(max_examples=300, deadline=None)
@given(data=watched_labels, later=st.floats(0, 100))
def test_a_verdict_uses_only_labels_final_by_its_time(
    data: tuple[list[float], list[float], list[bool], float, float], later: float
) -> None:
    times, delays, frauds, now, maturity = data
    event_time = np.array(times)
    reported_at = event_time + np.array(delays)
    is_fraud = np.array(frauds, dtype=np.int8)
    every = np.arange(len(times))
    rows, truth = rollback.final_labels(event_time, reported_at, is_fraud, every, now, maturity)
    # exactly the payments at least the maturity old, frauds only if reported by now
    np.testing.assert_array_equal(rows, every[event_time + maturity <= now])
    np.testing.assert_array_equal(truth, (is_fraud[rows] == 1) & (reported_at[rows] <= now))
    # what is reported after `now` cannot change the verdict's labels
    moved = np.where(reported_at > now, reported_at + later, reported_at)
    again = rollback.final_labels(event_time, moved, is_fraud, every, now, maturity)
    np.testing.assert_array_equal(again[0], rows)
    np.testing.assert_array_equal(again[1], truth)


# ------------------------------------------------------------------- in the evaluation's online run


@pytest.mark.parametrize("held", [True, False])
def test_retrains_due_before_a_verdict_wait_for_it_in_the_online_run(held: bool) -> None:
    delay = timedelta(days=2)
    replayed = _stream(12, delay)
    good = _model(replayed, "v00001", right=True)
    worse = _model(replayed, "-", right=False).model
    calls: list[float] = []

    def retrain(
        now: datetime, champion: artifact.ModelArtifact, *live: np.ndarray
    ) -> artifact.ModelArtifact | None:
        calls.append(now.timestamp())  # every retrain fitted is accepted, and ranks worse
        version = f"v{len(calls) + 2:05d}"
        metadata = model_metadata(version, origin="retrained")
        return artifact.ModelArtifact(copy.deepcopy(worse), metadata, b"")

    rule = RollbackRule(maturity=delay.total_seconds(), min_frauds=10, hold=held)
    run = run_online(
        replayed, good, 10**9, retrain=retrain, retrain_every=timedelta(days=1), rollback_rule=rule
    )
    if not held:  # the control: each daily retrain supersedes the last one's watch
        assert run.rollbacks == [] and run.rollbacks_superseded == len(calls) - 1 > 2
        assert run.retrains_held == 0
        return
    # Every watch decided (each retrain rolled back), none superseded; retrains were held.
    assert run.rollbacks_superseded == 0 and run.retrains_held > 0
    assert len(run.rollbacks) >= 2 and run.rolled_back == len(run.rollbacks)
    assert run.held_retrains_fitted >= 1
    verdicts = [v["at"] for v in run.rollbacks]
    for went_live, verdict in zip(calls, verdicts, strict=False):
        # decided on labels final by then, and nothing fitted in between
        assert verdict >= went_live + delay.total_seconds()
        assert not [c for c in calls if went_live < c < verdict]
    # a held retrain is fitted at the verdict's own time
    assert set(verdicts) & set(calls)
    assert run.versions[:3] == [good.version, "v00003", good.version]


def test_the_hold_without_a_rollback_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from model_state.offline.evaluate import main

    with pytest.raises(SystemExit):
        main(["--stream", "handbook", "--rollback-hold", "--no-cache"])
    assert "--rollback-hold holds the next retrain for a --rollback verdict" in (
        capsys.readouterr().err
    )
