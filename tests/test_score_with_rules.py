"""The score step applies the analysts' rules (issue 21 item 3): what each stored row keeps.

For generated traffic through the flow's own feature code, a trained model and the fifty
example rules with random statuses, every row the step makes holds the final decision of
:func:`rules.decisions.decide` over every rule evaluated whole, the model's own decision and
probability (unchanged by the rules), the rules that fired and the shadow hits in precedence
order, reasons that name the deciding rule, reason codes wherever a rule fired, and the ruleset
version."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from dataflows import metrics
from dataflows.messages import Positioned
from dataflows.scoring import score
from features.replay import replay
from model_state import artifact
from model_state.scorer import Scorer
from rules.decisions import decide, model_alone
from rules.lists import ListIndex
from rules.ruleset import RuleSpec, compile_ruleset
from test_data.generator import simulate
from test_data.rule_examples import RULES, example_lists
from test_data.spec import SimulationSpec
from tests.flowrun import key_for_tests


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> Scorer:
    version = artifact.load(model_dir, key=key_for_tests())
    # Low thresholds: some payments in each of approve, review and decline.
    return Scorer(
        version.model,
        version.version,
        review=0.05,
        decline=0.3,
        positive_weight=version.metadata.positive_weight,
        drift_reference=version.metadata.drift_reference,
    )


@pytest.fixture(scope="module")
def stream() -> list[Positioned[Any]]:
    sim = simulate(SimulationSpec(seed=31, days=4, cards=300, merchants=60))
    return [Positioned(p, 0, i, f) for i, (p, f) in enumerate(replay(sim.stream))]


@pytest.fixture(scope="module")
def lists(stream: list[Positioned[Any]]) -> dict[str, ListIndex]:
    raw = example_lists([p.event for p in stream])
    # Many cards on the lists, so that allow, decline and review all fire in a small stream.
    cards = sorted({p.event.card_id for p in stream})
    raw["blocked_cards"][1].update(dict.fromkeys(cards[::9]))
    raw["vip_cards"][1].update(dict.fromkeys(cards[::23]))
    return {name: ListIndex.build(name, kind, entries) for name, (kind, entries) in raw.items()}


@settings(max_examples=12, deadline=None)
@given(
    statuses=st.lists(st.sampled_from(["active", "shadow", "disabled"]), min_size=50, max_size=50),
    seed=st.integers(0, 1000),
)
def test_every_row_keeps_the_final_and_the_models_decision_and_why(
    scorer: Scorer, stream: list[Positioned[Any]], lists: dict[str, ListIndex], statuses, seed
) -> None:
    specs = [RuleSpec(i, t, s) for (i, t), s in zip(RULES, statuses, strict=True)]
    ruleset = compile_ruleset(specs, lists, version=7)
    batch = random.Random(seed).sample(stream, 400)
    rows = score(scorer, batch, rules=ruleset)
    plain = score(scorer, batch)
    for p, row, bare in zip(batch, rows, plain, strict=True):
        model = bare["decision"]
        assert row["fraud_probability"] == bare["fraud_probability"]
        assert row["model_decision"] == model == bare["model_decision"]
        assert bare["ruleset_version"] == 0 and bare["rules_fired"] == []
        fired = ruleset.fired_whole(p.event, p.features, row["fraud_probability"])
        want = decide(model, row["fraud_probability"], fired) if fired else model_alone(model)
        assert row["decision"] == want.decision
        assert row["decided_by"] == want.decided_by
        assert row["rules_fired"] == list(want.rules_fired)
        assert row["shadow_hits"] == list(want.shadow_hits)
        assert row["rule_reasons"] == list(want.reasons)
        assert row["ruleset_version"] == 7
        if want.decided_by != "model":
            assert want.decided_by in row["rule_reasons"][0]
        if want.rules_fired:  # an analyst reads why the model said what it said
            assert row["reason_codes"] == list(scorer.reasons([p.features])[0])
        else:
            assert row["reason_codes"] == bare["reason_codes"]


def test_precedence_in_the_step_allow_beats_decline_beats_model(
    scorer: Scorer, stream: list[Positioned[Any]], lists: dict[str, ListIndex]
) -> None:
    p = stream[0]
    card = p.event.card_id
    one = {"vip": ListIndex.build("vip", "card", {card: None})}
    decline_all = RuleSpec("all-out", "decline if amount_eur >= 0 priority 5")
    allow = RuleSpec("vip-in", "allow if card_id in @vip priority 50")
    shadow = RuleSpec("watch", "review if amount_eur >= 0", "shadow")
    rows = score(scorer, [p], rules=compile_ruleset([decline_all, shadow], one, version=2))
    assert rows[0]["decision"] == "decline" and rows[0]["decided_by"] == "all-out"
    assert rows[0]["rule_reasons"][0] == "decline by rule all-out (priority 5)"
    assert rows[0]["shadow_hits"] == ["watch"]
    rows = score(scorer, [p], rules=compile_ruleset([decline_all, allow, shadow], one, version=3))
    assert rows[0]["decision"] == "approve" and rows[0]["decided_by"] == "vip-in"
    assert rows[0]["rules_fired"] == ["vip-in", "all-out"]
    assert rows[0]["reason_codes"] == list(scorer.reasons([p.features])[0])
    assert rows[0]["ruleset_version"] == 3


def test_rule_decisions_are_counted_by_rule_and_decision_once_stored(
    scorer: Scorer, stream: list[Positioned[Any]]
) -> None:
    rule = RuleSpec("count-me", "decline if amount_eur >= 0 priority 5")
    rows = score(scorer, stream[:7], rules=compile_ruleset([rule], {}, version=9))
    assert metrics.RULESET_VERSION._value.get() == 9
    before = REGISTRY.get_sample_value(
        "payscore_rule_decisions_total", {"rule": "count-me", "decision": "decline"}
    )
    metrics.stored_payments(rows)
    after = REGISTRY.get_sample_value(
        "payscore_rule_decisions_total", {"rule": "count-me", "decision": "decline"}
    )
    assert (after or 0) - (before or 0) == 7


def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "scored_at"} for row in rows]


@settings(max_examples=15, deadline=None)
@given(
    statuses=st.lists(st.sampled_from(["active", "shadow", "disabled"]), min_size=50, max_size=50),
    seed=st.integers(0, 1000),
    cuts=st.lists(st.integers(1, 299), max_size=12),
)
def test_any_batch_size_stores_what_one_payment_at_a_time_does(
    scorer: Scorer,
    stream: list[Positioned[Any]],
    lists: dict[str, ListIndex],
    statuses: list[str],
    seed: int,
    cuts: list[int],
) -> None:
    """The flow's batches are whatever arrived: cut anywhere (batches of one, of a few, of more
    than the rules' NumPy path takes), the rows are those of scoring each payment alone, reason
    codes and rules included."""
    statuses = ["active", "active", *statuses[2:]]  # the card lists' rules: some rule fires
    specs = [RuleSpec(i, t, s) for (i, t), s in zip(RULES, statuses, strict=True)]
    ruleset = compile_ruleset(specs, lists, version=4)
    batch = random.Random(seed).sample(stream, 300)
    alone = [row for p in batch for row in score(scorer, [p], rules=ruleset)]
    bounds = [0, *sorted(set(cuts)), len(batch)]
    cut = [
        row
        for a, b in itertools.pairwise(bounds)
        for row in score(scorer, batch[a:b], rules=ruleset)
    ]
    assert without_time(cut) == without_time(alone)
    assert any(row["rules_fired"] for row in alone)


def test_the_step_splits_a_batch_once_also_for_the_payments_rules_fired_on(
    scorer: Scorer, stream: list[Positioned[Any]], lists: dict[str, ListIndex]
) -> None:
    """Reason codes of the payments a rule fired on are ranked from the batch's one split (the
    forest walked once a batch), not from a second walk over those payments."""
    ruleset = compile_ruleset([RuleSpec(i, t) for i, t in RULES], lists, version=5)
    batch = stream[:400]
    explainer = scorer._explain
    walks: list[int] = []
    walk = explainer.batch

    def counted(rows: Any) -> Any:
        walks.append(len(rows))
        return walk(rows)

    explainer.batch = counted
    try:
        rows = score(scorer, batch, rules=ruleset)
    finally:
        del explainer.batch
    assert walks == [len(batch)]
    fired = [(p, r) for p, r in zip(batch, rows, strict=True) if r["rules_fired"]]
    assert any(r["model_decision"] == "approve" for _, r in fired)  # the model approved these
    for p, r in fired:
        assert r["reason_codes"] == list(scorer.reasons([p.features])[0])
