"""The flow's MySQL work per payment and per label, in client and server CPU, by transport.

    python benchmarks/bench_mysql_cpu.py [--payments 20000] [--batch 500] [--repeats 3]

In a scratch database on the shared server, for each transport -- TCP as the flow connects
today (PyMySQL 1.2 negotiates TLS by itself: "preferred"), TCP with verified TLS (the server's
throwaway CA), TCP without TLS, the local unix socket with PyMySQL's preferred TLS and without
TLS -- and each repeat:

1. **sink**: ``--payments`` scored payments (the generator's payments with their real features,
   ``stream_items.py``) written through ``MySQLSinkPartition.write_batch`` in batches of
   ``--batch`` (``LOAD DATA LOCAL INFILE``, one transaction a batch, as the flow's sink);
2. **claims today**: their labels claimed through ``storage.labels.claim_labels`` in batches of
   ``--batch``, one transaction each (as the label join), with the server's CPU per statement;
3. **claims staged** (a prototype of the issue's idea, not the product): per batch, the labels'
   positions and ids bulk-loaded into a temporary table, one joined ``SELECT`` for the ledger and
   the payments, the same decisions (``storage.labels.resolve``), the decided ledger rows
   bulk-loaded into a second temporary table, then one ``UPDATE ... JOIN`` marks the payments
   and one ``INSERT ... SELECT`` writes the ledger. It runs as the admin account (the flow's has
   no right to make temporary tables) and is checked to leave the same rows as today's claims;
4. **claims staged, MEMORY**: the same with the temporary tables in the MEMORY engine (emptying
   InnoDB ones per batch is undo-logged; MEMORY ones are not transactional, which staging does
   not need: each batch empties them first). Both MySQL 8 and MariaDB have it. MEMORY rows are
   fixed-width (a decided ledger row 9.6 KB, its bounded reason 8 KB of it), so the session's
   ``max_heap_table_size`` is raised to 64 MiB first: the default 16 MiB holds 1,700 of them.

Client CPU is this process's (``process_time``); server CPU is the MariaDB thread serving the
connection (``information_schema.PROCESSLIST.TID`` -> ``/proc/<mysqld>/task/<tid>/stat``, 10 ms
ticks), so neither includes the other developers' load; InnoDB's background threads (flushing,
purge) are not in it. Figures: µs per payment (sink) and per label (claims), median and spread.

``--extra`` measures instead, over TCP as today and over the unix socket without TLS: the claims
at several batch sizes (``--claim-batches``; the flow's label join claims what one activation
brought to each of its 16 card groups), and the sink into ``scored_payments`` with and without
its four secondary indexes (the review queue's and the card/time ones).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cpu_meter
import msgspec
import stream_items
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from features.contract import FraudLabel, Payment
from settings.config import Config, over_socket
from storage.engine import make_engine
from storage.labels import ReadLabel, claim_labels, resolve
from storage.rows import scored_payment_row, utc_naive
from storage.sink import MySQLSinkPartition, tsv_field
from storage.tables import fraud_labels, scored_payments
from test_data.chaos import scratch_database

CA = Path("/etc/mysql/payscore-tls/ca.pem")
SOCKET = Path("/run/mysqld/mysqld.sock")
TOPIC = "labels"
_payment = msgspec.json.Decoder(Payment).decode
_label = msgspec.json.Decoder(FraudLabel).decode
_features = msgspec.json.Decoder(dict[str, float]).decode


def transports(dsn: str) -> dict[str, str]:
    """The URL of ``dsn`` for each way of reaching the local server. PyMySQL 1.2 negotiates TLS
    whenever the server offers it ("preferred", unverified) unless told ``ssl_disabled``, over
    the unix socket too: that is how the flow connects by default. "unix socket, no TLS" is the
    URL the flow connects with when ``PAYSCORE_MYSQL_SOCKET`` names the socket."""
    url = make_url(dsn)
    socket = url.set(host="localhost", port=None).update_query_dict({"unix_socket": str(SOCKET)})
    out = {
        "TCP, TLS preferred (today)": url,
        "TCP, TLS verified": url.update_query_dict({"ssl_ca": str(CA)}) if CA.exists() else None,
        "TCP, no TLS": url.update_query_dict({"ssl_disabled": "true"}),
        "unix socket, TLS preferred": socket if SOCKET.exists() else None,
        # As the product connects with PAYSCORE_MYSQL_SOCKET set (settings.config.over_socket).
        "unix socket, no TLS": (
            make_url(over_socket(dsn, str(SOCKET))) if SOCKET.exists() else None
        ),
    }
    return {k: v.render_as_string(hide_password=False) for k, v in out.items() if v is not None}


def uses_tls(engine: Engine) -> bool:
    with engine.connect() as c:
        cipher = c.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()[1]
    return bool(cipher)


class Server:
    """The server CPU of one pooled connection (an engine with a pool of one)."""

    def __init__(self, engine: Engine) -> None:
        self.mysqld = int(Path("/run/mysqld/mysqld.pid").read_text().strip())
        with engine.connect() as c:
            self.tid = int(
                c.execute(
                    text(
                        "SELECT TID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
                    )
                ).scalar_one()
            )

    def cpu(self) -> float:
        return cpu_meter.thread_cpu(self.mysqld, self.tid)


@contextmanager
def measured(engine: Engine) -> Iterator[dict[str, float]]:
    server = Server(engine)
    out: dict[str, float] = {}
    c0, s0 = time.process_time(), server.cpu()
    yield out
    out["client"] = time.process_time() - c0
    out["server"] = server.cpu() - s0


def rows_and_labels(payments: int) -> tuple[list[dict[str, Any]], list[ReadLabel]]:
    plain = stream_items.load_plain(payments)
    features = {row[0]: row[7] for row in plain["learner"]}
    now = datetime.now(UTC)
    rows = []
    for json, partition, offset, _, at in plain["card"]:
        p = _payment(json)
        rows.append(
            scored_payment_row(
                p, partition=partition, offset=offset,
                features=features.get(p.transaction_id, {"amount_eur": 1.0}),
                probability=0.0123, decision="approve",
                reasons=("amount_eur", "card_count_1h", "card_speed_kmh"),
                model_version="v00001", scored_at=now, appended_at=at,
            )
        )  # fmt: skip
    reads = [ReadLabel(_label(json), partition, offset) for json, partition, offset, _, _ in
             plain["label"]]  # fmt: skip
    stored = {r["transaction_id"] for r in rows}
    return rows, [r for r in reads if r.label.transaction_id in stored]


def per_statement(connection: Connection, tally: dict[str, float], server: Server) -> None:
    """Make ``connection.exec_driver_sql`` add each statement's server CPU to ``tally``."""
    run = connection.exec_driver_sql

    def timed(sql: str, *args: Any, **kwargs: Any) -> Any:
        before = server.cpu()
        out = run(sql, *args, **kwargs)
        kind = " ".join(sql.split()[:2])
        tally[kind] = tally.get(kind, 0.0) + server.cpu() - before
        return out

    connection.exec_driver_sql = timed  # type: ignore[method-assign]


