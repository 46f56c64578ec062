"""A rule's condition compiled to a plain Python callable: closures over the AST, never ``eval``,
``exec``, ``compile`` or pickle.

A compiled condition is called as ``condition(payment, features, probability)``: the contract's
:class:`~features.contract.Payment` (or anything with its attributes and ``event_timestamp``), the
feature dict the flow computed, and the model's probability. It returns a bool. Values follow
the semantics of :mod:`rules.syntax` (missing values; tested against :mod:`rules.reference`).

The common shapes get closures of their own (a name compared with a number, a field in a list),
so a typical atom costs one call and one dict look-up.

>>> from rules.syntax import parse
>>> test = compile_condition(parse("review if amount_eur > 100 and hour_of_day < 6").condition, {})
>>> test(None, {"amount_eur": 150.0, "hour_of_day": 3.0}, 0.1)
True
>>> test(None, {"amount_eur": 150.0, "hour_of_day": float("nan")}, 0.1)
False
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.decisions import Fired
from rules.lists import ListIndex
from rules.names import CONTRACT_FIELDS, PROBABILITY
from rules.syntax import (
    Arith,
    BoolOp,
    Compare,
    Expr,
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

Value = Callable[[Any, Mapping[str, float], float], Any]
Condition = Callable[[Any, Mapping[str, float], float], bool]

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


@dataclass(slots=True)
class CompiledRule:
    """A rule with its condition compiled, and what it reports when it fires."""

    rule_id: str
    rule: Rule
    status: str
    condition: Condition  # the whole condition
    fired: Fired = field(init=False)

    def __post_init__(self) -> None:
        self.fired = Fired(self.rule_id, self.rule.action, self.rule.priority, self.status)


class CompileError(ValueError):
    """A rule that parsed but cannot run here (a list it names is not loaded)."""


def getter(name: str) -> Value:
    """How to read ``name`` from (payment, features, probability); None when missing."""
    if name == PROBABILITY:
        return lambda p, f, q: q
    if name == "amount_minor":
        return lambda p, f, q: float(p.amount_minor)
    if name in CONTRACT_FIELDS:
        read = operator.attrgetter(name)
        return lambda p, f, q: read(p)

    def feature(p: Any, f: Mapping[str, float], q: float) -> float | None:
        v = f.get(name)
        if v is None or v - v != 0:  # absent, NaN or infinite: missing
            return None
        return v

    return feature


def compile_value(node: Expr, lists: Mapping[str, ListIndex]) -> Value:
    """A number or string expression as a callable."""
    if isinstance(node, Num | Str):
        constant = node.value
        return lambda p, f, q: constant
    if isinstance(node, Name):
        return getter(node.name)
    if isinstance(node, Neg):
        inner = compile_value(node.operand, lists)

        def negate(p: Any, f: Mapping[str, float], q: float) -> float | None:
            v = inner(p, f, q)
            return None if v is None else -v

        return negate
    if isinstance(node, Arith):
        return _arith(node, lists)
    raise TypeError(f"not a value: {type(node).__name__}")


def _arith(node: Arith, lists: Mapping[str, ListIndex]) -> Value:
    left = compile_value(node.left, lists)
    right = compile_value(node.right, lists)
    if node.op == "/":

        def divide(p: Any, f: Mapping[str, float], q: float) -> float | None:
            a = left(p, f, q)
            if a is None:
                return None
            b = right(p, f, q)
            if b is None or b == 0:
                return None
            x = a / b
            return x if x - x == 0 else None

        return divide
    op = ARITH[node.op]

    def arith(p: Any, f: Mapping[str, float], q: float) -> float | None:
        a = left(p, f, q)
        if a is None:
            return None
        b = right(p, f, q)
        if b is None:
            return None
        x = op(a, b)
        return x if x - x == 0 else None

    return arith


def compile_condition(node: Expr, lists: Mapping[str, ListIndex]) -> Condition:
    """A condition as a callable returning a bool."""
    if isinstance(node, BoolOp):
        left = compile_condition(node.left, lists)
        right = compile_condition(node.right, lists)
        if node.op == "and":
            return lambda p, f, q: left(p, f, q) and right(p, f, q)
        return lambda p, f, q: left(p, f, q) or right(p, f, q)
    if isinstance(node, Not):
        inner = compile_condition(node.operand, lists)
        return lambda p, f, q: not inner(p, f, q)
    if isinstance(node, Compare):
        return _compare(node, lists)
    if isinstance(node, InList | StartsWithList):
        index = lists.get(node.list_name)
        if index is None:
            raise CompileError(f"the rule names the list @{node.list_name}, which is not loaded")
        value = compile_value(node.operand, lists)
        contains = index.contains
        return lambda p, f, q: contains(value(p, f, q), p.event_timestamp)
    if isinstance(node, InValues):
        value = compile_value(node.operand, lists)
        allowed = frozenset(v.value for v in node.values)
        return lambda p, f, q: value(p, f, q) in allowed  # None is never among them
    if isinstance(node, StartsWith):
        value = compile_value(node.operand, lists)
        prefix = node.prefix

        def starts(p: Any, f: Mapping[str, float], q: float) -> bool:
            v = value(p, f, q)
            return v is not None and v.startswith(prefix)

        return starts
    if isinstance(node, IsMissing):
        value = compile_value(node.operand, lists)
        return lambda p, f, q: value(p, f, q) is None
    raise TypeError(f"not a condition: {type(node).__name__}")


def _compare(node: Compare, lists: Mapping[str, ListIndex]) -> Condition:
    op = COMPARE[node.op]
    if isinstance(node.right, Num | Str) and isinstance(node.left, Name):
        read = compile_value(node.left, lists)
        constant = node.right.value

        def with_constant(p: Any, f: Mapping[str, float], q: float) -> bool:
            v = read(p, f, q)
            return v is not None and op(v, constant)

        return with_constant
    left = compile_value(node.left, lists)
    right = compile_value(node.right, lists)

    def compare(p: Any, f: Mapping[str, float], q: float) -> bool:
        a = left(p, f, q)
        if a is None:
            return False
        b = right(p, f, q)
        return b is not None and op(a, b)

    return compare
