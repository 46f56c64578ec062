"""A whole ruleset compiled for the flow: which rules fire for a payment, and its final decision.

Fifty rules cost a few microseconds a payment (``benchmarks/bench_rules.py``) because most rules
are not evaluated at all. Each rule's condition is split into its top-level ``and`` terms and one
of them becomes the rule's **guard**, a necessary condition tested for all rules at once:

- ``field in @list``, ``card_id starts with @list`` (preferred): one hash look-up per list;
- ``name > 100`` (``>=``, ``<``, ``<=``; on floats ``v >= c`` is ``v > c'`` with ``c'`` the
  float just below ``c``): per name, only the smallest threshold (the largest for ``<``) is
  compared, all names in one C-level ``map``, and a bisection finds the rules when one holds;
- ``name == "text"``, ``name == 3``, ``name in (...)``: one dict per name, tested in one ``map``.

Each group's values are read in one C-level call (``operator.itemgetter`` over the feature dict,
``attrgetter`` over the payment). Only a rule whose guard holds is then evaluated
whole (its compiled closure, :mod:`rules.compile`), which also applies the missing-value
semantics and the lists' expiries. A rule with no such term (a top-level ``or``, a ``not``,
``latitude > x``) is evaluated whole for every payment.
The indexed evaluation is property-tested against evaluating every rule whole and against the
reference interpreter (``tests/test_rules_eval.py``).

>>> rules = [RuleSpec("burst", "decline if card_count_1h >= 5 priority 10", "active")]
>>> ruleset = compile_ruleset(rules, {}, version=3)
>>> ruleset.decide(None, {"card_count_1h": 7.0}, 0.1, "approve").decided_by
'burst'
>>> ruleset.decide(None, {"card_count_1h": 1.0}, 0.1, "approve").decided_by
'model'
"""

from __future__ import annotations

import math
import operator
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import contains, gt, lt
from typing import Any, Final

from rules.compile import Condition, Value, compile_condition, getter
from rules.decisions import MODEL, STATUSES, Decision, Fired, Outcome, decide, model_alone
from rules.lists import ListIndex
from rules.names import CONTRACT_FIELDS, NUMBER, OPTIONAL, PROBABILITY, TYPES
from rules.syntax import (
    BoolOp,
    Compare,
    Expr,
    InList,
    InValues,
    Name,
    Num,
    Rule,
    RuleSyntaxError,
    StartsWithList,
    Str,
    lists_in,
    names_in,
    parse,
)

RULE_ID: Final = re.compile(r"\A[A-Za-z0-9_.:\-]{1,64}\Z")
_FLIP: Final = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}


