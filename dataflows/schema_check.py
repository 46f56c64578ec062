"""The tables the flow writes must have every column it writes, when the flow starts.

An upgraded flow writes columns the previous release's tables lack (``dead_letters``'
``message_headers``, for one). MySQL refuses such a row only when the first one comes, which for
a dead letter may be hours after a start, and a restart replays up to the same row and fails
again. So the flow compares, at start, the columns of the tables it writes with the database's
and refuses to run until ``python -m storage.schema --create`` has added the missing ones
(README, *Review queue*, *Start*). A database it cannot reach is not refused here: the sinks
ride out an outage (:mod:`storage.engine`), and a supervised restart during one must not stop
for good.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, Table, inspect
from sqlalchemy.exc import DBAPIError, NoSuchTableError

from settings.config import Config
from storage.engine import UNAVAILABLE, error_code, make_engine
from storage.schema import missing_columns as lacking
from storage.tables import dead_letters, fraud_labels, implicit_labels, scored_payments

log = logging.getLogger(__name__)

WRITTEN: tuple[Table, ...] = (scored_payments, fraud_labels, implicit_labels, dead_letters)


class SchemaError(RuntimeError):
    """A table the flow writes lacks columns this release writes."""


def missing_columns(engine: Engine, tables: tuple[Table, ...] = WRITTEN) -> list[str]:
    """``table.column`` for each column of ``tables`` the database does not have (a missing
    table: ``table`` alone)."""
    seen = inspect(engine)
    missing: list[str] = []
    for table in tables:
        try:
            missing += [f"{table.name}.{c.name}" for c in lacking(seen, table)]
        except NoSuchTableError:
            missing.append(table.name)
    return missing


def require_schema(config: Config) -> None:
    """The flow's start: see the module."""
    engine = make_engine(config.mysql_dsn, pool_size=1)
    try:
        missing = missing_columns(engine)
    except DBAPIError as exc:
        if error_code(exc) not in UNAVAILABLE and not exc.connection_invalidated:
            raise
        log.warning("the tables' columns were not checked at start: MySQL is unavailable")
        return
    finally:
        engine.dispose()
    if missing:
        raise SchemaError(
            f"the database of PAYSCORE_MYSQL_URL lacks {len(missing)} of the columns this "
            f"release writes ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); "
            "expected the current schema: run `python -m storage.schema --create` (as the admin "
            "account, README *Review queue*, *Start*), then start the flow again"
        )
