"""An existing database gets what later code added: missing tables, indexes and nullable
columns, and the analysts of its stored labels checked."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import pytest
from sqlalchemy import Engine, insert, inspect, text
from sqlalchemy.engine import make_url

from settings.config import Config
from storage.accounts import Accounts
from storage.feature_vector import pack
from storage.schema import create_schema
from storage.tables import review_verdicts
from tests.conftest import BASE

pytestmark = pytest.mark.integration


def test_an_older_database_gets_the_review_indexes_and_the_analyst_column(
    admin_engine: Engine, engine: Engine
) -> None:
    with admin_engine.begin() as c:
        c.execute(text("DROP INDEX ix_scored_payments_queue ON scored_payments"))
        c.execute(text("DROP INDEX ix_scored_payments_merchant_queue ON scored_payments"))
        c.execute(text("ALTER TABLE fraud_labels DROP COLUMN analyst"))
        c.execute(
            text(
                "ALTER TABLE scored_payments DROP COLUMN country, DROP COLUMN device_id, "
                "DROP COLUMN feature_vector"
            )
        )
        c.execute(text("DROP TABLE ruleset_audit, fraud_rules"))
    before = {i["name"] for i in inspect(admin_engine).get_indexes("scored_payments")}
    assert "ix_scored_payments_queue" not in before

    create_schema(admin_engine, Accounts.of(BASE))
    create_schema(admin_engine, Accounts.of(BASE))  # a second run changes nothing and does not fail

    inspector = inspect(admin_engine)
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("scored_payments")}
    assert indexes["ix_scored_payments_queue"] == [
        "decision",
        "fraud_probability",
        "transaction_id",
    ]
    assert "ix_scored_payments_merchant_queue" in indexes
    analyst = {c["name"]: c for c in inspector.get_columns("fraud_labels")}["analyst"]
    assert analyst["nullable"] is True
    payments = {c["name"]: c for c in inspector.get_columns("scored_payments")}
    assert payments["country"]["nullable"] is True
    assert payments["device_id"]["nullable"] is True
    assert payments["feature_vector"]["nullable"] is True
    # the flow's account writes the packed features of new rows, and may replace them (the
    # column rights of storage/accounts.py, given again after the column came)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO scored_payments (transaction_id, card_id, merchant_id, terminal_id, "
                "amount_minor, currency, event_time, utc_offset_minutes, fraud_probability, "
                "decision, reason_codes, model_version, features, kafka_partition, kafka_offset, "
                "scored_at, feature_vector) VALUES ('t-1', 'c', 'm', 't', 1, 'EUR', NOW(), 0, 0.1, "
                "'approve', '[]', 'v00001', '{}', 0, 0, NOW(), :v)"
            ),
            {"v": pack({})},
        )
        moved = pack({"amount_eur": 1.0})
        c.execute(text("UPDATE scored_payments SET feature_vector = :v"), {"v": moved})
        assert c.execute(text("SELECT feature_vector FROM scored_payments")).scalar() == moved
    assert {"fraud_rules", "ruleset_audit"} <= set(inspector.get_table_names())


def test_the_create_command_adds_the_sign_in_tables_and_rechecks_stored_analysts(
    admin_engine: Engine, mysql_url: str
) -> None:
    """An install from before issue 20: no session, limit or audit tables, no
    ``fraud_labels.unverified_analyst``, and labels whose analyst nobody checked. ``python -m
    storage.schema --create`` (the admin's command) adds what is missing and moves every analyst
    that no recorded verdict confirms to ``unverified_analyst``."""
    decided = datetime(2026, 3, 9, 10, 0, 0, 123456)
    with admin_engine.begin() as c:
        for table in ("review_sessions", "review_login_limits", "review_login_audit"):
            c.execute(text(f"DROP TABLE {table}"))
        c.execute(text("ALTER TABLE fraud_labels DROP COLUMN unverified_analyst"))
        c.execute(
            insert(review_verdicts).values(
                transaction_id="tx-1", card_id="card-1", analyst="alice", is_fraud=True,
                decided_at=decided, model_version="v00001", model_decision="review",
                model_probability=0.7, labels_topic="labels",
            )
        )  # fmt: skip
        for offset, (txn, fraud, at) in enumerate(
            [("tx-1", True, decided), ("tx-2", True, decided), ("tx-1", False, decided)]
        ):
            c.execute(
                text(
                    "INSERT INTO fraud_labels (topic, kafka_partition, kafka_offset, "
                    "transaction_id, card_id, is_fraud, reported_at, status, first_seen_at, "
                    "analyst) VALUES ('labels', 0, :o, :t, 'card-1', :f, :at, 'claimed', :at, "
                    "'alice')"
                ),
                {"o": offset, "t": txn, "f": fraud, "at": at},
            )
    admin_url = (
        make_url(Config.from_env({}).mysql_admin_url)
        .set(database=make_url(mysql_url).database)
        .render_as_string(hide_password=False)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    for run in range(2):  # a second run changes nothing
        done = subprocess.run(
            [sys.executable, "-m", "storage.schema", "--create"],
            env=env | {"PAYSCORE_MYSQL_ADMIN_URL": admin_url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        moved = "2 labels named an analyst no recorded verdict confirms: now unverified"
        assert (moved in done.stdout) == (run == 0), done.stdout

    inspector = inspect(admin_engine)
    assert {"review_sessions", "review_login_limits", "review_login_audit"} <= set(
        inspector.get_table_names()
    )
    with admin_engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT transaction_id, is_fraud, analyst, unverified_analyst FROM fraud_labels "
                "ORDER BY kafka_offset"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("tx-1", 1, "alice", None),
        ("tx-2", 1, None, "alice"),
        ("tx-1", 0, None, "alice"),
    ]


def test_the_create_command_refuses_an_old_schema_or_no_database_in_one_line(
    admin_engine: Engine, mysql_url: str
) -> None:
    """A table lacking a column that must be filled, and an admin URL naming no database: a
    traceback each before (SchemaMismatchError; SQLAlchemy's ``assert schema is not None``,
    the check for it coming after the tables were made), now one line and status 2."""
    with admin_engine.begin() as c:
        c.execute(text("ALTER TABLE model_actions DROP COLUMN decided_by"))
    admin = make_url(Config.from_env({}).mysql_admin_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    for database, said in [
        (make_url(mysql_url).database, "was created by an older payscore: model_actions lacks "),
        ("", "names no database; expected PAYSCORE_MYSQL_ADMIN_URL to end with one"),
    ]:
        # (URL.set(database=None) keeps the database: the URL's text, cut after the port)
        server = admin.render_as_string(hide_password=False).rsplit("/", 1)[0]
        url = f"{server}/{database}"
        done = subprocess.run(
            [sys.executable, "-m", "storage.schema", "--create"],
            env=env | {"PAYSCORE_MYSQL_ADMIN_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("python -m storage.schema: refused: ") and said in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