def claims_today(
    engine: Engine, reads: list[ReadLabel], batch: int, tally: dict[str, float]
) -> dict[str, float]:
    with measured(engine) as m:
        server = Server(engine)
        for i in range(0, len(reads), batch):
            with engine.begin() as c:
                per_statement(c, tally, server)
                claim_labels(c, TOPIC, reads[i : i + batch])
    return m


ID = "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
STAGE = f"""CREATE TEMPORARY TABLE IF NOT EXISTS label_stage (
    kafka_partition INT NOT NULL, kafka_offset BIGINT NOT NULL, transaction_id {ID} NOT NULL,
    PRIMARY KEY (kafka_partition, kafka_offset), KEY (transaction_id)) ENGINE={{engine}}"""
MARKS = f"""CREATE TEMPORARY TABLE IF NOT EXISTS label_marks (
    transaction_id {ID} NOT NULL PRIMARY KEY,
    kafka_partition INT NOT NULL, kafka_offset BIGINT NOT NULL, is_fraud TINYINT(1) NOT NULL,
    reported_at DATETIME(6) NOT NULL) ENGINE={{engine}}"""
# InnoDB: the ledger's own definition. MEMORY takes no TEXT: the reason as a bounded VARCHAR
# (features.bounded cuts every reason far below it), the rest as the ledger has it.
DECIDED = {
    "InnoDB": "CREATE TEMPORARY TABLE IF NOT EXISTS label_decided LIKE fraud_labels",
    "MEMORY": f"""CREATE TEMPORARY TABLE IF NOT EXISTS label_decided (
    topic VARCHAR(249) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    kafka_partition INT NOT NULL, kafka_offset BIGINT NOT NULL, transaction_id {ID} NOT NULL,
    card_id {ID} NOT NULL, is_fraud TINYINT(1) NOT NULL, reported_at DATETIME(6) NOT NULL,
    status VARCHAR(8) NOT NULL, reason VARCHAR(2000) NULL, learned_version {ID} NULL,
    first_seen_at DATETIME(6) NOT NULL, resolved_at DATETIME(6) NULL, analyst {ID} NULL,
    unverified_analyst {ID} NULL, PRIMARY KEY (topic, kafka_partition, kafka_offset))
    ENGINE=MEMORY""",
}
LEDGER_COLUMNS = tuple(c.name for c in fraud_labels.columns)
# The temporary tables' engine per variant of the prototype: InnoDB (rows undo-logged, so
# emptying them per batch costs), MEMORY (not transactional: emptied at each batch's start).
STAGED_ENGINES = {"claims staged": "InnoDB", "claims staged, MEMORY": "MEMORY"}
# A MEMORY table holds at most max_heap_table_size (16 MiB by default: 1,700 decided rows);
# 64 MiB holds the decided rows of a batch of 6,800 labels. Set for the session, before CREATE.
MEMORY_TABLE_BYTES = 64 * 1024 * 1024


