"""How long the backtest takes over a million stored payments.

    python benchmarks/bench_backtest.py [--rows 1000000]

Fills a throwaway database ``payscore_bench_<random>`` (created and dropped, the accounts'
rights given as in the product's) on the server of ``PAYSCORE_MYSQL_URL`` with ``--rows`` scored
payments made in SQL, as ``benchmarks/bench_review_queue.py`` does: 30 days, 50,000 cards, 2,000
merchants, the model's probability skewed towards 0 (7 % reviewed, 1.3 % declined), every row
with all 42 features of the catalogue in its ``features`` JSON (counts, sums, rates, flags, the
hour), the payment's MCC, channel, country, device for a third and coordinates for card-present
payments, and a label on a third of them (about 1 % frauds, more among high probabilities). The live
ruleset is the fifty rules of ``test_data/rule_examples.py`` with their lists; the draft adds
five rules. Prints the fill time, the backtest's wall time (best of 3, as ``python -m
rules.backtest`` runs it: read from MySQL, decode, evaluate the 55 rules, compare decisions) in
one process, with its CPU time (what the backtest costs when other processes share the cores;
MariaDB's own work apart), then in two processes (``--jobs 2``), and the table.
"""

from __future__ import annotations

import argparse
import os
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url

from features.catalog import FEATURE_NAMES
from rules.backtest import backtest, c_extension_loads
from rules.ruleset import RuleSpec
from rules.store import NewEntry, RulesStore
from settings.config import Config
from storage.engine import make_engine
from test_data.chaos import scratch_database
from test_data.rule_examples import LIST_KINDS, RULES

DIGITS = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))


def _feature(i: int, name: str) -> str:
    r = f"(((n * {7919 + 104729 * i} + {i * 31}) % 1000003) / 1000003.0)"
    if name.startswith("card_count") or name.endswith(("count_1d", "count_7d", "count_30d")):
        scale = {"1h": 6, "24h": 30, "7d": 120, "30d": 400, "1d": 3000}.get(
            name.rsplit("_", 1)[1], 50
        )
        return f"FLOOR(POW({r}, 4) * {scale})"
    if "fraud_rate" in name:
        return f"ROUND(POW({r}, 12) * 0.6, 6)"
    if name in ("is_night", "is_weekend", "card_merchant_new_30d", "card_country_unusual"):
        return f"IF({r} < 0.2, 1.0, 0.0)"
    if name == "hour_of_day":
        return f"FLOOR({r} * 24)"
    if name == "card_seconds_since_prev":
        return f"ROUND(POW({r}, 3) * 2592000, 1)"
    if name == "card_distinct_merchants_24h":
        return f"FLOOR(POW({r}, 6) * 12)"
    if name == "card_speed_kmh":
        return f"ROUND(POW({r}, 20) * 3000, 2)"
    if name == "card_amount_to_mean_30d":
        return f"ROUND(POW({r}, 6) * 30 + 0.2, 4)"
    if name == "amount_eur":
        return "ROUND((100 + n % 50000) / 100.0 * (1 + POW(((n * 31) % 997) / 997.0, 30) * 100), 2)"
    return f"ROUND(POW({r}, 3) * 5000, 2)"


FEATURES = (
    "JSON_OBJECT("
    + ", ".join(f"'{n}', {_feature(i, n)}" for i, n in enumerate(FEATURE_NAMES))
    + ")"
)
FILL = f"""
INSERT INTO scored_payments
  (transaction_id, card_id, merchant_id, terminal_id, amount_minor, currency, event_time,
   utc_offset_minutes, fraud_probability, decision, reason_codes, model_version, features,
   kafka_partition, kafka_offset, scored_at, label_is_fraud, mcc, channel, country, device_id,
   latitude, longitude)
SELECT CONCAT('b-', LPAD(n, 8, '0')), CONCAT('c-', n % 50000), CONCAT('m-', n % 2000),
       CONCAT('t-', n % 20000), 100 + n % 50000, IF(n % 20 = 0, 'USD', 'EUR'),
       TIMESTAMP('2026-01-01') + INTERVAL (n * 2592000 DIV :rows) SECOND, 0,
       p, CASE WHEN p >= 0.9 THEN 'decline' WHEN p >= 0.5 THEN 'review' ELSE 'approve' END,
       '["amount_eur"]', 'v00001', {FEATURES}, 0, n, NOW(6),
       IF(n % 3 = 0, ((n * 13) % 1000) / 1000.0 < 0.008 + p * 0.5, NULL),
       ELT(1 + n % 7, '5411', '5812', '5999', '6011', '7995', '4829', '5732'),
       ELT(1 + (n DIV 7) % 5, 'pos', 'ecom', 'contactless', 'atm', 'moto'),
       ELT(1 + (n DIV 3) % 11, 'DE', 'FR', 'ES', 'IT', 'NL', 'BE', 'PL', 'NG', 'BR', 'US', 'GB'),
       IF(n % 3 = 0, CONCAT('d-', n % 30000), NULL),
       IF((n DIV 7) % 5 IN (0, 2), 40 + (n % 1000) / 100.0, NULL),
       IF((n DIV 7) % 5 IN (0, 2), (n % 700) / 100.0, NULL)
FROM (SELECT n, POW(((n * 7919) % 1000003) / 1000003.0, 8) AS p
      FROM (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d AS n
            FROM (DIGITS) a, (DIGITS) b, (DIGITS) c, (DIGITS) e, (DIGITS) f, (DIGITS) g) ns
      WHERE n >= :low AND n < :high) rows_
""".replace("DIGITS", DIGITS)