class RulesetError(ValueError):
    """A ruleset that cannot be compiled: which rule, and why (bounded)."""


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as stored: its id, its text and its status."""

    rule_id: str
    text: str
    status: str = "active"


def check_rule_id(rule_id: str) -> str:
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise ValueError(
            "a rule id is 1 to 64 characters of A-Z a-z 0-9 _ . : - (it names the rule in "
            f"reasons); got {str(rule_id)[:70]!r}"
        )
    return rule_id


# Ids a new rule may not take: "model" is what ``decided_by`` says when the model decided (a rule
# of that name would pass for the model on every stored payment and on the decisions topic);
# "." and ".." are path segments a browser folds away, so /rules/.. never reaches that rule.
RESERVED_RULE_IDS: Final = frozenset({MODEL, ".", ".."})


def check_new_rule_id(rule_id: str) -> str:
    """:func:`check_rule_id`, and not one of :data:`RESERVED_RULE_IDS` (checked when a rule is
    added; a stored rule is loaded whatever its id)."""
    check_rule_id(rule_id)
    if rule_id in RESERVED_RULE_IDS:
        raise ValueError(
            f"a rule id may not be {rule_id!r}: "
            + (
                "decided_by says 'model' when the model decided"
                if rule_id == MODEL
                else "it is a path segment, so the rule's page could not be opened"
            )
        )
    return rule_id


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(
            f"a rule's status is one of {', '.join(STATUSES)}; got {str(status)[:20]!r}"
        )
    return status


@dataclass(slots=True)
class CompiledRule:
    rule_id: str
    rule: Rule
    status: str
    condition: Condition  # the whole condition
    fired: Fired = field(init=False)

    def __post_init__(self) -> None:
        self.fired = Fired(self.rule_id, self.rule.action, self.rule.priority, self.status)


def conjuncts(node: Expr) -> list[Expr]:
    if isinstance(node, BoolOp) and node.op == "and":
        return [*conjuncts(node.left), *conjuncts(node.right)]
    return [node]


# Names with a few common values (flags, the hour, the channel, the currency): a term on them
# holds for many payments, so it is a guard only when a rule has no other.
POOR_GUARDS: Final = frozenset(
    {"is_night", "is_weekend", "hour_of_day", "card_merchant_new_30d", "card_country_unusual",
     "channel", "currency"}
)  # fmt: skip


def _guard(term: Expr) -> tuple[int, tuple[Any, ...]] | None:
    """(preference, key) if ``term`` can be a guard; lower preference is better: a list, then
    an upper threshold (large amounts, high counts are rare), a lower one, a string equality or
    set, a number equality; any of them on a name of :data:`POOR_GUARDS` last."""
    found: tuple[int, tuple[Any, ...]] | None = None
    if isinstance(term, InList | StartsWithList) and isinstance(term.operand, Name):
        found = 0, ("list", term.operand.name, term.list_name)
    elif isinstance(term, InValues) and isinstance(term.operand, Name):
        rank = 3 if TYPES[term.operand.name] != NUMBER else 4
        found = rank, ("eq", term.operand.name, tuple(v.value for v in term.values))
    elif isinstance(term, Compare):
        left, right, op = term.left, term.right, term.op
        if isinstance(left, Num | Str) and isinstance(right, Name):
            left, right, op = right, left, _FLIP.get(op, op)
        if isinstance(left, Name) and isinstance(right, Num | Str):
            if op == "==":
                rank = 3 if isinstance(right, Str) else 4
                found = rank, ("eq", left.name, (right.value,))
            elif op != "!=" and TYPES[left.name] == NUMBER:
                rank = 1 if op in (">", ">=") else 2
                found = rank, ("cmp", left.name, op, float(right.value))  # type: ignore[arg-type]
    if found is not None and found[1][1] in POOR_GUARDS:
        return found[0] + 10, found[1]
    return found


Reader = Callable[[Any, Mapping[str, float], float], tuple[Any, ...]]


def _getter(keys: Sequence[str], how: Callable[..., Any]) -> Callable[[Any], tuple[Any, ...]]:
    """A C-level getter of ``keys`` (``operator.itemgetter`` or ``attrgetter``), always a tuple."""
    if len(keys) == 1:
        one = how(keys[0])
        return lambda x: (one(x),)
    return how(*keys)


def _reader(names: Sequence[str]) -> tuple[list[str], Reader]:
    """``names`` in the order one call reads their values from (payment, features, probability):
    the features (``itemgetter``), then the fields (``attrgetter``), then the probability."""
    features = [n for n in names if n not in CONTRACT_FIELDS and n != PROBABILITY]
    fields = [n for n in names if n in CONTRACT_FIELDS]
    probability = PROBABILITY in names
    order = [*features, *fields, *([PROBABILITY] if probability else [])]
    f_get = _getter(features, operator.itemgetter) if features else None
    p_get = _getter(fields, operator.attrgetter) if fields else None
    if not order:
        return order, lambda p, f, q: ()
    if f_get is not None and p_get is None and not probability:
        return order, lambda p, f, q: f_get(f)
    if p_get is not None and f_get is None and not probability:
        return order, lambda p, f, q: p_get(p)

    def read(p: Any, f: Mapping[str, float], q: float) -> tuple[Any, ...]:
        return (
            (f_get(f) if f_get is not None else ())
            + (p_get(p) if p_get is not None else ())
            + ((q,) if probability else ())
        )

    return order, read


def _getter_each(
    order: list[str], exact: dict[str, list[tuple[set[int], list[Any]]]], read: Reader
) -> Reader:
    """``read`` (one value per field) repeated for each list on that field."""
    repeats = [len(exact[n]) for n in order]
    if all(r == 1 for r in repeats):
        return read
    spread = [i for i, r in enumerate(repeats) for _ in range(r)]
    pick = operator.itemgetter(*spread) if len(spread) > 1 else (lambda t: (t[spread[0]],))
    return lambda p, f, q: pick(read(p, f, q))


Thresholds = tuple[Reader, tuple[float, ...], list[tuple[list[float], list["CompiledRule"]]]]


def _thresholds(found: dict[str, list[tuple[float, CompiledRule]]], *, lowest: bool) -> Thresholds:
    """Per name, its thresholds sorted: one comparison with the smallest (or largest) says
    whether any guard on that name holds, a bisection which ones."""
    order, read = _reader(list(found))
    groups = [sorted(found[name], key=lambda cr: cr[0]) for name in order]
    bounds = tuple(g[0][0] if lowest else g[-1][0] for g in groups)
    return read, bounds, [([c for c, _ in g], [r for _, r in g]) for g in groups]


class Ruleset:
    """Compiled rules of one ruleset version and the lists they use (see the module)."""

    def __init__(
        self, version: int, rules: Sequence[CompiledRule], lists: Mapping[str, ListIndex]
    ) -> None:
        self.version = version
        self.rules = tuple(rules)
        self.lists = dict(lists)
        self.names = frozenset(n for r in rules for n in names_in(r.rule.condition))
        self._whole: list[CompiledRule] = []
        self._index(rules)

    def _index(self, rules: Sequence[CompiledRule]) -> None:
        """Each group of guards reads its values in one C-level call and tests them in one
        ``map``; a rule whose guard may hold is then evaluated whole."""
        above: dict[str, list[tuple[float, CompiledRule]]] = {}  # name -> (threshold, rule)
        below: dict[str, list[tuple[float, CompiledRule]]] = {}
        within: dict[str, dict[Any, list[CompiledRule]]] = {}  # name -> value -> rules
        by_list: dict[tuple[str, str], list[CompiledRule]] = {}
        for r in rules:
            terms = conjuncts(r.rule.condition)
            best = min(
                ((g[0], i, g[1]) for i, t in enumerate(terms) if (g := _guard(t)) is not None),
                default=None,
            )
            if best is None or (best[2][1] in OPTIONAL and best[2][0] == "cmp"):
                self._whole.append(r)  # e.g. a top-level `or`, or latitude > x (may be None)
                continue
            key = best[2]
            if key[0] == "list":
                by_list.setdefault((key[1], key[2]), []).append(r)
            elif key[0] == "eq":
                table = within.setdefault(key[1], {})
                for value in dict.fromkeys(key[2]):
                    table.setdefault(value, []).append(r)
            else:
                _, name, op, c = key
                if op in (">", ">="):
                    c = c if op == ">" else math.nextafter(c, -math.inf)
                    above.setdefault(name, []).append((c, r))
                else:
                    c = c if op == "<" else math.nextafter(c, math.inf)
                    below.setdefault(name, []).append((c, r))
        self._above = _thresholds(above, lowest=True)
        self._below = _thresholds(below, lowest=False)
        order, read = _reader(list(within))
        self._within = (read, tuple(within[n] for n in order))
        exact: dict[str, list[tuple[set[int], list[CompiledRule]]]] = {}
        self._prefix_lists: list[
            tuple[Value, tuple[tuple[int, set[int]], ...], list[CompiledRule]]
        ] = []
        for (name, list_name), guarded in by_list.items():
            index = self.lists[list_name]
            if index.by_length:
                self._prefix_lists.append((getter(name), index.by_length, guarded))
            else:
                exact.setdefault(name, []).append((index.hashes, guarded))
        order, read = _reader(list(exact))
        fields = [n for n in order for _ in exact[n]]  # a field once per list on it

        self._exact_lists = (
            _getter_each(order, exact, read) if fields else read,
            tuple(h for n in order for h, _ in exact[n]),
            [g for n in order for _, g in exact[n]],
        )

    def fired(self, payment: Any, features: Mapping[str, float], probability: float) -> list[Fired]:
        """The rules (active and shadow) whose condition holds for this payment."""
        try:
            return self._fired(payment, features, probability)
        except (KeyError, TypeError):  # a feature absent or not a number: every rule whole
            return self.fired_whole(payment, features, probability)

    def _fired(self, p: Any, f: Mapping[str, float], q: float) -> list[Fired]:
        candidates: list[CompiledRule] = []
        read, bounds, groups = self._above
        picked = read(p, f, q)
        if any(map(gt, picked, bounds)):
            for v, bound, (keys, rules) in zip(picked, bounds, groups, strict=True):
                if v > bound:
                    candidates += rules[: bisect_left(keys, v)]
        read, bounds, groups = self._below
        picked = read(p, f, q)
        if any(map(lt, picked, bounds)):
            for v, bound, (keys, rules) in zip(picked, bounds, groups, strict=True):
                if v < bound:
                    candidates += rules[bisect_right(keys, v) :]
        read, tables = self._within
        picked = read(p, f, q)
        if any(map(contains, tables, picked)):
            for v, table in zip(picked, tables, strict=True):
                candidates += table.get(v, ())
        read, sets, guarded_lists = self._exact_lists
        picked = read(p, f, q)
        if any(map(contains, sets, map(hash, picked))):
            for hashes, v, guarded in zip(sets, picked, guarded_lists, strict=True):
                if hash(v) in hashes:
                    candidates += guarded
        for value, by_length, guarded in self._prefix_lists:
            v = value(p, f, q)
            if v is None:
                continue
            for n, hashes in by_length:
                if n <= len(v) and hash(v[:n]) in hashes:
                    candidates += guarded
                    break
        hits = [r.fired for r in candidates if r.condition(p, f, q)]
        for r in self._whole:
            if r.condition(p, f, q):
                hits.append(r.fired)
        return hits

    def fired_whole(
        self, payment: Any, features: Mapping[str, float], probability: float
    ) -> list[Fired]:
        """The same as :meth:`fired`, evaluating every rule's whole condition (for tests)."""
        return [r.fired for r in self.rules if r.condition(payment, features, probability)]

    def decide(
        self,
        payment: Any,
        features: Mapping[str, float],
        probability: float,
        model_decision: Decision,
    ) -> Outcome:
        """The final decision for one scored payment (:func:`rules.decisions.decide`)."""
        hits = self.fired(payment, features, probability)
        if not hits:
            return _ALONE[model_decision]
        return decide(model_decision, probability, hits)

    def decide_batch(
        self,
        payments: Sequence[Any],
        features: Sequence[Mapping[str, float]],
        probabilities: Sequence[float],
        model_decisions: Sequence[Decision],
    ) -> list[Outcome]:
        """:meth:`decide` for each payment of a scored batch (the flow's call)."""
        indexed, whole = self._fired, self.fired_whole
        alone = _ALONE
        out = []
        for p, f, q, d in zip(payments, features, probabilities, model_decisions, strict=True):
            try:
                hits = indexed(p, f, q)
            except (KeyError, TypeError):  # as in fired()
                hits = whole(p, f, q)
            out.append(decide(d, q, hits) if hits else alone[d])
        return out


