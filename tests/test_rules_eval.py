"""Every evaluator of a condition agrees with the reference interpreter: the closures, the NumPy
columns and the indexed ruleset; and the semantics of missing values, division by zero and NaN."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.compile import compile_condition
from rules.decisions import Fired, decide
from rules.lists import ListIndex
from rules.names import CONTRACT_FIELDS, NUMBER, PROBABILITY, TYPES
from rules.reference import holds
from rules.ruleset import RuleSpec, compile_ruleset
from rules.syntax import parse, to_text
from rules.vector import Columns, evaluate
from test_data.rule_examples import LIST_KINDS, RULES
from tests.rule_strategies import (
    LISTS,
    conditions,
    example_payments,
    near,
    payments,
    raw_lists,
    rules,
)


def indexes(raw):
    return {name: ListIndex.build(name, kind, entries) for name, (kind, entries) in raw.items()}


def columns_row(payment, features, probability):
    """Every name -> its value as the backtest's columns hold it."""
    row = {}
    for name, kind in TYPES.items():
        if name == PROBABILITY:
            row[name] = probability
        elif name in CONTRACT_FIELDS:
            v = getattr(payment, name)
            row[name] = (float(v) if v is not None else math.nan) if kind == NUMBER else v
        else:
            v = features.get(name)
            row[name] = math.nan if v is None else v
    return row


def as_columns(drawn):
    rows = [columns_row(p, f, q) for p, f, q, _ in drawn]
    cols = {}
    for name, kind in TYPES.items():
        values = [r[name] for r in rows]
        cols[name] = np.array(values, dtype=float if kind == NUMBER else object)
    ts = np.array([p.event_timestamp for p, *_ in drawn])
    return Columns(len(rows), cols, ts)


def decide_drawn(ruleset, drawn, models, vector_from):
    """``decide_batch`` over drawn (payment, features, probability, row) tuples."""
    return ruleset.decide_batch(
        [p for p, *_ in drawn],
        [f for _, f, _, _ in drawn],
        [q for *_, q, _ in drawn],
        models,
        vector_from=vector_from,
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(conditions(pool=True), st.lists(payments(), min_size=1, max_size=8), raw_lists())
def test_closures_and_columns_agree_with_the_reference(condition, drawn, raw):
    lists = indexes(raw)
    compiled = compile_condition(condition, lists)
    expected = [holds(condition, row, raw, p.event_timestamp) for p, _, _, row in drawn]
    assert [compiled(p, f, q) for p, f, q, _ in drawn] == expected
    assert evaluate(condition, as_columns(drawn), lists).tolist() == expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(rules(pool=True), st.sampled_from(["active", "shadow"])), max_size=12),
    st.booleans().flatmap(lambda complete: st.lists(payments(complete), min_size=1, max_size=6)),
    raw_lists(),
    st.sampled_from([1, 10**9]),  # guards over the batch in NumPy, or payment by payment
)
def test_the_indexed_ruleset_fires_exactly_the_rules_whose_condition_holds(
    specs, drawn, raw, vector_from
):
    lists = indexes(raw)
    ruleset = compile_ruleset(
        [RuleSpec(f"r{i}", to_text(rule), status) for i, (rule, status) in enumerate(specs)],
        lists,
        version=1,
    )
    models = [("approve", "review", "decline")[i % 3] for i in range(len(drawn))]
    outcomes = decide_drawn(ruleset, drawn, models, vector_from)
    for (p, f, q, row), model, outcome in zip(drawn, models, outcomes, strict=True):
        got = sorted(x.rule_id for x in ruleset.fired(p, f, q))
        whole = sorted(x.rule_id for x in ruleset.fired_whole(p, f, q))
        holding = [
            Fired(f"r{i}", rule.action, rule.priority, status)
            for i, (rule, status) in enumerate(specs)
            if holds(rule.condition, row, raw, p.event_timestamp)
        ]
        assert got == whole == sorted(x.rule_id for x in holding)
        assert outcome == decide(model, q, holding)


EXAMPLES = [(rule_id, parse(text, LIST_KINDS)) for rule_id, text in RULES]
NEAR = near([rule.condition for _, rule in EXAMPLES])
LISTED = {  # kind -> values a list of the examples may hold (the payments draw them too)
    "card": ["c-1", "c-2"],
    "bin": ["4111", "411100", "5500-", "c-"],
    "country": ["NG", "RU", "FR"],
    "merchant": ["m-1", "m-2"],
    "terminal": ["t-1"],
    "device": ["d-1"],
}