def _load(c: Connection, table: str, columns: Iterable[str], lines: list[str]) -> None:
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir="/dev/shm", suffix=".tsv") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        c.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE '{f.name}' INTO TABLE {table} CHARACTER SET utf8mb4 "
            f"({', '.join(columns)})"
        )


def claim_staged(c: Connection, reads: list[ReadLabel], engine: str = "InnoDB") -> None:
    """The prototype: stage, one joined read, the same decisions, stage them, two set writes;
    the temporary tables in ``engine`` (InnoDB or MEMORY)."""
    if engine == "MEMORY":  # rows are fixed-width: a decided row is 9.6 KB (its reason 8 KB)
        c.exec_driver_sql(f"SET SESSION max_heap_table_size = {MEMORY_TABLE_BYTES}")
    for ddl in (STAGE.format(engine=engine), DECIDED[engine], MARKS.format(engine=engine)):
        c.exec_driver_sql(ddl)
    for table in ("label_stage", "label_decided", "label_marks"):
        c.exec_driver_sql(f"DELETE FROM {table}")
    staged = [f"{r.partition}\t{r.offset}\t{tsv_field(r.label.transaction_id)}" for r in reads]
    _load(c, "label_stage", ("kafka_partition", "kafka_offset", "transaction_id"), staged)
    ledger: dict[tuple[int, int], Any] = {}
    payments: dict[str, Any] = {}
    joined = c.exec_driver_sql(
        "SELECT s.kafka_partition, s.kafka_offset, f.status, f.learned_version, "
        "p.transaction_id, p.card_id, p.merchant_id, p.terminal_id, p.event_time, p.features, "
        "p.model_version, p.label_is_fraud, p.kafka_partition, p.kafka_offset "
        "FROM label_stage s "
        "LEFT JOIN fraud_labels f ON f.topic = %s AND f.kafka_partition = s.kafka_partition "
        "AND f.kafka_offset = s.kafka_offset "
        "LEFT JOIN scored_payments p ON p.transaction_id = s.transaction_id",
        (TOPIC,),
    )
    for part, off, status, learned, *payment in joined:
        if status is not None:
            ledger[(part, off)] = _Recorded(status, learned)
        if payment[0] is not None:
            payments[payment[0]] = _Stored(*payment[:5], _features(payment[5]), *payment[6:])
    moment = utc_naive(datetime.now(UTC))
    _, record, claims = resolve(TOPIC, reads, ledger, payments, lambda _: False, moment)
    if claims:
        _load(c, "label_marks",
              ("transaction_id", "kafka_partition", "kafka_offset", "is_fraud", "reported_at"),
              ["\t".join(tsv_field(v) for v in (
                  t, payments[t].kafka_partition, payments[t].kafka_offset, lab.is_fraud,
                  utc_naive(lab.reported_at))) for t, lab in claims.items()])  # fmt: skip
        marked = c.exec_driver_sql(
            "UPDATE scored_payments p JOIN label_marks m ON p.transaction_id = m.transaction_id "
            "AND p.kafka_partition = m.kafka_partition AND p.kafka_offset = m.kafka_offset "
            "SET p.label_is_fraud = m.is_fraud, p.label_reported_at = m.reported_at "
            "WHERE p.label_is_fraud IS NULL"
        )
        if marked.rowcount != len(claims):
            raise RuntimeError(f"marked {marked.rowcount} of {len(claims)} payments")
    if record:
        _load(c, "label_decided", LEDGER_COLUMNS,
              ["\t".join(tsv_field(r[col]) for col in LEDGER_COLUMNS) for r in record])  # fmt: skip
        columns = ", ".join(LEDGER_COLUMNS)
        c.exec_driver_sql(
            f"INSERT INTO fraud_labels ({columns}) SELECT {columns} FROM label_decided "
            "ON DUPLICATE KEY UPDATE status = VALUES(status), reason = VALUES(reason), "
            "resolved_at = VALUES(resolved_at)"
        )


