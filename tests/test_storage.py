"""The schema file, the sink's SQL, and the sink on the real MySQL server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.dialects import mysql

from storage.accounts import Accounts
from storage.engine import make_engine
from storage.payments import settle_reused_ids
from storage.rows import refused_row_letter
from storage.schema import (
    DATABASE_OPTIONS,
    SCHEMA_FILE,
    SchemaMismatchError,
    create_schema,
    render_ddl,
)
from storage.sink import (
    INSERT_BYTES,
    INSERT_ROWS,
    MySQLSinkPartition,
    SinkWriteError,
    Writing,
    first_write_wins,
    load_data_statement,
    statement_chunks,
    tsv_field,
)
from storage.tables import dead_letters, metadata, scored_payments
from tests.conftest import BASE

TABLES = {table.name for table in metadata.sorted_tables}
ACCOUNTS = Accounts.of(BASE)


def test_schema_file_matches_the_table_definitions() -> None:
    assert SCHEMA_FILE.read_text() == render_ddl(), (
        "test_data/schema.sql is stale: run `python -m storage.schema --write`"
    )


def test_first_write_wins_sql_inserts_and_ignores_without_updating() -> None:
    """An upsert would need the right to update every column it inserts (MariaDB), which the
    flow's account has not: the sink inserts and skips what is stored (storage/accounts.py)."""
    rows = [_row("a", 0.1), _row("b", 0.2)]
    sql = str(first_write_wins(scored_payments, rows).compile(dialect=mysql.dialect()))
    assert sql.startswith("INSERT IGNORE INTO scored_payments (transaction_id, card_id,")
    assert "UPDATE" not in sql and sql.count("), (") == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 600_000) | st.integers(0, 50), max_size=1500))
def test_statement_chunks_keep_every_row_in_order_and_within_bounds(sizes: list[int]) -> None:
    rows = [{"raw_value": b"x" * n} for n in sizes]
    chunks = statement_chunks(rows)
    assert [r for chunk in chunks for r in chunk] == rows
    for chunk in chunks:
        size = sum(len(r["raw_value"]) + 64 for r in chunk)
        assert chunk and (len(chunk) == 1 or (len(chunk) <= INSERT_ROWS and size <= INSERT_BYTES))


def _row(txn: str, probability: float) -> dict[str, object]:
    return {
        "transaction_id": txn,
        "card_id": "card-1",
        "merchant_id": "m-1",
        "terminal_id": "t-1",
        "amount_minor": 1250,
        "currency": "EUR",
        "event_time": datetime(2026, 11, 2, 8, 30),
        "utc_offset_minutes": 60,
        "fraud_probability": probability,
        "decision": "approve",
        "reason_codes": ["card_count_24h"],
        "model_version": "v00001",
        "features": {"card_count_24h": 3.0, "card_amount_sum_24h": 40.5},
        "kafka_partition": 0,
        "kafka_offset": 7,
        "scored_at": datetime.now(UTC).replace(tzinfo=None),
    }


@pytest.mark.integration
def test_sink_replay_changes_no_row(engine: Engine) -> None:
    sink = MySQLSinkPartition(engine, scored_payments)
    sink.write_batch([_row("t-1", 0.1), _row("t-2", 0.2)])
    with engine.connect() as c:
        before = c.execute(select(scored_payments).order_by("transaction_id")).all()
    # The replayed batch carries other values (a later scored_at, another score): first write wins.
    sink.write_batch([_row("t-1", 0.9), _row("t-2", 0.8), _row("t-3", 0.3)])
    with engine.connect() as c:
        after = c.execute(select(scored_payments).order_by("transaction_id")).all()
    assert after[:2] == before
    assert [r.transaction_id for r in after] == ["t-1", "t-2", "t-3"]
    assert after[0].features == {"card_count_24h": 3.0, "card_amount_sum_24h": 40.5}
    assert after[0].reason_codes == ["card_count_24h"]


@pytest.mark.integration
@pytest.mark.parametrize("method", ["load", "insert"])
def test_a_row_mysql_refuses_becomes_a_dead_letter_and_the_rest_is_stored(
    engine: Engine, method: str
) -> None:
    sink = MySQLSinkPartition(
        engine,
        scored_payments,
        Writing(method, refused=refused_row_letter("payments"), refused_table=dead_letters),  # type: ignore[arg-type]
    )
    bad = _row("t-bad", 0.5) | {"currency": "EURO", "kafka_offset": 99}  # too long: strict mode
    good = [_row(f"t-{i}", 0.1) | {"kafka_offset": i} for i in range(7)]
    sink.write_batch([*good[:3], bad, *good[3:]])
    with engine.connect() as c:
        stored = c.execute(select(scored_payments.c.transaction_id)).scalars().all()
        letters = c.execute(select(dead_letters)).all()
    assert sorted(stored) == sorted(r["transaction_id"] for r in good)
    assert [(d.topic, d.kafka_partition, d.kafka_offset) for d in letters] == [("payments", 0, 99)]
    assert "MySQL refused the row for scored_payments" in letters[0].error
    assert "currency" in letters[0].error
    assert b'"transaction_id":"t-bad"' in letters[0].raw_value


