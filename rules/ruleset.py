"""A whole ruleset compiled for the flow: which rules fire for a payment, and its final decision.

Fifty rules cost a few microseconds a payment (``benchmarks/bench_rules.py``) because most rules
are not evaluated at all: their **guards** (:mod:`rules.guards`), one necessary condition per
rule, are tested for all rules at once in a few C-level calls, and only a rule whose guard holds
is evaluated whole (its compiled closure, :mod:`rules.compile`). The indexed evaluation is
property-tested against evaluating every rule whole and against the reference interpreter
(``tests/test_rules_eval.py``).

>>> rules = [RuleSpec("burst", "decline if card_count_1h >= 5 priority 10", "active")]
>>> ruleset = compile_ruleset(rules, {}, version=3)
>>> ruleset.decide(None, {"card_count_1h": 7.0}, 0.1, "approve").decided_by
'burst'
>>> ruleset.decide(None, {"card_count_1h": 1.0}, 0.1, "approve").decided_by
'model'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rules.compile import CompiledRule, compile_condition
from rules.decisions import MODEL, STATUSES, Decision, Fired, Outcome, decide, model_alone
from rules.guards import Guards
from rules.lists import ListIndex
from rules.syntax import Rule, RuleSyntaxError, lists_in, names_in, parse

RULE_ID: Final = re.compile(r"\A[A-Za-z0-9_.:\-]{1,64}\Z")
__all__ = ["CompiledRule", "RuleSpec", "Ruleset", "compile_rule", "compile_ruleset"]
VECTOR_FROM: Final = 16  # payments a batch: below, NumPy's fixed cost outweighs what it saves


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


class Ruleset:
    """Compiled rules of one ruleset version and the lists they use (see the module)."""

    def __init__(
        self, version: int, rules: Sequence[CompiledRule], lists: Mapping[str, ListIndex]
    ) -> None:
        self.version = version
        self.rules = tuple(rules)
        self.lists = dict(lists)
        self.names = frozenset(n for r in rules for n in names_in(r.rule.condition))
        self._guards = Guards(self.rules, self.lists)
        self._fired = self._guards.fired

    def fired(self, payment: Any, features: Mapping[str, float], probability: float) -> list[Fired]:
        """The rules (active and shadow) whose condition holds for this payment."""
        try:
            return self._fired(payment, features, probability)
        except (KeyError, TypeError):  # a feature absent or not a number: every rule whole
            return self.fired_whole(payment, features, probability)

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
        *,
        vector_from: int = VECTOR_FROM,
    ) -> list[Outcome]:
        """:meth:`decide` for each payment of a scored batch (the flow's call). A batch of
        ``vector_from`` payments or more has its guards tested in NumPy over the whole batch
        (:meth:`rules.guards.Guards.flagged`), and only the payments flagged go through
        :meth:`fired`; a smaller one, payment by payment."""
        n = len(payments)
        if not len(features) == len(probabilities) == len(model_decisions) == n:
            raise ValueError(
                f"decide_batch takes as many features ({len(features)}), probabilities "
                f"({len(probabilities)}) and model decisions ({len(model_decisions)}) as "
                f"payments ({n})"
            )
        indexed, whole = self._fired, self.fired_whole
        out = [_ALONE[d] for d in model_decisions]
        found = None
        if n >= vector_from:
            try:
                found = self._guards.candidates(payments, features, probabilities)
            except (KeyError, TypeError, ValueError):  # a value absent or not a number
                found = None
        if found is None:  # payment by payment
            for i, (p, f, q) in enumerate(zip(payments, features, probabilities, strict=True)):
                try:
                    hits = indexed(p, f, q)
                except (KeyError, TypeError):  # as in fired()
                    hits = whole(p, f, q)
                if hits:
                    out[i] = decide(model_decisions[i], q, hits)
            return out
        for i, candidates in found.items():
            p, f, q = payments[i], features[i], probabilities[i]
            try:
                hits = [r.fired for r in candidates if r.condition(p, f, q)]
            except (KeyError, TypeError):  # as in fired()
                hits = whole(p, f, q)
            if hits:
                out[i] = decide(model_decisions[i], q, hits)
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
