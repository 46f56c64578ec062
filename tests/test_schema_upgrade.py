"""An existing database gets what later code added: missing indexes and nullable columns."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text

from storage.accounts import Accounts
from storage.schema import create_schema
from tests.conftest import BASE

pytestmark = pytest.mark.integration


def test_an_older_database_gets_the_review_indexes_and_the_analyst_column(
    admin_engine: Engine,
) -> None:
    with admin_engine.begin() as c:
        c.execute(text("DROP INDEX ix_scored_payments_queue ON scored_payments"))
        c.execute(text("DROP INDEX ix_scored_payments_merchant_queue ON scored_payments"))
        c.execute(text("ALTER TABLE fraud_labels DROP COLUMN analyst"))
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