@pytest.mark.integration
def test_without_a_dead_letter_table_a_refused_row_stops_the_sink(engine: Engine) -> None:
    sink = MySQLSinkPartition(engine, scored_payments)
    bad = _row("t-bad", 0.5) | {"currency": "EURO"}
    with pytest.raises(SinkWriteError, match="currency"):
        sink.write_batch([_row("t-ok", 0.1), bad])
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(scored_payments)).scalar_one() == 1


@pytest.mark.integration
def test_ids_that_differ_only_by_case_are_two_payments(engine: Engine) -> None:
    """The database is created as ops/services.sh creates it (utf8mb4_unicode_ci by default);
    id columns compare byte for byte all the same. (``utf8mb4_bin`` pads with spaces, as every
    collation both servers share: the contract refuses ids with surrounding whitespace.)"""
    with engine.connect() as c:
        collation = c.execute(text("SELECT @@collation_database")).scalar_one()
    assert collation == "utf8mb4_unicode_ci"
    MySQLSinkPartition(engine, scored_payments).write_batch(
        [_row("h4-case-abc", 0.1), _row("H4-CASE-ABC", 0.2)]
    )
    with engine.connect() as c:
        stored = c.execute(select(scored_payments.c.transaction_id)).scalars().all()
        found = c.execute(
            select(scored_payments.c.fraud_probability).where(
                scored_payments.c.transaction_id == "H4-CASE-ABC"
            )
        ).scalars()
        assert list(found) == [0.2]
    assert sorted(stored) == ["H4-CASE-ABC", "h4-case-abc"]


@pytest.mark.integration
def test_schema_file_applies_to_an_empty_database(admin_engine: Engine) -> None:
    with admin_engine.begin() as c:
        for table in TABLES:
            c.execute(text(f"DROP TABLE {table}"))
        for statement in SCHEMA_FILE.read_text().split(";"):
            body = "\n".join(
                line for line in statement.splitlines() if not line.startswith("--")
            ).strip()
            if body:
                c.execute(text(body))
        names = {r[0] for r in c.execute(text("SHOW TABLES"))}
    assert names == TABLES


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "\\N"),
        ("tab\there", "tab\\there"),
        ("line\nbreak\r", "line\\nbreak\\r"),
        ("back\\slash", "back\\\\slash"),
        ("nul\0", "nul\\0"),
        ("\\N", "\\\\N"),  # the text "\N" is not NULL
        (True, "1"),
        (0.1, "0.1"),
        (12, "12"),
        (datetime(2026, 1, 2, 3, 4, 5, 6), "2026-01-02 03:04:05.000006"),
        (b"\x00\xff", "00ff"),
    ],
)
def test_tsv_field(value: object, expected: str) -> None:
    assert tsv_field(value) == expected


def test_tsv_field_refuses_non_finite_numbers() -> None:
    with pytest.raises(SinkWriteError, match="non-finite number nan"):
        tsv_field(float("nan"))


def test_load_statement_decodes_binary_columns_from_hex() -> None:
    sql = load_data_statement(dead_letters, ["topic", "raw_value"], "/tmp/x.tsv")
    assert sql.endswith("(topic, @raw_value) SET raw_value = UNHEX(@raw_value)")
    assert "IGNORE INTO TABLE dead_letters" in sql


@pytest.mark.integration
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    letters=st.lists(
        st.tuples(st.text(min_size=1, max_size=300), st.binary(max_size=300) | st.none()),
        min_size=1,
        max_size=20,
    )
)
def test_any_text_and_bytes_round_trip_through_the_bulk_load(
    engine: Engine, admin_engine: Engine, letters
) -> None:
    with admin_engine.begin() as c:  # the flow's account may not delete a dead letter
        c.execute(text("DELETE FROM dead_letters"))
    now = datetime(2026, 11, 2, 8, 30)
    rows = [
        {
            "topic": "payments",
            "kafka_partition": 0,
            "kafka_offset": i,
            "message_key": None,
            "raw_value": raw,
            "error": error,
            "received_at": None,
            "dead_lettered_at": now,
        }
        for i, (error, raw) in enumerate(letters)
    ]
    MySQLSinkPartition(engine, dead_letters).write_batch(rows)
    with engine.connect() as c:
        stored = c.execute(
            select(dead_letters.c.error, dead_letters.c.raw_value).order_by("kafka_offset")
        ).all()
    assert [(e, r) for e, r in stored] == letters


def test_the_tests_create_their_databases_as_ops_services_creates_the_product_s() -> None:
    services = (Path(__file__).resolve().parent.parent / "ops" / "services.sh").read_text()
    assert f"CREATE DATABASE IF NOT EXISTS \\`$DB_NAME\\` {DATABASE_OPTIONS};" in services


