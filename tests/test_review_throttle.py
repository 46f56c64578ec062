"""The lockout rules of the review sign-in (``review.throttle``), pure: against a brute-force
reference that reads the whole history, and the two promises they make: a guesser gets at most
``threshold`` guesses per ``reset_after``, and every lock ends ``duration`` after the last guess
(an attacker cannot lock anyone out for longer than they keep paying for it)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from review.throttle import POLICY, Count, Limit, after_failure, after_success

T0 = datetime(2026, 3, 2, 9)
FAIL, OK, REFUSED = "failure", "success", "refused"

limits = st.builds(
    Limit,
    threshold=st.integers(1, 6),
    reset_after=st.integers(1, 20).map(lambda m: timedelta(minutes=m)),
    duration=st.integers(1, 40).map(lambda m: timedelta(minutes=m)),
)
# Attempts: seconds after the one before (0: the same instant), and whether the password is right.
# Whole minutes too, so that attempts fall exactly on the ends of runs and locks.
gaps = st.one_of(st.integers(0, 900), st.integers(0, 40).map(lambda minutes: minutes * 60))
histories = st.lists(st.tuples(gaps, st.booleans()), max_size=60)


def run(history: list[tuple[int, bool]], limit: Limit) -> list[tuple[datetime, str]]:
    """What the sign-in does with each attempt, driven by the rules under test."""
    count, now, seen = Count(), T0, []
    for gap, right in history:
        now += timedelta(seconds=gap)
        if count.locked_at(now):
            seen.append((now, REFUSED))
        elif right:
            count = after_success(count)
            seen.append((now, OK))
        else:
            count = after_failure(count, now, limit)
            seen.append((now, FAIL))
    return seen


def reference(history: list[tuple[int, bool]], limit: Limit) -> list[tuple[datetime, str]]:
    """The same decisions from the whole history: an attempt is refused while a lock runs; a
    lock starts at a failure that ends a run of ``threshold`` failures since the last success
    and the last lock, each within ``reset_after`` of the one before."""
    seen: list[tuple[datetime, str]] = []
    locks: list[tuple[int, datetime]] = []  # the attempt that locked, and when
    now = T0
    for gap, right in history:
        now += timedelta(seconds=gap)
        if any(start <= now < start + limit.duration for _, start in locks):
            seen.append((now, REFUSED))
            continue
        seen.append((now, OK if right else FAIL))
        if right:
            continue
        resets = [i for i, (_, o) in enumerate(seen[:-1]) if o == OK] + [i for i, _ in locks]
        since = max(resets, default=-1)  # the run counts the failures after this attempt
        failures = [t for t, o in seen[since + 1 :] if o == FAIL]
        run_ = [failures[-1]]
        for earlier in reversed(failures[:-1]):
            if run_[-1] - earlier >= limit.reset_after:
                break
            run_.append(earlier)
        if len(run_) >= limit.threshold:
            locks.append((len(seen) - 1, now))
    return seen


@settings(max_examples=600)
@given(history=histories, limit=limits)
def test_the_rules_decide_as_the_reference_reads_the_history(
    history: list[tuple[int, bool]], limit: Limit
) -> None:
    assert run(history, limit) == reference(history, limit)


@settings(max_examples=600)
@given(seconds=st.lists(gaps, max_size=80), limit=limits)
def test_a_guesser_gets_at_most_threshold_guesses_per_reset_after(
    seconds: list[int], limit: Limit
) -> None:
    if limit.duration < limit.reset_after:  # the policy's shape: a lock outlasts a run's reset
        limit = Limit(
            threshold=limit.threshold, reset_after=limit.reset_after, duration=limit.reset_after
        )
    guesses = [t for t, o in run([(g, False) for g in seconds], limit) if o == FAIL]
    for i, start in enumerate(guesses):
        within = [t for t in guesses[i:] if t - start < limit.reset_after]
        assert len(within) <= limit.threshold


@settings(max_examples=600)
@given(history=histories, limit=limits, later=st.integers(0, 3600))
def test_every_lock_ends_duration_after_the_last_guess(
    history: list[tuple[int, bool]], limit: Limit, later: int
) -> None:
    seen = run(history, limit)
    guesses = [t for t, o in seen if o == FAIL]
    after = (guesses[-1] if guesses else T0) + limit.duration + timedelta(seconds=later)
    end = seen[-1][0] if seen else T0
    # The same history, then one more attempt at least `duration` after the last guess.
    extra = (after - end).total_seconds()
    if extra < 0:
        return
    last = run([*history, (int(extra) + 1, True)], limit)[-1]
    assert last[1] == OK


def test_the_policy_is_what_the_readme_says() -> None:
    assert (POLICY.account.threshold, POLICY.address.threshold, POLICY.device.threshold) == (
        5,
        20,
        5,
    )
    for limit in (POLICY.account, POLICY.address, POLICY.device):
        assert limit.reset_after == timedelta(minutes=15)
        assert limit.duration == timedelta(minutes=30)


def test_a_limit_that_could_never_lock_or_end_is_refused() -> None:
    with pytest.raises(ValueError, match="expected at least 1 failure"):
        Limit(threshold=0, reset_after=timedelta(minutes=1), duration=timedelta(minutes=1))
    with pytest.raises(ValueError, match="expected both > 0"):
        Limit(threshold=3, reset_after=timedelta(0), duration=timedelta(minutes=1))
