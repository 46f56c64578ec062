"""The reference interpreter: the rule semantics of :mod:`rules.syntax`, written as plainly as
possible by walking the AST. Slow; the compiled forms (:mod:`rules.compile`, :mod:`rules.vector`,
:mod:`rules.ruleset`) are property-tested against it. Lists are given as plain dicts
(value -> POSIX expiry or None), so the hashed in-process form is checked too.

>>> from rules.syntax import parse
>>> cond = parse("decline if amount_eur / card_amount_mean_30d > 3").condition
>>> holds(cond, {"amount_eur": 10.0, "card_amount_mean_30d": 0.0}, {}, 0.0)
False
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rules.names import PREFIX_KINDS
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
    StartsWith,
    StartsWithList,
    Str,
)

MISSING = None
RawLists = Mapping[str, tuple[str, Mapping[str, float | None]]]  # name -> (kind, entries)


def value_of(node: Expr, row: Mapping[str, Any]) -> Any:
    """``row``: every name -> its value (None: absent). Returns a finite float, a str or None."""
    if isinstance(node, Num | Str):
        return node.value
    if isinstance(node, Name):
        v = row.get(node.name)
        if isinstance(v, bool) or v is None:
            return None if v is None else float(v)
        if isinstance(v, int | float):
            return float(v) if math.isfinite(v) else None
        return v
    if isinstance(node, Neg):
        v = value_of(node.operand, row)
        return None if v is None else -v
    if isinstance(node, Arith):
        a, b = value_of(node.left, row), value_of(node.right, row)
        if a is None or b is None:
            return None
        if node.op == "+":
            x = a + b
        elif node.op == "-":
            x = a - b
        elif node.op == "*":
            x = a * b
        else:
            if b == 0:
                return None
            x = a / b
        return x if math.isfinite(x) else None
    raise TypeError(type(node).__name__)


def holds(node: Expr, row: Mapping[str, Any], lists: RawLists, when: float) -> bool:
    """Whether condition ``node`` holds for ``row``; ``when``: the payment's event time (POSIX)."""
    if isinstance(node, BoolOp):
        a = holds(node.left, row, lists, when)
        b = holds(node.right, row, lists, when)
        return (a and b) if node.op == "and" else (a or b)
    if isinstance(node, Not):
        return not holds(node.operand, row, lists, when)
    if isinstance(node, Compare):
        a, b = value_of(node.left, row), value_of(node.right, row)
        if a is None or b is None:
            return False
        return {
            "==": a == b,
            "!=": a != b,
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
        }[node.op]
    if isinstance(node, InValues):
        v = value_of(node.operand, row)
        return v is not None and any(v == x.value for x in node.values)
    if isinstance(node, StartsWith):
        v = value_of(node.operand, row)
        return v is not None and v.startswith(node.prefix)
    if isinstance(node, InList | StartsWithList):
        v = value_of(node.operand, row)
        kind, entries = lists[node.list_name]
        if v is None:
            return False
        candidates = [v[:n] for n in range(1, len(v) + 1)] if kind in PREFIX_KINDS else [v]
        for c in candidates:
            if c in entries:
                expiry = entries[c]
                if expiry is None or when < expiry:
                    return True
        return False
    if isinstance(node, IsMissing):
        return value_of(node.operand, row) is None
    raise TypeError(type(node).__name__)