@pytest.mark.integration
@pytest.mark.parametrize("method", ["load", "insert"])
def test_an_id_reused_for_another_payment_is_a_dead_letter_and_repeats_are_not(
    engine: Engine, method: str
) -> None:
    sink = MySQLSinkPartition(
        engine,
        scored_payments,
        Writing(
            method,  # type: ignore[arg-type]
            refused=refused_row_letter("payments"),
            refused_table=dead_letters,
            conflicts=settle_reused_ids,
        ),
    )
    first = _row("t-1", 0.1) | {"kafka_offset": 1}
    sink.write_batch([first])
    replay = first | {"fraud_probability": 0.7}  # the same message, scored again after a crash
    repeat = first | {"kafka_offset": 3}  # the same payment in another message
    reused = first | {"kafka_offset": 2, "card_id": "card-2", "amount_minor": 99}
    sink.write_batch([replay, repeat, reused, _row("t-2", 0.2) | {"kafka_offset": 4}])
    with engine.connect() as c:
        stored = c.execute(select(scored_payments.c.transaction_id)).scalars().all()
        letters = c.execute(select(dead_letters)).all()
    assert sorted(stored) == ["t-1", "t-2"]
    assert [(d.kafka_partition, d.kafka_offset) for d in letters] == [(0, 2)]
    assert "transaction id 't-1' reused: stored for card 'card-1'" in letters[0].error


@pytest.mark.integration
def test_tables_of_an_older_schema_are_named_not_used(admin_engine: Engine) -> None:
    with admin_engine.begin() as c:
        c.execute(text("DROP TABLE model_versions"))
        c.execute(text("CREATE TABLE model_versions (version VARCHAR(64) PRIMARY KEY)"))
    with pytest.raises(SchemaMismatchError, match="model_versions lacks lineage, sequence"):
        create_schema(admin_engine, ACCOUNTS)


@pytest.mark.integration
@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE dead_letters",
        "ALTER TABLE scored_payments ADD COLUMN x INT",
        "CREATE TABLE x (y INT)",
        "CREATE DATABASE payscore_x",
        "GRANT SELECT ON *.* TO CURRENT_USER",
    ],
)
def test_the_flow_s_account_reads_and_writes_rows_and_nothing_else(
    engine: Engine, statement: str
) -> None:
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 0
        with pytest.raises(Exception, match=r"denied|1142|1044|1045|1227|1410"):
            c.execute(text(statement))


@pytest.mark.integration
def test_a_running_install_gains_the_columns_and_indexes_a_newer_payscore_added(
    admin_engine: Engine, engine: Engine
) -> None:
    """appended_at and stored_at came with issue 13: an older scored_payments gets them, and the
    sink fills stored_at for new rows."""
    with admin_engine.begin() as c:
        c.execute(
            text("ALTER TABLE scored_payments DROP COLUMN appended_at, DROP COLUMN stored_at")
        )
        c.execute(text("DROP INDEX ix_scored_payments_event_time ON scored_payments"))
    create_schema(admin_engine, ACCOUNTS)
    with admin_engine.connect() as c:
        columns = {r[0] for r in c.execute(text("SHOW COLUMNS FROM scored_payments"))}
        indexes = {r[2] for r in c.execute(text("SHOW INDEX FROM scored_payments"))}
    assert {"appended_at", "stored_at"} <= columns
    assert "ix_scored_payments_event_time" in indexes
    MySQLSinkPartition(engine, scored_payments).write_batch([_row("t-1", 0.1)])
    with engine.connect() as c:
        stored_at, now = c.execute(select(scored_payments.c.stored_at, func.utc_timestamp(6))).one()
    assert stored_at is not None and abs((now - stored_at).total_seconds()) < 60


@pytest.mark.integration
def test_schema_creates_run_at_once_all_succeed_and_make_each_table_once(
    admin_engine: Engine,
) -> None:
    """Two operators (or two hosts' deploy scripts) running ``python -m storage.schema
    --create`` on a new or older database at the same moment: before, one of them stopped with
    a traceback, ``(1050, "Table 'dead_letters' already exists")`` from its CREATE TABLE (or
    "Duplicate column" from an upgrade's ALTER), after the other had made it. Each now waits
    for the other (a MySQL named lock on the database) and then finds the work done."""
    with admin_engine.begin() as c:
        for table in reversed(metadata.sorted_tables):
            c.execute(text(f"DROP TABLE {table.name}"))
    url = admin_engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url) for _ in range(4)]
    ready = threading.Barrier(len(engines))
    failed: list[BaseException] = []

    def create(engine: Engine) -> None:
        ready.wait()
        try:
            create_schema(engine, ACCOUNTS)
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=create, args=(e,)) for e in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for e in engines:
            e.dispose()
    assert failed == [], [str(f)[:300] for f in failed]
    with admin_engine.connect() as c:
        assert {r[0] for r in c.execute(text("SHOW TABLES"))} == TABLES
