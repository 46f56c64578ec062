"""Terminal and merchant features, table-driven: counts at window edges, point-in-time fraud."""

from __future__ import annotations

import copy
import pickle
from datetime import timedelta

import pytest
from msgspec.structs import replace

from features.catalog import DAY, HOUR, MINUTE
from features.contract import Payment
from features.entity import EntityHistory
from tests.builders import BASE, payment

T0 = BASE.timestamp()
PLAIN = payment()


def at(seconds: float) -> Payment:
    return replace(PLAIN, event_time=BASE + timedelta(seconds=seconds))


# A step is ("pay", seconds) or ("label", payment seconds, reported seconds, is_fraud).
Step = tuple[object, ...]


def scored(steps: list[Step], seconds: float, prefix: str = "terminal") -> dict[str, float]:
    entity = EntityHistory(prefix)
    for step in steps:
        if step[0] == "pay":
            entity.observe(at(step[1]))  # type: ignore[arg-type]
        else:
            _, paid, reported, is_fraud = step
            entity.learn_label(T0 + paid, T0 + reported, is_fraud)  # type: ignore[operator]
    return entity.observe(at(seconds))


FOUR = [("pay", 0), ("pay", 60), ("pay", 120), ("pay", 180)]
CASES = [
    # id, steps, scored at (seconds after BASE), expected subset
    ("first payment", [], 0, {"terminal_count_1d": 0, "terminal_fraud_rate_7d": 0}),
    ("own payment not counted", [("pay", 0)], 0, {"terminal_count_1d": 1, "terminal_count_30d": 1}),
    (
        "1d: exactly W old is in",
        [("pay", 30 * MINUTE)],
        DAY + 30 * MINUTE,
        {"terminal_count_1d": 1},
    ),
    ("1d: next hop is out", [("pay", 30 * MINUTE)], DAY + HOUR, {"terminal_count_1d": 0}),
    ("30d: next hop is out", [("pay", 12 * HOUR)], 31 * DAY, {"terminal_count_30d": 0}),
    (
        "fraud known by the payment's time",
        [*FOUR, ("label", 0, DAY, True)],
        2 * DAY,
        {"terminal_fraud_rate_7d": 0.25, "terminal_fraud_rate_30d": 0.25},
    ),
    (
        "reported exactly at the payment's time counts",
        [*FOUR, ("label", 0, DAY, True)],
        DAY,
        {"terminal_fraud_rate_7d": 0.25},
    ),
    (
        "reported after the payment's time does not count (delayed feedback)",
        [*FOUR, ("label", 0, DAY + 1, True)],
        DAY,
        {"terminal_fraud_rate_7d": 0.0},
    ),
    (
        "a legitimate verdict changes nothing",
        [*FOUR, ("label", 0, DAY, False)],
        2 * DAY,
        {"terminal_fraud_rate_7d": 0.0},
    ),
    (
        "a label reported before its payment is taken as reported at the payment",
        [*FOUR, ("label", 180, 0, True)],
        180,
        {"terminal_fraud_rate_7d": 0.25},
    ),
    (
        "fraud paid out of the 7d window but in the 30d one",
        [*FOUR, ("label", 0, DAY, True), ("pay", 9 * DAY)],
        9 * DAY + 60,
        {"terminal_fraud_rate_7d": 0.0, "terminal_fraud_rate_30d": 0.2},
    ),
    (
        "labels for payments this key never counted: rate capped at 1",
        [("label", 0, 60, True), ("label", 1, 60, True)],
        120,
        {"terminal_fraud_rate_7d": 1.0, "terminal_count_7d": 0},
    ),
    (
        "a late payment (beyond the lateness) is placed, and sees labels, at watermark - 15 min",
        [*FOUR, ("pay", 2 * HOUR), ("label", 0, HOUR + 40 * MINUTE, True)],
        0,
        {"terminal_fraud_rate_7d": 0.25, "terminal_count_1d": 4},
    ),
]


