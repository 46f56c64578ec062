"""A condition evaluated over whole columns at once (NumPy): what the backtest runs over a million
stored payments. Same semantics as :mod:`rules.compile` (property-tested against it and the
reference interpreter): numbers are ``float64`` columns where NaN marks a missing value, strings
``object`` columns where None does; arithmetic without a finite result is missing.

>>> import numpy as np
>>> from rules.syntax import parse
>>> amounts, countries = np.array([5.0, 500.0]), np.array(["FR", None], object)
>>> cols = Columns(2, {"amount_eur": amounts, "country": countries})
>>> evaluate(parse("review if amount_eur > 100 or country == 'FR'").condition, cols, {}).tolist()
[True, True]
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from rules.compile import CompileError
from rules.lists import ListIndex
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


@dataclass
class Columns:
    """``size`` payments as columns: name -> array (float64 for numbers, object for strings);
    ``event_ts``: event times (POSIX seconds), for list expiries."""

    size: int
    columns: dict[str, np.ndarray]
    event_ts: np.ndarray | None = None
    _lookups: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    _names: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _texts: dict[int, tuple[np.ndarray, list[str]]] = field(default_factory=dict)


def _value(node: Expr, cols: Columns) -> np.ndarray:
    if isinstance(node, Num):
        return np.full(cols.size, node.value)
    if isinstance(node, Str):
        out = np.empty(cols.size, dtype=object)
        out[:] = node.value
        return out
    if isinstance(node, Name):
        return _name(node.name, cols)[0]
    if isinstance(node, Neg):
        return -_value(node.operand, cols)
    if isinstance(node, Arith):
        a, b = _value(node.left, cols), _value(node.right, cols)
        with np.errstate(all="ignore"):
            if node.op == "+":
                x = a + b
            elif node.op == "-":
                x = a - b
            elif node.op == "*":
                x = a * b
            else:
                x = np.where(b == 0, np.nan, a / np.where(b == 0, 1.0, b))
        return np.where(np.isfinite(x), x, np.nan)
    raise TypeError(type(node).__name__)


def _name(name: str, cols: Columns) -> tuple[np.ndarray, np.ndarray]:
    """A named column (non-finite numbers made NaN) and where it is present, once per
    ``cols``: every rule that names it shares them."""
    if name not in cols._names:
        column = cols.columns[name]
        if column.dtype != object:
            column = np.where(np.isfinite(column), column, np.nan)
        cols._names[name] = (column, _present(column))
    return cols._names[name]


def _present_at(node: Expr, values: np.ndarray, cols: Columns) -> np.ndarray | None:
    """Where ``node``'s ``values`` are present; None: everywhere (a literal)."""
    if isinstance(node, Num | Str):
        return None
    if isinstance(node, Name):
        return _name(node.name, cols)[1]
    return _present(values)


def _present(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.not_equal(values, None)
    return ~np.isnan(values)


def _look_up(index: ListIndex, values: np.ndarray, cols: Columns) -> np.ndarray:
    """``index.contains`` for every value: the hash tests in C-level maps, the expiries (and
    a prefix list's candidates) checked for the hits only."""
    key = id(values)
    if key not in cols._texts:  # "" is on no list
        listed = values.tolist()
        if not all(map(str.__instancecheck__, listed)):
            listed = [v if isinstance(v, str) else "" for v in listed]
        cols._texts[key] = (values, listed)
    text = cols._texts[key][1]
    if index.by_length:
        maybe = np.zeros(cols.size, dtype=bool)
        for length, hashes in index.by_length:
            cut = map(operator.itemgetter(slice(0, length)), text)
            maybe |= np.fromiter(map(hashes.__contains__, map(hash, cut)), bool, cols.size)
    else:
        maybe = np.fromiter(map(index.hashes.__contains__, map(hash, text)), bool, cols.size)
    if not index.by_length and not index.expiries:  # the hash test is contains() itself
        return maybe
    hits = np.flatnonzero(maybe)
    if hits.size:
        ts = cols.event_ts if cols.event_ts is not None else np.zeros(cols.size)
        contains = index.contains
        maybe[hits] = [
            contains(text[i], t) for i, t in zip(hits.tolist(), ts[hits].tolist(), strict=True)
        ]
    return maybe


def evaluate(node: Expr, cols: Columns, lists: Mapping[str, ListIndex]) -> np.ndarray:
    """A boolean array: whether the condition holds for each payment."""
    if isinstance(node, BoolOp):
        a = evaluate(node.left, cols, lists)
        b = evaluate(node.right, cols, lists)
        return (a & b) if node.op == "and" else (a | b)
    if isinstance(node, Not):
        return ~evaluate(node.operand, cols, lists)
    if isinstance(node, Compare):
        a, b = _value(node.left, cols), _value(node.right, cols)
        with np.errstate(invalid="ignore"):
            result = {
                "==": np.equal,
                "!=": np.not_equal,
                "<": np.less,
                "<=": np.less_equal,
                ">": np.greater,
                ">=": np.greater_equal,
            }[node.op](a, b)
        out = np.asarray(result, dtype=bool)
        for present in (_present_at(node.left, a, cols), _present_at(node.right, b, cols)):
            if present is not None:
                out = out & present
        return out
    if isinstance(node, InValues):
        v = _value(node.operand, cols)
        allowed = frozenset(x.value for x in node.values)
        if v.dtype == object:
            return np.fromiter(map(allowed.__contains__, v), dtype=bool, count=cols.size)
        return np.isin(v, np.array(sorted(allowed), dtype=float))
    if isinstance(node, StartsWith):
        v = _value(node.operand, cols)
        prefix = node.prefix
        return np.fromiter(
            (x is not None and x.startswith(prefix) for x in v), dtype=bool, count=cols.size
        )
    if isinstance(node, InList | StartsWithList):
        index = lists.get(node.list_name)
        if index is None:
            raise CompileError(f"the rule names the list @{node.list_name}, which is not loaded")
        key = (node.list_name, repr(node.operand))
        if key not in cols._lookups:  # one pass per list and field, shared by every rule
            cols._lookups[key] = _look_up(index, _value(node.operand, cols), cols)
        return cols._lookups[key]
    if isinstance(node, IsMissing):
        return ~_present(_value(node.operand, cols))
    raise TypeError(type(node).__name__)
