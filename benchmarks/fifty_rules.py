"""The benchmarks' rules runs: the fifty rules of ``test_data/rule_examples.py``, all active, and
their lists made for the benchmark's stream, stored in a run's database as analysts store them
(``bench_throughput.py`` part 1, ``profile_flow.py --rules``); and what a flow run's stored rows
say about the rules and the score step's batches (:func:`flow_run_facts`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from rules.store import NewEntry, RulesStore
from settings.config import Config
from storage.engine import make_engine
from test_data.generator import simulate
from test_data.rule_examples import RULES, example_lists
from test_data.spec import SimulationSpec


def store_fifty_rules(config: Config, db_url: str, *, days: int, cards: int) -> str:
    """The fifty rules, all active, and their lists (made for the stream of seed 99, ``days``
    days, ``cards`` cards, cards // 5 merchants: the benchmarks' stream), stored in the database
    of ``db_url`` by the review account; what was stored, in words."""
    sim = simulate(SimulationSpec(seed=99, days=days, cards=cards, merchants=max(cards // 5, 2)))
    lists = example_lists(list(sim.payments()))
    database = make_url(db_url).database
    if not database:
        raise ValueError(f"store_fifty_rules: expected a URL naming a database; got {db_url!r}")
    engine = make_engine(config.on_database(database).review_mysql_dsn)
    try:
        store = RulesStore(engine)
        for name, (kind, entries) in lists.items():
            store.create_list(name, kind, by="benchmark")
            store.add_entries(name, [NewEntry(v) for v in entries], by="benchmark")
        for rule_id, rule in RULES:
            store.add_rule(rule_id, rule, by="benchmark", status="active")
        version = store.newest_version()
    finally:
        engine.dispose()
    sizes = ", ".join(f"@{n} {len(e):,}" for n, (_, e) in lists.items())
    return f"{len(RULES)} active rules (ruleset version {version}; lists: {sizes})"


def flow_run_facts(dsn: str) -> dict[str, Any]:
    """What a drained run's ``scored_payments`` say about its score step: the batches it scored
    (the rows of one ``score`` call share their ``scored_at``, to the microsecond) and what the
    rules did (payments an active rule fired on, a shadow rule hit, a rule decided, whose
    decision the rules changed, and the payments stored with reason codes)."""
    engine = make_engine(dsn, pool_size=1)
    try:
        with engine.connect() as c:
            sizes = sorted(
                int(n)
                for (n,) in c.execute(
                    text("SELECT COUNT(*) FROM scored_payments GROUP BY scored_at")
                ).all()
            )
            counts = c.execute(
                text(
                    "SELECT COUNT(*),"
                    " COALESCE(SUM(JSON_LENGTH(rules_fired) > 0), 0),"
                    " COALESCE(SUM(JSON_LENGTH(shadow_hits) > 0), 0),"
                    " COALESCE(SUM(decided_by <> 'model'), 0),"
                    " COALESCE(SUM(decision <> model_decision), 0),"
                    " COALESCE(SUM(JSON_LENGTH(reason_codes) > 0), 0),"
                    " COALESCE(SUM(JSON_LENGTH(rules_fired) > 0 AND decision = 'approve'"
                    "   AND model_decision = 'approve'), 0)"
                    " FROM scored_payments"
                )
            ).one()
    finally:
        engine.dispose()
    rows, fired, shadow, decided, changed, reasoned, fired_approved = (int(v) for v in counts)
    return {
        "rows": rows,
        "batches": len(sizes),
        "batch_mean": rows / len(sizes) if sizes else 0.0,
        "batch_median": _weighted_median(sizes),
        "batch_p10": sizes[len(sizes) // 10] if sizes else 0,
        "batch_p90": sizes[(len(sizes) * 9) // 10] if sizes else 0,
        "batch_max": sizes[-1] if sizes else 0,
        "fired_active": fired,
        "shadow_hit": shadow,
        "decided_by_rule": decided,
        "decision_changed": changed,
        "with_reason_codes": reasoned,
        "fired_but_approved_alike": fired_approved,
    }


def _weighted_median(sizes: list[int]) -> int:
    """The size of the batch the median payment was scored in."""
    half, seen = sum(sizes) / 2, 0
    for n in sizes:
        seen += n
        if seen >= half:
            return n
    return 0


def describe_facts(f: dict[str, Any]) -> str:
    rows = max(f["rows"], 1)
    return (
        f"score batches: {f['batches']:,}, payments a batch mean {f['batch_mean']:.1f}, "
        f"p10 {f['batch_p10']}, p90 {f['batch_p90']}, max {f['batch_max']}; a payment's batch "
        f"(median) {f['batch_median']}; an active rule fired on {f['fired_active'] / rows:.2%} "
        f"(decided {f['decided_by_rule'] / rows:.2%}, changed the decision "
        f"{f['decision_changed'] / rows:.2%}, fired on a model approval left approved "
        f"{f['fired_but_approved_alike'] / rows:.2%}), a shadow rule {f['shadow_hit'] / rows:.2%}; "
        f"stored with reason codes {f['with_reason_codes'] / rows:.2%}"
    )