@pytest.mark.parametrize(
    ("steps", "seconds", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_entity_features(steps: list[Step], seconds: float, expected: dict[str, float]) -> None:
    got = scored(steps, seconds)
    assert {name: got[name] for name in expected} == expected


def test_prefix_names_the_features() -> None:
    assert list(EntityHistory("merchant").observe(at(0))) == [
        "merchant_count_1d",
        "merchant_count_7d",
        "merchant_count_30d",
        "merchant_fraud_rate_7d",
        "merchant_fraud_rate_30d",
        "merchant_settled_fraud_rate_1d",
        "merchant_settled_fraud_rate_7d",
        "merchant_settled_fraud_rate_30d",
    ]


def test_settled_rate_sees_frauds_whose_verdict_came_after_the_delay() -> None:
    """Verdicts come exactly 7 days after each payment (the handbook's protocol): the plain
    7-day rate divides by last week's unjudged payments, the settled rate by judged ones."""
    hour = HOUR
    steps: list[Step] = []
    for i in range(10):  # day 0: ten payments an hour apart, every second one a fraud
        steps.append(("pay", i * hour))
        steps.append(("label", i * hour, i * hour + 7 * DAY, i % 2 == 0))
    for i in range(4):  # day 8: four more
        steps.append(("pay", 8 * DAY + i * hour))
    got = scored(steps, 8 * DAY + 5 * hour)
    # Day 0 is older than the 7-day plain window's reach, so the plain rate sees nothing.
    assert got["terminal_fraud_rate_7d"] == 0.0
    # Settled 1d: tiles [day 0 05:00, day 1 05:00): payments at 5..9 h, frauds at 6 and 8 h.
    assert got["terminal_settled_fraud_rate_1d"] == 2 / 5
    assert got["terminal_settled_fraud_rate_7d"] == 5 / 10
    assert got["terminal_settled_fraud_rate_30d"] == 5 / 10
    # At 7 days 9.5 hours the span is [day -7 09:00, 09:00): payments 0..8 h, frauds 0..8 h.
    assert scored(steps[:-4], 7 * DAY + 9.5 * hour)["terminal_settled_fraud_rate_7d"] == 5 / 9
    # A verdict reported later than the delay is not known until it comes.
    late = [
        ("label", 4 * hour, 9 * DAY, True) if s[:2] == ("label", 4 * hour) else s for s in steps
    ]
    assert scored(late[:-4], 7 * DAY + 9.5 * hour)["terminal_settled_fraud_rate_7d"] == 4 / 9


@pytest.mark.parametrize("prefix", ["", "Terminal", "terminal-id", "1st"])
def test_prefix_must_be_a_lower_case_identifier(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"EntityHistory: prefix must be a lower-case identifier"):
        EntityHistory(prefix)


def test_a_label_before_any_payment_is_kept_for_later_payments() -> None:
    entity = EntityHistory("terminal")
    entity.learn_label(T0, T0 + HOUR, True)
    assert entity.observe(at(2 * HOUR))["terminal_fraud_rate_7d"] == 1.0


def test_hot_merchant_state_is_bounded_and_round_trips() -> None:
    merchant = EntityHistory("merchant")
    for i in range(40 * 2_000):  # 2,000 payments a day for 40 days
        merchant.observe(at(i * 43.2))
        if i % 50 == 0:
            merchant.learn_label(T0 + i * 43.2, T0 + i * 43.2 + 3 * DAY, True)
    # Hourly tiles reach back two weeks (the settled 7-day window ends a week back), daily 37 days.
    bounds = (14 * 24 + 1, 38)
    assert all(len(t) <= n for t, n in zip(merchant._counts, bounds, strict=True)), repr(merchant)
    assert len(merchant._ts) <= 15 * MINUTE / 43.2 + 1
    assert len(pickle.dumps(merchant)) < 12_000
    snapshots = [pickle.loads(pickle.dumps(merchant)), copy.deepcopy(merchant)]
    expected = merchant.observe(at(40 * DAY))
    # 1 in 50 is fraud, reported 3 days later: by day 40 only days 33 to 37 of the window are known
    assert expected["merchant_fraud_rate_7d"] == pytest.approx(0.02 * 4 / 7, rel=0.01)
    # The settled week (days 26 to 33) is fully judged.
    assert expected["merchant_settled_fraud_rate_7d"] == pytest.approx(0.02, rel=0.01)
    for restored in snapshots:
        assert restored.observe(at(40 * DAY)) == expected


def test_entity_lateness_and_expire_reject_what_is_not_a_time() -> None:
    with pytest.raises(ValueError, match=r"EntityHistory: lateness must be a finite number"):
        EntityHistory("terminal", lateness=float("inf"))
    with pytest.raises(ValueError, match=r"EntityHistory.expire: now must be finite POSIX"):
        EntityHistory("terminal").expire(float("nan"))


def test_the_flow_discards_a_key_only_when_no_later_payment_could_see_it() -> None:
    from dataflows.scoring import IDLE_KEY_SECONDS
    from features.card import CardHistory

    for state in (EntityHistory("terminal"), CardHistory()):
        state.observe(at(0))
        if isinstance(state, EntityHistory):
            state.learn_label(T0, T0 + DAY, True)
        # What the flow's idle timeout allows: the state holds nothing a payment can see.
        assert state.expire(T0 + IDLE_KEY_SECONDS)
    late = EntityHistory("terminal")
    late.observe(at(0))
    late.learn_label(T0, T0 + DAY, True)
    # A day earlier the settled 30-day rate still counts that payment and its fraud.
    assert not late.expire(T0 + IDLE_KEY_SECONDS - 2 * DAY)