_ALONE: Final[dict[str, Outcome]] = {d: model_alone(d) for d in ("approve", "review", "decline")}  # type: ignore[arg-type]


def compile_rule(spec: RuleSpec, lists: Mapping[str, ListIndex]) -> CompiledRule:
    """One rule, parsed against the lists' kinds (as stored: ``rules.syntax.parse``) and
    compiled; RuleSyntaxError if refused."""
    check_rule_id(spec.rule_id)
    check_status(spec.status)
    rule = parse(spec.text, {name: index.kind for name, index in lists.items()}, stored=True)
    return CompiledRule(spec.rule_id, rule, spec.status, compile_condition(rule.condition, lists))


def compile_ruleset(
    specs: Iterable[RuleSpec],
    lists: Mapping[str, ListIndex],
    *,
    version: int,
    what: str = "",
) -> Ruleset:
    """Every rule that is not disabled, compiled; :class:`RulesetError` names the first rule that
    cannot be (with the parser's bounded message)."""
    what = what or f"ruleset version {version}"
    compiled = []
    seen: set[str] = set()
    for spec in specs:
        if spec.rule_id in seen:
            raise RulesetError(f"{what}: rule id {spec.rule_id[:64]!r} twice")
        seen.add(spec.rule_id)
        if spec.status == "disabled":
            continue
        try:
            compiled.append(compile_rule(spec, lists))
        except (RuleSyntaxError, ValueError) as exc:
            raise RulesetError(
                f"{what}: rule {spec.rule_id[:64]!r} does not compile: {str(exc)[:300]}"
            ) from None
    return Ruleset(version, compiled, lists)


def lists_used(rules: Iterable[Rule]) -> set[str]:
    return {name for r in rules for name in lists_in(r.condition)}
