"""Renders the tables of :mod:`storage.tables` as MySQL DDL and creates them in a database.

``python -m storage.schema``          print the DDL (what ``test_data/schema.sql`` holds)
``python -m storage.schema --write``  rewrite ``test_data/schema.sql``
``python -m storage.schema --create`` create missing tables, indexes and (empty) columns, and
                                      give every job account its rights on them
                                      (:mod:`storage.accounts`), as ``PAYSCORE_MYSQL_ADMIN_URL``;
                                      then re-check the analysts of stored labels
                                      (:func:`storage.labels.recheck_analysts`)
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import Column, Engine, Table, inspect, text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from features.bounded import bounded
from settings.arguments import Parser
from storage.accounts import Accounts, apply_grants, check_complete
from storage.engine import named_lock
from storage.refusals import REFUSED, refusing
from storage.tables import metadata

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "test_data" / "schema.sql"
# How ops/services.sh creates the database (and the tests theirs): the default collation of its
# text columns is a case-insensitive one; ids carry their own binary collation (storage.tables).
DATABASE_OPTIONS = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"

HEADER = """\
-- payscore MySQL schema (MySQL 8 / MariaDB 10.11), rendered from storage/tables.py.
-- Do not edit: run `python -m storage.schema --write` after changing the tables.
"""


def render_ddl() -> str:
    """The ``CREATE TABLE`` statements of every table, in dependency order."""
    dialect = mysql.dialect()
    statements = []
    for table in metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=dialect)).strip()
        statements.append(ddl + ";\n")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";\n")
    return HEADER + "\n" + "\n".join(statements)


def missing_columns(inspector: Inspector, table: Table) -> list[Column]:
    """The columns of ``table`` the database ``inspector`` reads lacks, in the table's order
    (raises :class:`sqlalchemy.exc.NoSuchTableError` when it lacks the table): what
    :func:`create_schema` adds, and what the flow's start refuses (``dataflows/schema_check.py``).
    """
    have = {c["name"] for c in inspector.get_columns(table.name)}
    return [c for c in table.columns if c.name not in have]


class SchemaMismatchError(RuntimeError):
    """The database holds tables of an older (or other) payscore schema."""


def create_schema(engine: Engine, accounts: Accounts) -> list[str]:
    """Create every table and index that does not exist yet, and add the columns a newer payscore
    added to an existing table when they may be empty (nullable or with a default): a running
    install upgrades in place. (A column with a default, ``scored_payments.stored_at``, gets it
    in the rows stored before: the time of the upgrade; those rows have no ``appended_at``, so
    no latency is read from them.) Never alters or drops anything else; a missing column that must
    be filled is an error that says what to do. Then gives each of ``accounts`` exactly its
    rights on the tables (:func:`storage.accounts.apply_grants`; ``engine`` is the admin's):
    the grant statements it ran."""
    check_complete()
    if not engine.url.database:  # checked after create_all, it came as SQLAlchemy's assertion
        raise ValueError(
            f"{engine.url.render_as_string(hide_password=True)[:300]} names no database; "
            "expected PAYSCORE_MYSQL_ADMIN_URL to end with one (.../payscore)"
        )
    with schema_lock(engine):
        return _create_schema(engine, accounts)


SCHEMA_LOCK_SECONDS = 600  # how long a create waits for another one on the same database


def schema_lock(engine: Engine, seconds: int = SCHEMA_LOCK_SECONDS) -> AbstractContextManager[None]:
    """Hold a MySQL named lock of ``engine``'s database while creating or upgrading its tables:
    two ``--create`` at once (two operators, two hosts' deploy scripts) each ran CREATE TABLE
    after the other's check and one stopped with ``(1050, "Table ... already exists")`` (an
    upgrade's ALTER with "Duplicate column"). The second now waits, then finds the work done."""
    return named_lock(engine, "schema", seconds, "another python -m storage.schema --create")


def _create_schema(engine: Engine, accounts: Accounts) -> list[str]:
    metadata.create_all(engine, checkfirst=True)
    dialect = mysql.dialect()
    inspector = inspect(engine)
    problems, upgrades = [], []
    for table in metadata.sorted_tables:
        missing = missing_columns(inspector, table)
        required = [c.name for c in missing if not c.nullable and c.server_default is None]
        if required:
            problems.append(f"{table.name} lacks {', '.join(required)}")
        for column in missing:
            ddl = str(CreateColumn(column).compile(dialect=dialect)).strip()
            upgrades.append(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        upgrades += [
            str(CreateIndex(index).compile(dialect=dialect))
            for index in table.indexes
            if index.name not in indexes
        ]
    if not problems:
        with engine.begin() as connection:
            for statement in upgrades:
                connection.execute(text(statement))
    if problems:
        raise SchemaMismatchError(
            f"the database {engine.url.database} was created by an older payscore: "
            + "; ".join(problems)
            + ". Point PAYSCORE_MYSQL_URL at a new database, or migrate this one to "
            "test_data/schema.sql (python -m storage.schema prints it)"
        )
    with engine.begin() as connection:
        return apply_grants(connection, str(engine.url.database), accounts)


@refusing("python -m storage.schema", "admin")
def main() -> None:
    parser = Parser(prog="python -m storage.schema", description=__doc__)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"rewrite {SCHEMA_FILE.name}")
    action.add_argument("--create", action="store_true", help="create tables in the database")
    args = parser.parse_args()
    if args.write:
        SCHEMA_FILE.write_text(render_ddl())
        print(f"wrote {SCHEMA_FILE}")
    elif args.create:
        from settings.config import Config
        from storage.engine import make_engine
        from storage.labels import recheck_analysts

        config = Config.from_env(os.environ)
        engine = make_engine(config.mysql_admin_dsn)
        try:
            granted = create_schema(engine, Accounts.of(config))
        except (SchemaMismatchError, ValueError) as exc:  # tracebacks before
            print(f"python -m storage.schema: refused: {bounded(str(exc))}", file=sys.stderr)
            raise SystemExit(REFUSED) from None
        with engine.begin() as connection:
            moved = recheck_analysts(connection)
        print(
            f"tables ready in {engine.url.render_as_string(hide_password=True)}; "
            f"{len(granted)} grant statements to match storage/accounts.py"
        )
        if moved:
            print(f"{moved} labels named an analyst no recorded verdict confirms: now unverified")
    else:
        print(render_ddl(), end="")


if __name__ == "__main__":
    main()