class _Recorded(msgspec.Struct):
    status: str
    learned_version: str | None


class _Stored(msgspec.Struct):
    transaction_id: str
    card_id: str
    merchant_id: str
    terminal_id: str
    event_time: datetime
    features: dict[str, float]
    model_version: str
    label_is_fraud: bool | None
    kafka_partition: int
    kafka_offset: int


def claims_staged(
    engine: Engine, reads: list[ReadLabel], batch: int, tally: dict[str, float], tables: str
) -> dict[str, float]:
    with measured(engine) as m:
        server = Server(engine)
        for i in range(0, len(reads), batch):
            with engine.begin() as c:
                per_statement(c, tally, server)
                claim_staged(c, reads[i : i + batch], tables)
    return m


def ledger_of(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        return [
            tuple(r)
            for r in c.execute(
                text(
                    "SELECT f.kafka_partition, f.kafka_offset, f.status, p.label_is_fraud "
                    "FROM fraud_labels f JOIN scored_payments p USING (transaction_id) "
                    "ORDER BY 1, 2"
                )
            )
        ]


def one_repeat(
    config: Config, url_of: Callable[[str], str], admin_of: Callable[[str], str], args: Any,
    rows: list[dict[str, Any]], reads: list[ReadLabel],
) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    ledgers = []
    for how in ("claims today", *STAGED_ENGINES):
        with scratch_database(config, "payscore_mycpu") as db_url:
            name = make_url(db_url).database or ""
            sink_engine = make_engine(url_of(name), pool_size=1, local_infile=True)
            out["tls"] = uses_tls(sink_engine)
            if how == "claims today":
                with measured(sink_engine) as sink:
                    partition = MySQLSinkPartition(sink_engine, scored_payments)
                    for i in range(0, len(rows), args.batch):
                        partition.write_batch(rows[i : i + args.batch])
                out["sink"] = sink
            else:  # the payments only need to be there
                partition = MySQLSinkPartition(sink_engine, scored_payments)
                for i in range(0, len(rows), 2000):
                    partition.write_batch(rows[i : i + 2000])
            sink_engine.dispose()
            tally: dict[str, float] = {}
            if how == "claims today":
                engine = make_engine(url_of(name), pool_size=1, isolation_level="READ COMMITTED")
                out[how] = claims_today(engine, reads, args.batch, tally)
            else:
                engine = make_engine(
                    admin_of(name), pool_size=1, isolation_level="READ COMMITTED",
                    local_infile=True,
                )  # fmt: skip
                out[how] = claims_staged(engine, reads, args.batch, tally, STAGED_ENGINES[how])
            out[f"statements {how}"] = tally
            ledgers.append(ledger_of(engine))
            engine.dispose()
    if any(ledger != ledgers[0] for ledger in ledgers):
        raise RuntimeError("the staged claims left other rows than today's claims")
    return out


SECONDARY = (
    "ix_scored_payments_card_time",
    "ix_scored_payments_event_time",
    "ix_scored_payments_queue",
    "ix_scored_payments_merchant_queue",
)


def extra(
    config: Config, transport: str, url: str, admin: str, args: Any, rows: list[dict[str, Any]],
    reads: list[ReadLabel],
) -> None:  # fmt: skip
    """Claims today at several batch sizes, and the sink into a table without its four
    secondary indexes (dropped by the admin): where the server's time goes."""
    print(f"\n{transport}, extra parts:")
    at = {db: make_url(u) for db, u in (("flow", url), ("admin", admin))}

    def on(kind: str, name: str) -> str:
        return at[kind].set(database=name).render_as_string(hide_password=False)

    for batch in args.claim_batches:
        server, client = [], []
        for _ in range(args.repeats):
            with scratch_database(config, "payscore_mycpu") as db_url:
                name = make_url(db_url).database or ""
                sink_engine = make_engine(on("flow", name), pool_size=1, local_infile=True)
                part = MySQLSinkPartition(sink_engine, scored_payments)
                for i in range(0, len(rows), 2000):
                    part.write_batch(rows[i : i + 2000])
                sink_engine.dispose()
                engine = make_engine(
                    on("flow", name), pool_size=1, isolation_level="READ COMMITTED"
                )
                m = claims_today(engine, reads, batch, {})
                engine.dispose()
            client.append(m["client"] * 1e6 / len(reads))
            server.append(m["server"] * 1e6 / len(reads))
        print(f"  claims today in batches of {batch:>5}: client "
              f"{cpu_meter.fmt_spread(cpu_meter.spread(client), '.1f')} µs, server "
              f"{cpu_meter.fmt_spread(cpu_meter.spread(server), '.1f')} µs per label")  # fmt: skip
    for dropped in (False, True):
        server, client = [], []
        for _ in range(args.repeats):
            with scratch_database(config, "payscore_mycpu") as db_url:
                name = make_url(db_url).database or ""
                if dropped:
                    a = make_engine(on("admin", name), pool_size=1)
                    with a.begin() as c:
                        for index in SECONDARY:
                            c.exec_driver_sql(f"DROP INDEX {index} ON scored_payments")
                    a.dispose()
                sink_engine = make_engine(on("flow", name), pool_size=1, local_infile=True)
                with measured(sink_engine) as m:
                    part = MySQLSinkPartition(sink_engine, scored_payments)
                    for i in range(0, len(rows), args.batch):
                        part.write_batch(rows[i : i + args.batch])
                sink_engine.dispose()
            client.append(m["client"] * 1e6 / len(rows))
            server.append(m["server"] * 1e6 / len(rows))
        what = "without its 4 secondary indexes" if dropped else "as it is"
        c_text = cpu_meter.fmt_spread(cpu_meter.spread(client), ".1f")
        s_text = cpu_meter.fmt_spread(cpu_meter.spread(server), ".1f")
        print(f"  sink, scored_payments {what}: client {c_text} µs, server {s_text} µs per payment")


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--extra",
        action="store_true",
        help="only the extra parts: claims at --claim-batches sizes, the sink without indexes",
    )
    parser.add_argument("--claim-batches", type=int, nargs="+", default=[20, 60, 500, 2000])
    parser.add_argument(
        "--transports",
        nargs="+",
        metavar="NAME",
        help="only these transports (their names as printed, e.g. 'TCP, TLS preferred (today)' "
        "'unix socket, no TLS'); all by default",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    config = Config.from_env(os.environ)
    rows, reads = rows_and_labels(args.payments)
    n, m = len(rows), len(reads)
    print(
        f"bench_mysql_cpu: {n:,} payments, {m:,} labels, batches of {args.batch}, "
        f"{args.repeats} repeats; load average {os.getloadavg()[0]:.1f}"
    )
    flow_urls = transports(config.mysql_dsn)
    admin_urls = transports(config.mysql_admin_dsn)
    if args.extra:
        for transport in ("TCP, TLS preferred (today)", "unix socket, no TLS"):
            if transport in flow_urls:
                extra(config, transport, flow_urls[transport], admin_urls[transport], args, rows,
                      reads)  # fmt: skip
        return
    unknown = set(args.transports or ()) - set(flow_urls)
    if unknown:
        parser.error(f"unknown transports {sorted(unknown)}; known: {sorted(flow_urls)}")
    for transport in flow_urls:
        if args.transports and transport not in args.transports:
            continue
        results = []
        for _ in range(args.repeats):
            results.append(
                one_repeat(
                    config,
                    lambda db, t=transport: make_url(flow_urls[t]).set(database=db)
                    .render_as_string(hide_password=False),
                    lambda db, t=transport: make_url(admin_urls[t]).set(database=db)
                    .render_as_string(hide_password=False),
                    args, rows, reads,
                )
            )  # fmt: skip
        tls = results[0]["tls"]
        print(f"\n{transport} (the session {'uses' if tls else 'does not use'} TLS):")
        for part, count, unit in (
            ("sink", n, "payment"),
            ("claims today", m, "label"),
            *((how, m, "label") for how in STAGED_ENGINES),
        ):
            client = cpu_meter.spread(r[part]["client"] * 1e6 / count for r in results)
            server = cpu_meter.spread(r[part]["server"] * 1e6 / count for r in results)
            print(
                f"  {part:<21} client {cpu_meter.fmt_spread(client, '.1f')} µs, server "
                f"{cpu_meter.fmt_spread(server, '.1f')} µs per {unit}"
            )
        for how in ("claims today", *STAGED_ENGINES):
            kinds: dict[str, list[float]] = {}
            for r in results:
                for kind, seconds in r[f"statements {how}"].items():
                    kinds.setdefault(kind, []).append(seconds * 1e6 / m)
            shares = "; ".join(
                f"{kind} {cpu_meter.median_of(v):.1f}" for kind, v in sorted(kinds.items())
            )
            print(f"  server µs per label by statement, {how}: {shares}")


if __name__ == "__main__":
    main()
