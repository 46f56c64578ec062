"""The label claim's CPU per label, client and server, before and after it became one JSON
document a statement (issue 23), and proof that both leave the same rows.

    python benchmarks/bench_claim_cpu.py [--payments 20000] [--batches 60 500] [--repeats 3]
                                         [--profile]

For each batch size and repeat, and for each way of claiming (``before``: the four statements
of ``test_data/claims_before.py``, every value a parameter; ``now``:
:func:`storage.labels.claim_labels`), in alternating order: a scratch database on the server of
``PAYSCORE_MYSQL_URL`` gets the generator's payments with their real features
(``bench_mysql_cpu.rows_and_labels``: the same rows as the sink writes), and their labels are
claimed in batches of that size, one transaction a batch, as the flow's account over TCP as the
flow connects. Client CPU is this process's (``process_time``), server CPU the MariaDB thread
serving the connection (``/proc/<mysqld>/task/<tid>/stat``, 10 ms ticks), also split by
statement. Every run's ledger rows, payment marks and labels for the learner (each pickled
alone, as it crosses to the learner) and the rest of its outcomes are compared with the other
way's: the script stops if they differ.

``--profile`` adds a cProfile of the client of each way at the first batch size (CPU time, so
waits for the server are left out; top functions by own time, µs per label, inflated by the
profiler's own cost).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pickle
import pstats
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import cpu_meter
from bench_mysql_cpu import Server, measured, per_statement, rows_and_labels
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from settings.config import Config
from storage.engine import make_engine
from storage.labels import Claimed, ReadLabel, claim_labels
from storage.sink import MySQLSinkPartition
from storage.tables import fraud_labels, scored_payments
from test_data.chaos import scratch_database
from test_data.claims_before import claim_labels_before

TOPIC = "labels"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)  # one moment for every run: rows comparable
WAYS: dict[str, Callable[..., Claimed]] = {"before": claim_labels_before, "now": claim_labels}


def state(engine: Engine) -> str:
    """A digest of every ledger row and every payment's label columns."""
    digest = hashlib.sha256()
    with engine.connect() as c:
        for row in c.execute(
            text(f"SELECT * FROM {fraud_labels.name} ORDER BY topic, kafka_partition, kafka_offset")
        ):
            digest.update(repr(tuple(row)).encode())
        for row in c.execute(
            text(
                "SELECT transaction_id, label_is_fraud, label_reported_at, label_kind "
                f"FROM {scored_payments.name} ORDER BY transaction_id"
            )
        ):
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def run(
    config: Config, way: str, rows: list[dict[str, Any]], reads: Sequence[ReadLabel], batch: int,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:  # fmt: skip
    claim = WAYS[way]
    with scratch_database(config, "payscore_claimcpu") as url:
        sink_engine = make_engine(url, pool_size=1, local_infile=True)
        sink = MySQLSinkPartition(sink_engine, scored_payments)
        for i in range(0, len(rows), 2000):
            sink.write_batch(rows[i : i + 2000])
        sink_engine.dispose()
        engine = make_engine(url, pool_size=1, isolation_level="READ COMMITTED")
        learned = hashlib.sha256()
        tally: dict[str, float] = {}
        server = Server(engine)
        with measured(engine) as m:
            for i in range(0, len(reads), batch):
                with engine.begin() as c:
                    per_statement(c, tally, server)
                    if profile is not None:
                        profile.enable()
                    outcome = claim(c, TOPIC, reads[i : i + batch], now=NOW)
                    if profile is not None:
                        profile.disable()
                # Each label for the learner pickled alone, as it crosses; the rest by value.
                for x in outcome.learnable:
                    learned.update(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL))
                learned.update(repr((outcome.waiting, outcome.rejected)).encode())
                learned.update(repr([getattr(outcome, f) for f in ("replayed", "sampled_out",
                                     "corrections")]).encode())  # fmt: skip
        out = {**m, "statements": tally, "learned": learned.hexdigest(), "rows": state(engine)}
        engine.dispose()
    return out


def show_profile(way: str, profile: cProfile.Profile, labels: int) -> None:
    stats = pstats.Stats(profile)
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    total = sum(v[2] for _, v in entries)
    print(f"  client profile, {way}: {total / labels * 1e6:.1f} µs per label under cProfile")
    for (path, line, name), (_, _, own, cumulative, _) in entries[:25]:
        where = f"{os.path.basename(path)}:{line}({name})" if line else name
        print(f"    {own / labels * 1e6:7.2f} own {cumulative / labels * 1e6:7.2f} cum  {where}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[60, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    config = Config.from_env(os.environ)
    rows, reads = rows_and_labels(args.payments)
    print(
        f"bench_claim_cpu: {len(rows):,} payments, {len(reads):,} labels, batches "
        f"{args.batches}, {args.repeats} repeats; load average {os.getloadavg()[0]:.1f} "
        f"(server {make_url(config.mysql_dsn).host})"
    )
    for batch in args.batches:
        results: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
        for repeat in range(args.repeats):
            order = list(WAYS) if repeat % 2 == 0 else list(reversed(WAYS))
            for way in order:
                results[way].append(run(config, way, rows, reads, batch))
        firsts = {way: (r[0]["rows"], r[0]["learned"]) for way, r in results.items()}
        if len(set(firsts.values())) != 1:
            raise SystemExit(f"the ways left different rows or labels for the learner: {firsts}")
        print(f"\nbatches of {batch} (rows and labels for the learner identical in both ways):")
        for way, rs in results.items():
            client = cpu_meter.spread(r["client"] * 1e6 / len(reads) for r in rs)
            server = cpu_meter.spread(r["server"] * 1e6 / len(reads) for r in rs)
            kinds: dict[str, list[float]] = {}
            for r in rs:
                for kind, seconds in r["statements"].items():
                    kinds.setdefault(kind, []).append(seconds * 1e6 / len(reads))
            split = "; ".join(f"{k} {cpu_meter.median_of(v):.1f}" for k, v in sorted(kinds.items()))
            print(
                f"  {way:<7} client {cpu_meter.fmt_spread(client, '.1f')} µs, server "
                f"{cpu_meter.fmt_spread(server, '.1f')} µs per label; server by statement: "
                f"{split}"
            )
    if args.profile:
        for way in WAYS:
            profile = cProfile.Profile(time.process_time)  # CPU: waits for MySQL left out
            run(config, way, rows, reads, args.batches[0], profile)
            show_profile(way, profile, len(reads))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
