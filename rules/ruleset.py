"""A whole ruleset compiled for the flow: which rules fire for a payment, and its final decision.

Fifty rules cost a few microseconds a payment (``benchmarks/bench_rules.py``) because most rules
are not evaluated at all. Each rule's condition is split into its top-level ``and`` terms; one of
them becomes the rule's **guard**, indexed, and the rest its residual, a compiled closure
(:mod:`rules.compile`). Guards, by preference:

- ``field in @list``: the list is looked up once per payment for every rule it guards;
- ``name == "text"``, ``name == 3``, ``name in (...)``: one dict look-up per name;
- ``name > 100`` (``>=``, ``<``, ``<=``): per name, the thresholds sorted, so one comparison with
  the smallest (or largest) says whether any rule's guard holds and a bisection which ones.
  (On floats ``v >= c`` is ``v > c'`` with ``c'`` the float just below ``c``.)

A rule whose condition has no such term (a top-level ``or``, a ``not``) is evaluated whole.
The indexed evaluation is property-tested against evaluating every rule whole and against the
reference interpreter (``tests/test_rules_eval.py``).

>>> from datetime import UTC, datetime
>>> rules = [RuleSpec("burst", "decline if card_count_1h >= 5 priority 10", "active")]
>>> ruleset = compile_ruleset(rules, {}, version=3)
>>> ruleset.decide(None, {"card_count_1h": 7.0}, 0.1, "approve").decided_by
'burst'
>>> ruleset.decide(None, {"card_count_1h": 1.0}, 0.1, "approve").decided_by
'model'
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rules.compile import Condition, Value, compile_condition, getter
from rules.decisions import STATUSES, Decision, Fired, Outcome, decide, model_alone
from rules.lists import ListIndex
from rules.names import NUMBER, TYPES
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
    residual: Condition | None = None  # what remains besides the guard
    fired: Fired = field(init=False)

    def __post_init__(self) -> None:
        self.fired = Fired(self.rule_id, self.rule.action, self.rule.priority, self.status)


def conjuncts(node: Expr) -> list[Expr]:
    if isinstance(node, BoolOp) and node.op == "and":
        return [*conjuncts(node.left), *conjuncts(node.right)]
    return [node]


def _and(terms: list[Expr]) -> Expr | None:
    if not terms:
        return None
    node = terms[0]
    for t in terms[1:]:
        node = BoolOp("and", node, t)
    return node


def _guard(term: Expr) -> tuple[int, tuple[Any, ...]] | None:
    """(preference, key) if ``term`` can be indexed; lower preference is better."""
    if isinstance(term, InList) and isinstance(term.operand, Name):
        return 0, ("list", term.operand.name, term.list_name)
    if isinstance(term, InValues) and isinstance(term.operand, Name):
        return 1, ("eq", term.operand.name, tuple(v.value for v in term.values))
    if isinstance(term, Compare):
        left, right, op = term.left, term.right, term.op
        if isinstance(left, Num | Str) and isinstance(right, Name):
            left, right, op = right, left, _FLIP.get(op, op)
        if isinstance(left, Name) and isinstance(right, Num | Str):
            if op == "==":
                return 1, ("eq", left.name, (right.value,))
            if op != "!=" and TYPES[left.name] == NUMBER:
                return 2, ("cmp", left.name, op, float(right.value))  # type: ignore[arg-type]
    return None


@dataclass(slots=True)
class _NumberIndex:
    read: Value
    above: list[float] = field(default_factory=list)  # guard: value > key
    above_rules: list[CompiledRule] = field(default_factory=list)
    below: list[float] = field(default_factory=list)  # guard: value < key
    below_rules: list[CompiledRule] = field(default_factory=list)


class Ruleset:
    """Compiled rules of one ruleset version and the lists they use (see the module)."""

    def __init__(
        self, version: int, rules: Sequence[CompiledRule], lists: Mapping[str, ListIndex]
    ) -> None:
        self.version = version
        self.rules = tuple(rules)
        self.lists = dict(lists)
        self.names = frozenset(n for r in rules for n in names_in(r.rule.condition))
        self._numbers: list[_NumberIndex] = []
        self._equals: list[tuple[Value, dict[Any, list[CompiledRule]]]] = []
        self._lists: list[tuple[Value, Callable[[Any, float], bool], list[CompiledRule]]] = []
        self._whole: list[CompiledRule] = []
        self._index(rules)

    def _index(self, rules: Sequence[CompiledRule]) -> None:
        numbers: dict[str, _NumberIndex] = {}
        above: dict[str, list[tuple[float, CompiledRule]]] = {}
        below: dict[str, list[tuple[float, CompiledRule]]] = {}
        equals: dict[str, dict[Any, list[CompiledRule]]] = {}
        lists: dict[tuple[str, str], list[CompiledRule]] = {}
        for r in rules:
            terms = conjuncts(r.rule.condition)
            best = min(
                ((g[0], i, g[1]) for i, t in enumerate(terms) if (g := _guard(t)) is not None),
                default=None,
            )
            if best is None:
                self._whole.append(r)
                continue
            _, at, key = best
            rest = _and(terms[:at] + terms[at + 1 :])
            r.residual = compile_condition(rest, self.lists) if rest is not None else None
            if key[0] == "list":
                lists.setdefault((key[1], key[2]), []).append(r)
            elif key[0] == "eq":
                table = equals.setdefault(key[1], {})
                for value in dict.fromkeys(key[2]):
                    table.setdefault(value, []).append(r)
            else:
                _, name, op, c = key
                numbers.setdefault(name, _NumberIndex(getter(name)))
                if op in (">", ">="):
                    above.setdefault(name, []).append(
                        (c if op == ">" else math.nextafter(c, -math.inf), r)
                    )
                else:
                    below.setdefault(name, []).append(
                        (c if op == "<" else math.nextafter(c, math.inf), r)
                    )
        for name, index in numbers.items():
            for key_list, rule_list, found in (
                (index.above, index.above_rules, above.get(name, [])),
                (index.below, index.below_rules, below.get(name, [])),
            ):
                for c, r in sorted(found, key=lambda cr: cr[0]):
                    key_list.append(c)
                    rule_list.append(r)
            self._numbers.append(index)
        self._equals = [(getter(name), table) for name, table in equals.items()]
        for (name, list_name), guarded in lists.items():
            self._lists.append((getter(name), self.lists[list_name].contains, guarded))

    def fired(self, payment: Any, features: Mapping[str, float], probability: float) -> list[Fired]:
        """The rules (active and shadow) whose condition holds for this payment."""
        p, f, q = payment, features, probability
        hits: list[Fired] = []
        for index in self._numbers:
            v = index.read(p, f, q)
            if v is None:
                continue
            keys = index.above
            if keys and v > keys[0]:
                for r in index.above_rules[: bisect_left(keys, v)]:
                    if r.residual is None or r.residual(p, f, q):
                        hits.append(r.fired)
            keys = index.below
            if keys and v < keys[-1]:
                for r in index.below_rules[bisect_right(keys, v) :]:
                    if r.residual is None or r.residual(p, f, q):
                        hits.append(r.fired)
        for read, table in self._equals:
            guarded = table.get(read(p, f, q))
            if guarded:
                for r in guarded:
                    if r.residual is None or r.residual(p, f, q):
                        hits.append(r.fired)
        for read, contains, guarded in self._lists:
            if contains(read(p, f, q), p.event_timestamp):
                for r in guarded:
                    if r.residual is None or r.residual(p, f, q):
                        hits.append(r.fired)
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
        fired = self.fired
        out = []
        for p, f, q, d in zip(payments, features, probabilities, model_decisions, strict=True):
            hits = fired(p, f, q)
            out.append(decide(d, q, hits) if hits else _ALONE[d])
        return out


_ALONE: Final[dict[str, Outcome]] = {d: model_alone(d) for d in ("approve", "review", "decline")}  # type: ignore[arg-type]


def compile_rule(spec: RuleSpec, lists: Mapping[str, ListIndex]) -> CompiledRule:
    """One rule, parsed against the lists' kinds and compiled; RuleSyntaxError if refused."""
    check_rule_id(spec.rule_id)
    check_status(spec.status)
    rule = parse(spec.text, {name: index.kind for name, index in lists.items()})
    return CompiledRule(spec.rule_id, rule, spec.status, compile_condition(rule.condition, lists))


def compile_ruleset(
    specs: Iterable[RuleSpec], lists: Mapping[str, ListIndex], *, version: int
) -> Ruleset:
    """Every rule that is not disabled, compiled; :class:`RulesetError` names the first rule that
    cannot be (with the parser's bounded message)."""
    compiled = []
    seen: set[str] = set()
    for spec in specs:
        if spec.rule_id in seen:
            raise RulesetError(f"ruleset version {version}: rule id {spec.rule_id[:64]!r} twice")
        seen.add(spec.rule_id)
        if spec.status == "disabled":
            continue
        try:
            compiled.append(compile_rule(spec, lists))
        except (RuleSyntaxError, ValueError) as exc:
            raise RulesetError(
                f"ruleset version {version}: rule {spec.rule_id[:64]!r} does not compile: "
                f"{str(exc)[:300]}"
            ) from None
    return Ruleset(version, compiled, lists)


def lists_used(rules: Iterable[Rule]) -> set[str]:
    return {name for r in rules for name in lists_in(r.condition)}
