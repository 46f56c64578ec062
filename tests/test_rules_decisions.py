"""The precedence of rules over the model, written down in rules.decisions, as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.decisions import MAX_REASONS, Fired, decide, order, severity

decisions = st.sampled_from(["approve", "review", "decline"])
fired_rules = st.builds(
    Fired,
    st.text("abcxyz-_.0123456789", min_size=1, max_size=8),
    st.sampled_from(["allow", "decline", "review"]),
    st.integers(0, 5),
    st.sampled_from(["active", "shadow", "disabled"]),
)
fired_lists = st.lists(fired_rules, max_size=8, unique_by=lambda f: f.rule_id)


@given(decisions, st.floats(0, 1), fired_lists)
def test_the_precedence(model, probability, fired):
    outcome = decide(model, probability, fired)
    active = [f for f in fired if f.status == "active"]
    actions = {f.action for f in active}
    if "allow" in actions:
        expected = "approve"
    elif "decline" in actions:
        expected = "decline"
    elif "review" in actions:
        expected = "decline" if model == "decline" else "review"
    else:
        expected = model
    assert outcome.decision == expected
    ranked = sorted(active, key=order)
    assert outcome.rules_fired == tuple(f.rule_id for f in ranked)
    if ranked and not (ranked[0].action == "review" and model == "decline"):
        top = ranked[0]
        assert outcome.decided_by == top.rule_id
        assert outcome.reasons[0] == f"{top.action} by rule {top.rule_id} (priority {top.priority})"
    else:
        assert outcome.decided_by == "model"
    assert len(outcome.reasons) <= MAX_REASONS
    assert all(len(r) <= 160 for r in outcome.reasons)
    # only an allow rule makes a payment less severe than the model said
    if "allow" not in actions:
        assert severity(outcome.decision) >= severity(model)


@given(decisions, st.floats(0, 1), fired_lists, fired_lists)
def test_shadow_and_disabled_rules_never_change_a_decision(model, probability, fired, others):
    quiet = [
        Fired("q" + f.rule_id, f.action, f.priority, "shadow" if i % 2 else "disabled")
        for i, f in enumerate(others)
    ]
    alone = decide(model, probability, fired)
    both = decide(model, probability, [*fired, *quiet])
    assert (both.decision, both.decided_by, both.rules_fired, both.reasons) == (
        alone.decision,
        alone.decided_by,
        alone.rules_fired,
        alone.reasons,
    )
    shadows = sorted((f for f in [*fired, *quiet] if f.status == "shadow"), key=order)
    assert both.shadow_hits == tuple(f.rule_id for f in shadows)


@given(decisions, st.floats(0, 1), fired_lists, st.randoms())
def test_the_order_rules_fire_in_does_not_matter(model, probability, fired, random):
    shuffled = list(fired)
    random.shuffle(shuffled)
    assert decide(model, probability, fired) == decide(model, probability, shuffled)


@pytest.mark.parametrize(
    ("model", "fired", "decision", "by"),
    [
        ("decline", [("vip", "allow", 50), ("burst", "decline", 1)], "approve", "vip"),
        (
            "approve",
            [("b", "decline", 20), ("a", "decline", 20), ("c", "decline", 10)],
            "decline",
            "c",
        ),
        ("approve", [("b", "decline", 20), ("a", "decline", 20)], "decline", "a"),
        ("approve", [("A", "review", 5), ("a", "review", 5)], "review", "A"),  # byte order
        ("review", [("r", "review", 1)], "review", "r"),
        ("decline", [("r", "review", 1)], "decline", "model"),
        ("approve", [], "approve", "model"),
    ],
)
def test_examples(model, fired, decision, by):
    outcome = decide(model, 0.5, [Fired(i, a, p, "active") for i, a, p in fired])
    assert (outcome.decision, outcome.decided_by) == (decision, by)
