"""An existing database gets what later code added: missing indexes and nullable columns."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text

from storage.schema import create_schema

pytestmark = pytest.mark.integration


def test_an_older_database_gets_the_review_indexes_and_the_analyst_column(
    admin_engine: Engine,
) -> None:
    with admin_engine.begin() as c:
        c.execute(text("DROP INDEX ix_scored_payments_queue ON scored_payments"))
        c.execute(text("DROP INDEX ix_scored_payments_merchant_queue ON scored_payments"))
        c.execute(text("ALTER TABLE fraud_labels DROP COLUMN analyst"))
        c.execute(text("ALTER TABLE scored_payments DROP COLUMN country, DROP COLUMN device_id"))
        c.execute(text("DROP TABLE ruleset_audit, fraud_rules"))
    before = {i["name"] for i in inspect(admin_engine).get_indexes("scored_payments")}
    assert "ix_scored_payments_queue" not in before

    create_schema(admin_engine)
    create_schema(admin_engine)  # a second run changes nothing and does not fail

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
    assert {"fraud_rules", "ruleset_audit"} <= set(inspector.get_table_names())
