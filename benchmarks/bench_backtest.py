"""How long the backtest takes over a million stored payments, and where the time goes.

    python benchmarks/bench_backtest.py [--rows 1000000] [--json-only] [--jobs 1 2]

Fills a throwaway database ``payscore_bench_<random>`` (created and dropped, the accounts'
rights given as in the product's) on the server of ``PAYSCORE_MYSQL_URL`` with ``--rows`` scored
payments written as the flow writes them, through its sink (``storage.sink``, ``LOAD DATA``):
30 days, 50,000 cards, 2,000 merchants, the model's probability skewed towards 0 (7 % reviewed,
1.3 % declined), every row with all 42 features of the catalogue (counts, sums, rates, flags,
the hour) in its ``features`` JSON and packed in its ``feature_vector``
(:mod:`storage.feature_vector`; ``--json-only``: none, as rows stored before the flow packed
them, which the backtest reads from their JSON), the payment's MCC, channel, country, device for
a third and coordinates for card-present payments, and a label on a third of them (about 1 %
frauds, more among high probabilities). The live ruleset is the fifty rules of
``test_data/rule_examples.py`` with their lists; the draft adds five rules.

Prints the fill, how long MariaDB alone takes to scan the rows (one aggregate over the columns
the backtest reads, nothing sent), then for each ``--jobs`` the backtest's wall time (best of 3,
as ``python -m rules.backtest`` runs it: read from MySQL, unpack the features, evaluate the 55
rules, compare decisions), rows a second, the client's CPU time (this process and its
workers), MariaDB's CPU time over the same runs (every server process's on this machine, from
/proc: the shared server's other work too) and the split by stage (``BacktestReport.stages``
and ``stages_cpu``: reading rows, making columns, unpacking features, evaluating rules), and
the report's table.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import make_url

from features.catalog import FEATURE_NAMES
from rules.backtest import backtest, c_extension_loads
from rules.ruleset import RuleSpec
from rules.store import NewEntry, RulesStore
from settings.config import Config
from storage.engine import make_engine
from storage.feature_vector import current_sql
from storage.feature_vector import pack as pack_features
from storage.sink import MySQLSinkPartition
from storage.tables import scored_payments
from test_data.chaos import scratch_database
from test_data.rule_examples import LIST_KINDS, RULES

BATCH = 50_000
START = datetime(2026, 1, 1)
MCCS = ("5411", "5812", "5999", "6011", "7995", "4829", "5732")
CHANNELS = ("pos", "ecom", "contactless", "atm", "moto")
COUNTRIES = ("DE", "FR", "ES", "IT", "NL", "BE", "PL", "NG", "BR", "US", "GB")


def _feature(n: np.ndarray, i: int, name: str) -> np.ndarray:
    """Feature ``i`` (``name``) of payments ``n``: a plausible spread of its kind."""
    r = ((n * (7919 + 104729 * i) + i * 31) % 1000003) / 1000003.0
    if name.startswith("card_count") or name.endswith(("count_1d", "count_7d", "count_30d")):
        scale = {"1h": 6, "24h": 30, "7d": 120, "30d": 400, "1d": 3000}.get(
            name.rsplit("_", 1)[1], 50
        )
        return np.floor(r**4 * scale)
    if "fraud_rate" in name:
        return np.round(r**12 * 0.6, 6)
    if name in ("is_night", "is_weekend", "card_merchant_new_30d", "card_country_unusual"):
        return np.where(r < 0.2, 1.0, 0.0)
    if name == "hour_of_day":
        return np.floor(r * 24)
    if name == "card_seconds_since_prev":
        return np.round(r**3 * 2592000, 1)
    if name == "card_distinct_merchants_24h":
        return np.floor(r**6 * 12)
    if name == "card_speed_kmh":
        return np.round(r**20 * 3000, 2)
    if name == "card_amount_to_mean_30d":
        return np.round(r**6 * 30 + 0.2, 4)
    if name == "amount_eur":
        return np.round((100 + n % 50000) / 100.0 * (1 + (((n * 31) % 997) / 997.0) ** 30 * 100), 2)
    return np.round(r**3 * 5000, 2)


def payment_rows(low: int, high: int, rows: int, *, packed: bool) -> list[dict[str, object]]:
    """The stored rows of payments ``low`` to ``high`` (of ``rows``), as the flow's sink takes
    them (``storage.rows.scored_payment_row``'s columns)."""
    n = np.arange(low, high, dtype=np.int64)
    p = (((n * 7919) % 1000003) / 1000003.0) ** 8
    table = np.column_stack([_feature(n, i, name) for i, name in enumerate(FEATURE_NAMES)])
    labelled = ((n * 13) % 1000) / 1000.0 < 0.008 + p * 0.5
    scored_at = datetime.now(UTC).replace(tzinfo=None)
    out = []
    for k, (m, prob, values) in enumerate(zip(n.tolist(), p.tolist(), table.tolist(), strict=True)):
        features = dict(zip(FEATURE_NAMES, values, strict=True))
        decision = "decline" if prob >= 0.9 else "review" if prob >= 0.5 else "approve"
        present = (m // 7) % 5 in (0, 2)
        out.append(
            {
                "transaction_id": f"b-{m:08d}",
                "card_id": f"c-{m % 50000}",
                "merchant_id": f"m-{m % 2000}",
                "terminal_id": f"t-{m % 20000}",
                "amount_minor": 100 + m % 50000,
                "currency": "USD" if m % 20 == 0 else "EUR",
                "event_time": START + timedelta(seconds=m * 2592000 // rows),
                "utc_offset_minutes": 0,
                "fraud_probability": prob,
                "decision": decision,
                "model_decision": decision,
                "reason_codes": ["amount_eur"],
                "model_version": "v00001",
                "features": features,
                "feature_vector": pack_features(features) if packed else None,
                "kafka_partition": 0,
                "kafka_offset": m,
                "scored_at": scored_at,
                "label_is_fraud": bool(labelled[k]) if m % 3 == 0 else None,
                "mcc": MCCS[m % 7],
                "channel": CHANNELS[(m // 7) % 5],
                "country": COUNTRIES[(m // 3) % 11],
                "device_id": f"d-{m % 30000}" if m % 3 == 0 else None,
                "latitude": 40 + (m % 1000) / 100.0 if present else None,
                "longitude": (m % 700) / 100.0 if present else None,
            }
        )
    return out


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


def mariadb_cpu_seconds() -> float | None:
    """The CPU time of every MariaDB (or MySQL) server process on this machine (the shared one
    and any private instance), from /proc; None if none can be read."""
    ticks, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split()
        except OSError:
            continue
        if fields[1] in ("(mariadbd)", "(mysqld)"):
            ticks += int(fields[13]) + int(fields[14])
            found = True
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


def client_cpu_seconds() -> float:
    """This process's CPU time and that of its children waited for (the --jobs workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json-only", action="store_true", help="rows without feature_vector")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if not 1 <= args.rows <= 1_000_000:
        parser.error(f"--rows {args.rows}: expected 1 to 1,000,000")
    config = Config.from_env(os.environ)
    if not c_extension_loads():  # this process's CPU time would leave the reader's out
        raise SystemExit("mysql-connector's C extension does not load here (see rules.backtest)")
    with scratch_database(config, "payscore_bench") as url:
        engine = make_engine(url, pool_size=1, local_infile=True)  # the flow's account and sink
        on_it = config.on_database(str(make_url(url).database))
        analysts = make_engine(on_it.analyst_mysql_dsn)  # rules, lists and the backtest's reads
        sink = MySQLSinkPartition(engine, scored_payments)
        started = time.perf_counter()
        for low in range(0, args.rows, BATCH):
            high = min(low + BATCH, args.rows)
            sink.write_batch(payment_rows(low, high, args.rows, packed=not args.json_only))
        with engine.begin() as c:
            c.execute(text("ANALYZE TABLE scored_payments"))
            size = c.execute(
                text(
                    "SELECT data_length FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = 'scored_payments'"
                )
            ).scalar()
        filled = time.perf_counter() - started
        what = "JSON only" if args.json_only else "JSON and packed"
        print(
            f"stored {args.rows:,} payments ({size / 1e9:.2f} GB, features {what}) "
            f"in {filled:.0f} s"
        )
        with analysts.connect() as c:  # MariaDB alone: the scan, nothing sent
            for _ in range(2):  # the second with the pages the first read
                started = time.perf_counter()
                c.execute(
                    text(
                        f"SELECT COUNT(*), SUM({current_sql()}), SUM(LENGTH(country)) "
                        "FROM scored_payments WHERE event_time >= '2000-01-01'"
                    )
                ).one()
                scan = time.perf_counter() - started
            print(f"MariaDB alone scanning the {args.rows:,} rows (nothing sent): {scan:.1f} s")
        store = RulesStore(analysts)
        for name, kind in LIST_KINDS.items():
            store.create_list(name, kind, by="bench")
            store.add_entries(name, [NewEntry(v) for v in LIST_VALUES[name]], by="bench")
        for rule_id, rule in RULES:
            store.add_rule(rule_id, rule, by="bench", status="active")
        best = None
        for jobs in args.jobs:
            best, cpu, server = None, float("inf"), float("inf")
            for _ in range(3):
                started_cpu, started_server = client_cpu_seconds(), mariadb_cpu_seconds()
                report = backtest(on_it.analyst_mysql_dsn, DRAFT, store=store, jobs=jobs)
                cpu = min(cpu, client_cpu_seconds() - started_cpu)
                ended_server = mariadb_cpu_seconds()
                if started_server is not None and ended_server is not None:
                    server = min(server, ended_server - started_server)
                best = report if best is None or report.seconds < best.seconds else best
            assert best is not None
            summed = "summed over processes, " if jobs > 1 else ""
            server_cpu = f"{server:.1f} s" if server != float("inf") else "n/a"
            stages = ", ".join(
                f"{k} {v:.1f} s (CPU {best.stages_cpu[k]:.1f} s)" for k, v in best.stages.items()
            )
            print(
                f"backtest of {best.payments:,} payments, {len(best.rules)} rules (50 live, 5 "
                f"draft), {jobs} process{'es' if jobs > 1 else ''}: {best.seconds:.1f} s (best "
                f"of 3), {best.payments / best.seconds:,.0f} payments/s; client CPU {cpu:.1f} s, "
                f"MariaDB CPU {server_cpu} (least of 3); stages ({summed}wall, this side's CPU): "
                f"{stages}; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
        if best is not None:
            print("\n" + "\n".join(best.lines()))
        engine.dispose()
        analysts.dispose()


if __name__ == "__main__":
    main()