@st.composite
def example_lists(draw):
    """The examples' lists, each holding a few of :data:`LISTED`, some expiring."""
    out = {}
    for name, kind in LIST_KINDS.items():
        chosen = draw(st.lists(st.sampled_from(LISTED[kind]), unique=True, max_size=3))
        out[name] = (kind, {v: draw(st.sampled_from([None, 1.5e9, 3.0e9])) for v in chosen})
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(["active", "shadow", "disabled"]), min_size=50, max_size=50),
    example_lists(),
    st.sampled_from([1, 10**9]),  # guards over the batch in NumPy, or payment by payment
    st.data(),
)
def test_the_fifty_example_rules_decide_as_the_reference_says(statuses, raw, vector_from, data):
    """decide_batch over the benchmark's rules, with any statuses, on payments whose features sit
    on either side of every threshold (and NaN, inf, absent): the outcome (decision, deciding
    rule, rules fired, shadow hits, reasons) is :func:`decide` over the rules the reference
    interpreter says hold."""
    lists = indexes(raw)
    ruleset = compile_ruleset(
        [RuleSpec(i, t, s) for (i, t), s in zip(RULES, statuses, strict=True)], lists, version=1
    )
    fields = {"card_id": LISTED["card"] + ["4111000011"], "merchant_id": LISTED["merchant"]}
    fields |= {"terminal_id": LISTED["terminal"], "country": LISTED["country"]}
    drawn = data.draw(st.lists(example_payments(NEAR, fields), min_size=1, max_size=20))
    models = data.draw(
        st.lists(
            st.sampled_from(["approve", "review", "decline"]),
            min_size=len(drawn),
            max_size=len(drawn),
        )
    )
    outcomes = decide_drawn(ruleset, drawn, models, vector_from)
    for (p, _, q, row), model, outcome in zip(drawn, models, outcomes, strict=True):
        holding = [
            Fired(rule_id, rule.action, rule.priority, status)
            for (rule_id, rule), status in zip(EXAMPLES, statuses, strict=True)
            if status != "disabled" and holds(rule.condition, row, raw, p.event_timestamp)
        ]
        assert outcome == decide(model, q, holding)


def _one(text, features=None, **fields):
    base = dict(
        transaction_id="t", card_id="c-1", merchant_id="m", terminal_id="p", amount_minor=100,
        currency="EUR", mcc="5411", channel="pos", country="FR", device_id=None, latitude=None,
        longitude=None, event_timestamp=1.7e9,
    )  # fmt: skip
    payment = SimpleNamespace(**{**base, **fields})
    condition = parse("decline if " + text, LISTS).condition
    raw = {"blocked_cards": ("card", {"c-1": 1.8e9}), "risky_bins": ("bin", {"4111": None})}
    raw = {**{n: (k, {}) for n, k in LISTS.items()}, **raw}
    compiled = compile_condition(condition, indexes(raw))(payment, features or {}, 0.5)
    row = {**vars(payment), **(features or {}), PROBABILITY: 0.5}
    assert compiled == holds(condition, row, raw, payment.event_timestamp)
    return compiled


@pytest.mark.parametrize(
    ("text", "features", "fields", "expected"),
    [
        # division by zero is missing: every comparison with it is false, `is missing` true
        (
            "amount_eur / card_amount_mean_30d > 3",
            {"amount_eur": 5.0, "card_amount_mean_30d": 0.0},
            {},
            False,
        ),
        (
            "amount_eur / card_amount_mean_30d <= 3",
            {"amount_eur": 5.0, "card_amount_mean_30d": 0.0},
            {},
            False,
        ),
        (
            "amount_eur / card_amount_mean_30d is missing",
            {"amount_eur": 5.0, "card_amount_mean_30d": 0.0},
            {},
            True,
        ),
        (
            "not amount_eur / card_amount_mean_30d > 3",
            {"amount_eur": 5.0, "card_amount_mean_30d": 0.0},
            {},
            True,
        ),
        # NaN or infinite features count as missing; an absent feature too
        ("amount_eur > 1", {"amount_eur": math.nan}, {}, False),
        ("amount_eur != 1", {"amount_eur": math.nan}, {}, False),
        ("amount_eur is missing", {"amount_eur": math.inf}, {}, True),
        ("amount_eur is missing", {}, {}, True),
        # overflow is missing
        ("amount_eur * amount_eur * amount_eur > 1", {"amount_eur": 1e200}, {}, False),
        # optional fields
        ("device_id == 'd-1'", None, {}, False),
        ("device_id != 'd-1'", None, {}, False),
        ("not device_id == 'd-1'", None, {}, True),
        ("device_id is missing", None, {}, True),
        ("latitude > -100", None, {}, False),
        ("latitude > -100", None, {"latitude": 1.0, "longitude": 2.0}, True),
        # lists: expiry against the payment's event time; prefixes
        ("card_id in @blocked_cards", None, {}, True),
        ("card_id in @blocked_cards", None, {"event_timestamp": 1.9e9}, False),
        ("card_id starts with @risky_bins", None, {"card_id": "41119999"}, True),
        ("card_id starts with @risky_bins", None, {"card_id": "411"}, False),
        ("amount_minor / 100 == 1", None, {}, True),
        ("fraud_probability >= 0.5", None, {}, True),
    ],
)
def test_missing_values_division_by_zero_nan_and_lists(text, features, fields, expected):
    assert _one(text, features, **fields) is expected


def test_a_batch_of_unequal_lengths_is_refused_with_the_counts():
    ruleset = compile_ruleset([RuleSpec("big", "review if amount_eur > 10")], {}, version=1)
    with pytest.raises(ValueError, match=r"as many features \(1\), probabilities \(2\)"):
        ruleset.decide_batch([None, None], [{}], [0.1, 0.2], ["approve", "approve"])