LIST_VALUES = {
    "blocked_cards": [f"c-{n}" for n in range(0, 50000, 97)],
    "vip_cards": [f"c-{n}" for n in range(5, 50000, 499)],
    "risky_bins": ["c-123", "c-4567"],
    "high_risk_countries": ["NG", "BR"],
    "bad_merchants": [f"m-{n}" for n in range(3, 2000, 211)],
    "trusted_merchants": [f"m-{n}" for n in range(1, 2000, 41)],
    "bad_terminals": [f"t-{n}" for n in range(7, 20000, 907)],
    "bad_devices": [f"d-{n}" for n in range(11, 30000, 1201)],
}
DRAFT = [
    RuleSpec("draft-burst", "decline if card_count_1h >= 4 and amount_eur > 150 priority 3"),
    RuleSpec("draft-gambling", 'review if mcc == "7995" and card_merchant_new_30d == 1'),
    RuleSpec("draft-night", "review if is_night == 1 and amount_eur / card_amount_mean_30d > 3"),
    RuleSpec(
        "draft-model", "decline if fraud_probability > 0.6 and country in @high_risk_countries"
    ),
    RuleSpec(
        "draft-device", "review if device_id is missing and channel == 'ecom' and amount_eur > 400"
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if not 1 <= args.rows <= 1_000_000:
        parser.error(f"--rows {args.rows}: expected 1 to 1,000,000")
    config = Config.from_env(os.environ)
    if not c_extension_loads():  # this process's CPU time would leave the reader's out
        raise SystemExit("mysql-connector's C extension does not load here (see rules.backtest)")
    with scratch_database(config, "payscore_bench") as url:
        engine = make_engine(url)  # the flow's account stores the payments
        on_it = config.on_database(str(make_url(url).database))
        analysts = make_engine(on_it.analyst_mysql_dsn)  # rules, lists and the backtest's reads
        started = time.perf_counter()
        for low in range(0, args.rows, 100_000):
            with engine.begin() as c:
                c.execute(
                    text(FILL),
                    {"rows": args.rows, "low": low, "high": min(low + 100_000, args.rows)},
                )
        with engine.begin() as c:
            c.execute(text("ANALYZE TABLE scored_payments"))
            size = c.execute(
                text(
                    "SELECT data_length FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = 'scored_payments'"
                )
            ).scalar()
        filled = time.perf_counter() - started
        print(f"stored {args.rows:,} payments ({size / 1e9:.2f} GB) in {filled:.0f} s")
        store = RulesStore(analysts)
        for name, kind in LIST_KINDS.items():
            store.create_list(name, kind, by="bench")
            store.add_entries(name, [NewEntry(v) for v in LIST_VALUES[name]], by="bench")
        for rule_id, rule in RULES:
            store.add_rule(rule_id, rule, by="bench", status="active")
        for jobs in (1, 2):
            best, cpu = None, float("inf")
            for _ in range(3):
                started_cpu = time.process_time()
                report = backtest(on_it.analyst_mysql_dsn, DRAFT, store=store, jobs=jobs)
                cpu = min(cpu, time.process_time() - started_cpu)
                best = report if best is None or report.seconds < best.seconds else best
            assert best is not None
            where = (
                f"this process's CPU {cpu:.1f} s, MariaDB's apart"
                if jobs == 1
                else f"{jobs} processes, each reading a span of the range"
            )
            print(
                f"backtest of {best.payments:,} payments, {len(best.rules)} rules (50 live, 5 "
                f"draft): {best.seconds:.1f} s (best of 3; {where}); load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
        print("\n" + "\n".join(best.lines()))
        engine.dispose()
        analysts.dispose()


if __name__ == "__main__":
    main()
