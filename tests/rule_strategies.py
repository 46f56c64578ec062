"""Hypothesis strategies for the rule language: well-typed canonical ASTs, rule-like text, and
payments drawn from small pools (so that equalities and list hits happen)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from hypothesis import strategies as st

from features.catalog import FEATURE_NAMES
from rules.names import CONTRACT_FIELDS, DOMAINS, LIST_FIELDS, NUMBER, PROBABILITY, STRING
from rules.syntax import (
    ACTIONS,
    Arith,
    BoolOp,
    Compare,
    InList,
    InValues,
    IsMissing,
    Name,
    Neg,
    Not,
    Num,
    Rule,
    StartsWith,
    StartsWithList,
    Str,
)

LISTS = {
    "blocked_cards": "card",
    "risky_bins": "bin",
    "high_risk_countries": "country",
    "bad_devices": "device",
    "bad_merchants": "merchant",
    "bad_terminals": "terminal",
}
NUMBER_NAMES = sorted(
    [n for n, t in CONTRACT_FIELDS.items() if t == NUMBER]
    + [*FEATURE_NAMES[:6], "hour_of_day", PROBABILITY]
)
STRING_NAMES = sorted(n for n, t in CONTRACT_FIELDS.items() if t == STRING)
STRING_POOL = [
    "c-1",
    "c-2",
    "4111",
    "411111-9",
    "NG",
    "FR",
    "US",
    "pos",
    "ecom",
    "7995",
    "d-1",
    "",
    'é"\\',
]
NUMBER_POOL = [0.0, 1.0, 3.0, 5.5, 100.0, 1e15, 1e-300]


def numbers(pool: bool) -> st.SearchStrategy[Num]:
    if pool:
        return st.sampled_from(NUMBER_POOL).map(Num)
    return st.floats(min_value=0.0, max_value=1e15, allow_nan=False).map(lambda v: Num(abs(v)))


def strings(pool: bool) -> st.SearchStrategy[Str]:
    if pool:
        return st.sampled_from(STRING_POOL).map(Str)
    return (
        st.text(
            st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn")),
            max_size=12,
        )
        .filter(str.isprintable)
        .map(Str)
    )


def number_exprs(pool: bool) -> st.SearchStrategy[Any]:
    leaves = st.one_of(numbers(pool), st.sampled_from(NUMBER_NAMES).map(Name))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            inner.map(Neg),
            st.builds(Arith, st.sampled_from(["+", "-", "*", "/"]), inner, inner),
        ),
        max_leaves=4,
    )


def string_exprs(pool: bool) -> st.SearchStrategy[Any]:
    return st.one_of(strings(pool), st.sampled_from(STRING_NAMES).map(Name))


def tests(pool: bool) -> st.SearchStrategy[Any]:
    n, s = number_exprs(pool), string_exprs(pool)
    list_tests = st.sampled_from(sorted(LISTS)).map(
        lambda name: (
            StartsWithList(Name("card_id"), name)
            if LISTS[name] == "bin"
            else InList(Name(LIST_FIELDS[LISTS[name]]), name)
        )
    )
    return st.one_of(
        st.builds(Compare, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), n, n),
        st.builds(Compare, st.sampled_from(["==", "!="]), s, s).map(possible),
        list_tests,
        st.builds(InValues, n, st.lists(numbers(pool), min_size=1, max_size=3).map(tuple)),
        st.builds(InValues, s, st.lists(strings(pool), min_size=1, max_size=3).map(tuple)).map(
            possible
        ),
        st.builds(StartsWith, s, strings(pool).map(lambda x: x.value)).map(possible),
        st.builds(IsMissing, st.one_of(n, s)),
    )


# A value each string field can hold (rules.names.DOMAINS): what a literal the field cannot hold
# becomes, since the parser refuses those (they never match).
HELD = {"currency": "EUR", "mcc": "7995", "channel": "pos", "country": "FR"}


def possible(node: Any) -> Any:
    """``node`` with every string literal compared with a field replaced, where that field
    cannot hold it, by one it can."""

    def fix(field: Any, literal: str, *, prefix: bool = False) -> str:
        if not isinstance(field, Name) or field.name not in DOMAINS:
            return literal
        domain = DOMAINS[field.name]
        return (
            literal
            if (domain.starts if prefix else domain.holds)(literal)
            else HELD.get(field.name, "c-1")
        )

    if isinstance(node, Compare):
        left, right = node.left, node.right
        if isinstance(right, Str):
            right = Str(fix(left, right.value))
        if isinstance(left, Str):
            left = Str(fix(right, left.value))
        return Compare(node.op, left, right)
    if isinstance(node, InValues):
        return InValues(node.operand, tuple(Str(fix(node.operand, v.value)) for v in node.values))
    if isinstance(node, StartsWith):
        return StartsWith(node.operand, fix(node.operand, node.prefix, prefix=True))
    return node


def conditions(pool: bool = False) -> st.SearchStrategy[Any]:
    return st.recursive(
        tests(pool),
        lambda inner: st.one_of(
            inner.map(Not), st.builds(BoolOp, st.sampled_from(["and", "or"]), inner, inner)
        ),
        max_leaves=6,
    )


def rules(pool: bool = False) -> st.SearchStrategy[Rule]:
    return st.builds(Rule, st.sampled_from(ACTIONS), conditions(pool), st.integers(0, 1_000_000))


TOKENS = [
    "decline", "review", "allow", "if", "and", "or", "not", "in", "starts", "with", "is",
    "missing", "priority", "amount_eur", "card_id", "country", "device_id", "latitude",
    "fraud_probability", "card_count_1h", "@blocked_cards", "@risky_bins", "@nope", "==", "!=",
    "<", "<=", ">", ">=", "+", "-", "*", "/", "(", ")", ",", "5", "1.5e3", "'FR'", '"x\\"y"',
    "\"", "'", "\\", "1e999", "#", "é", "\n", "__import__", "open", "=",
]  # fmt: skip
rule_like_text = st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join)


def payments(
    complete: bool = False,
) -> st.SearchStrategy[tuple[SimpleNamespace, dict[str, float], float, dict[str, Any]]]:
    """(payment, features, probability, row): the row is every name -> value, for the reference.
    ``complete``: every feature present and finite, as the flow computes them (the batch path
    over NumPy columns decides those; a payment lacking one is decided whole)."""
    number = (
        st.sampled_from([0.0, 1.0, 3.0, 5.5, 100.0, -2.0])
        if complete
        else st.sampled_from([0.0, 1.0, 3.0, 5.5, 100.0, -2.0, 1e300, math.nan, math.inf, None])
    )
    strings_ = st.sampled_from(STRING_POOL[:-2])

    @st.composite
    def build(draw: st.DrawFn) -> tuple[SimpleNamespace, dict[str, float], float, dict[str, Any]]:
        fields: dict[str, Any] = {}
        for name in STRING_NAMES:
            fields[name] = draw(st.none() if False else strings_)
        fields["device_id"] = draw(st.one_of(st.none(), strings_))
        fields["amount_minor"] = draw(st.sampled_from([0, 1, 3, 100, 10**12]))
        located = draw(st.booleans())
        fields["latitude"] = draw(st.sampled_from([0.0, 3.0, -2.0])) if located else None
        fields["longitude"] = draw(st.sampled_from([0.0, 5.5])) if located else None
        features = {}
        for name in NUMBER_NAMES:
            if name in CONTRACT_FIELDS or name == PROBABILITY:
                continue
            v = draw(number)
            if v is not None:
                features[name] = v
        probability = draw(st.sampled_from([0.0, 0.5, 0.97]))
        at = draw(st.sampled_from([1.0e9, 1.7e9, 2.0e9]))
        payment = SimpleNamespace(**fields, event_timestamp=at)
        row = {**fields, **features, PROBABILITY: probability}
        return payment, features, probability, row

    return build()


@st.composite
def raw_lists(draw: st.DrawFn) -> dict[str, tuple[str, dict[str, float | None]]]:
    """name -> (kind, value -> expiry): values from the pools, some expired at some times."""
    values = {
        "card": ["c-1", "c-2"],
        "bin": ["4111", "411111", "41", "c-"],
        "country": ["NG", "FR", "US"],
        "device": ["d-1"],
        "merchant": ["c-1", "NG"],
        "terminal": ["c-2", "pos"],
    }
    out = {}
    for name, kind in LISTS.items():
        chosen = draw(st.lists(st.sampled_from(values[kind]), unique=True, max_size=3))
        out[name] = (
            kind,
            {v: draw(st.sampled_from([None, 1.5e9, 3.0e9])) for v in chosen},
        )
    return out


def _constants(node: Any, out: dict[str, set[Any]]) -> None:
    """Every constant a name is compared with or tested against in ``node``."""
    if isinstance(node, BoolOp):
        _constants(node.left, out)
        _constants(node.right, out)
    elif isinstance(node, Not):
        _constants(node.operand, out)
    elif isinstance(node, Compare):
        for a, b in ((node.left, node.right), (node.right, node.left)):
            if isinstance(a, Name) and isinstance(b, Num | Str):
                out.setdefault(a.name, set()).add(b.value)
    elif isinstance(node, InValues) and isinstance(node.operand, Name):
        out.setdefault(node.operand.name, set()).update(v.value for v in node.values)


def near(conditions_: list[Any]) -> dict[str, list[Any]]:
    """Per name, values that sit on each side of every constant ``conditions_`` test it
    against (the constant, the floats just around it, a step either side)."""
    found: dict[str, set[Any]] = {}
    for c in conditions_:
        _constants(c, found)
    pools: dict[str, list[Any]] = {}
    for name, constants in found.items():
        values: set[Any] = set()
        for c in constants:
            if isinstance(c, str):
                values.add(c)
            else:
                values.update(
                    {c, math.nextafter(c, -math.inf), math.nextafter(c, math.inf), c - 1, c + 1}
                )
        pools[name] = sorted(values, key=repr)
    return pools


@st.composite
def example_payments(
    draw: st.DrawFn, pools: dict[str, list[Any]], list_values: dict[str, list[str]]
) -> tuple[SimpleNamespace, dict[str, float], float, dict[str, Any]]:
    """(payment, features, probability, row) for rules whose constants are ``pools``: every
    catalogue feature (a value around a constant, 0, NaN, inf; one rarely absent), the contract's
    fields from list entries and constants; the row is every name -> value, for the reference."""
    odd = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0])
    features: dict[str, float] = {}
    # one feature absent from one payment in eight: the flow never does it, the semantics say
    # missing, and the batch is then decided payment by payment
    absent = draw(st.sampled_from(FEATURE_NAMES)) if draw(st.integers(0, 7)) == 0 else None
    for name in FEATURE_NAMES:
        if name == absent:
            continue
        choices = pools.get(name, [])
        features[name] = float(
            draw(st.sampled_from(choices) | odd) if choices else draw(st.sampled_from([0.0, 1.0]))
        )
    strings_ = {
        "card_id": ["c-1", "c-2", "4111000011", "5500-9"],
        "merchant_id": ["m-1", "m-2"],
        "terminal_id": ["t-1", "t-2"],
        "device_id": ["d-1", "d-2"],
        "country": ["FR", "NG", "KP", "US"],
        "currency": ["EUR", "USD"],
        "mcc": ["5411", "6011", "7995"],
        "channel": ["pos", "ecom", "moto", "atm", "contactless"],
        "transaction_id": ["t"],
    }
    fields: dict[str, Any] = {}
    for name, choices in strings_.items():
        options = sorted({*choices, *list_values.get(name, []), *pools.get(name, [])})
        fields[name] = draw(st.sampled_from(options))
    if draw(st.booleans()):
        fields["device_id"] = None
    amounts = [int(a) for a in pools.get("amount_minor", []) if a >= 0 and a == int(a)]
    fields["amount_minor"] = draw(st.sampled_from([0, 1, 5_000, *amounts]))
    located = draw(st.booleans())
    fields["latitude"] = draw(st.sampled_from([0.0, 48.8])) if located else None
    fields["longitude"] = draw(st.sampled_from([2.3])) if located else None
    probability = draw(st.sampled_from([0.0, *pools.get(PROBABILITY, []), 0.99]))
    at = draw(st.sampled_from([1.0e9, 1.7e9, 2.0e9]))
    payment = SimpleNamespace(**fields, event_timestamp=at)
    row = {**fields, **features, PROBABILITY: probability}
    return payment, features, float(probability), row
