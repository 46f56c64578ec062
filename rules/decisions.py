"""The precedence of rules over the model: one pure function, from what the model decided and the
rules that fired to the final decision, the rules that fired and the reasons.

Precedence, highest first:

1. **allow** rules: an active allow rule that fires approves the payment, whatever else fired and
   whatever the model said (the allow-list is how analysts clear a customer a rule or the model
   keeps stopping);
2. **decline** rules: decline;
3. **review** rules: review, except that a review rule never lowers the model's decline (it asks
   a person to look; only an allow rule clears a payment);
4. the **model**'s own decision (its probability against the two thresholds).

Among rules of the same action the deciding one is the one with the lowest ``priority`` number,
then the smallest rule id (byte order). ``rules_fired`` lists every active rule that fired in that
order (action, then priority, then id), the deciding one first. **Shadow** rules are evaluated and
their hits recorded in ``shadow_hits`` (same order), but they never change the decision.
**Disabled** rules do nothing (the ruleset does not even evaluate them). Reasons name the rules,
at most :data:`MAX_REASONS` of them, each bounded.

>>> fired = [Fired("velocity", "review", 50, "active"), Fired("bad-bin", "decline", 10, "active")]
>>> outcome = decide("approve", 0.2, fired)
>>> outcome.decision, outcome.decided_by, outcome.rules_fired
('decline', 'bad-bin', ('bad-bin', 'velocity'))
>>> outcome.reasons
('decline by rule bad-bin (priority 10)', 'also fired: rule velocity (review)')
>>> decide("decline", 0.95, [Fired("velocity", "review", 50, "active")]).decision
'decline'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import msgspec

Decision = Literal["approve", "review", "decline"]
Status = Literal["active", "shadow", "disabled"]
STATUSES: Final = ("active", "shadow", "disabled")
MODEL: Final = "model"
MAX_REASONS: Final = 4
ACTION_RANK: Final = {"allow": 0, "decline": 1, "review": 2}
_SEVERITY: Final = {"approve": 0, "review": 1, "decline": 2}


class Fired(msgspec.Struct, frozen=True):
    """A rule that fired for a payment."""

    rule_id: str
    action: str  # allow, decline or review
    priority: int
    status: str  # active, shadow or disabled


class Outcome(msgspec.Struct, frozen=True):
    """What becomes of one payment: the final decision and why."""

    decision: Decision
    decided_by: str  # a rule id, or "model"
    rules_fired: tuple[str, ...] = ()  # active rules that fired, deciding one first
    shadow_hits: tuple[str, ...] = ()  # shadow rules that would have fired
    reasons: tuple[str, ...] = ()  # words naming the rules; empty when the model decided alone


def order(rule: Fired) -> tuple[int, int, bytes]:
    """Precedence order: action, then priority (lower first), then rule id (byte order)."""
    return (ACTION_RANK[rule.action], rule.priority, rule.rule_id.encode())


def model_alone(model_decision: Decision) -> Outcome:
    return Outcome(model_decision, MODEL)


def decide(model_decision: Decision, probability: float, fired: Iterable[Fired]) -> Outcome:
    """The final decision for a payment the model decided ``model_decision`` (with
    ``probability``) and for which the rules ``fired`` fired (see the module)."""
    active = sorted((f for f in fired if f.status == "active"), key=order)
    shadow = tuple(f.rule_id for f in sorted((f for f in fired if f.status == "shadow"), key=order))
    if not active:
        return Outcome(model_decision, MODEL, (), shadow, ())
    top = active[0]
    ids = tuple(f.rule_id for f in active)
    also = [f"also fired: rule {f.rule_id} ({f.action})" for f in active[1:]]
    if top.action == "review" and model_decision == "decline":
        reasons = [
            f"the model's decline ({probability:.3f}) stands over review rule {top.rule_id}",
            *(f"also fired: rule {f.rule_id} ({f.action})" for f in active),
        ]
        return Outcome("decline", MODEL, ids, shadow, _bounded(reasons[: 1 + len(active)]))
    decision: Decision = {"allow": "approve", "decline": "decline", "review": "review"}[top.action]  # type: ignore[assignment]
    reasons = [f"{top.action} by rule {top.rule_id} (priority {top.priority})", *also]
    return Outcome(decision, top.rule_id, ids, shadow, _bounded(reasons))


def _bounded(reasons: list[str]) -> tuple[str, ...]:
    if len(reasons) > MAX_REASONS:
        reasons = [*reasons[: MAX_REASONS - 1], f"and {len(reasons) - MAX_REASONS + 1} more rules"]
    return tuple(r[:160] for r in reasons)


def severity(decision: str) -> int:
    """approve 0, review 1, decline 2."""
    return _SEVERITY[decision]
