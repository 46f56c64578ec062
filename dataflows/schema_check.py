"""The tables the flow uses must have every column it uses, and its account every right it
uses, when the flow starts.

An upgraded flow writes columns the previous release's tables lack (``dead_letters``'
``message_headers``, for one), and reads tables an older release never made (the rules'
``ruleset_versions``, the challengers' ``model_candidates``). MySQL refuses such a row only
when the first one comes, which for a dead letter may be hours after a start, and a restart
replays up to the same row and fails again. So the flow compares, at start, the columns of the
tables it uses with the database's, and refuses to run until ``python -m storage.schema
--create`` has added the missing ones (README, *Review queue*, *Start*): every table
``storage/accounts.py`` gives the flow a right on; of a table it may read only some columns
of, those. Before, a table the flow only reads was not compared, and its absence stopped the
start with MySQL's bare traceback (``Table ... doesn't exist``) from the rights check; a
``model_versions`` without a column this release writes stopped the learner at its first
publish. A database it cannot reach now (down, read-only during a failover, a lock wait or
deadlock: :func:`storage.engine.is_transient`) is not refused here: the sinks ride out an
outage (:mod:`storage.engine`), and a supervised restart during one must not stop for good.

Rights: a right the flow's account lacks (grants never applied for it, or at another host than
it connects from) was found at the first statement that used it: for a dead letter, hours after
a start, and then retried as if MySQL were out for ``PAYSCORE_MYSQL_OUTAGE_SECONDS`` (once a
process was let in, a refusal may be grants being applied again, :mod:`storage.engine`) while
the flow stood still. So the start also runs, in a transaction it rolls back, one statement
for each right ``storage/accounts.py`` gives the flow on each table, touching no row
(:func:`storage.accounts.probes`), and refuses to run on the first one MySQL refuses.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, Table, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, NoSuchTableError

from features.bounded import bounded
from settings.config import Config
from storage.accounts import GRANTS, NONE, rights
from storage.engine import describe, error_code, is_transient, make_engine
from storage.refusals import missing_rights, refused
from storage.schema import missing_columns as lacking
from storage.tables import dead_letters, fraud_labels, implicit_labels, metadata, scored_payments

log = logging.getLogger(__name__)

WRITTEN: tuple[Table, ...] = (scored_payments, fraud_labels, implicit_labels, dead_letters)
# Every table the flow reads or writes: those it writes most, then the others in GRANTS' order.
USED: tuple[Table, ...] = WRITTEN + tuple(
    metadata.tables[name]
    for name, by_role in GRANTS.items()
    if by_role.get("flow", NONE) != NONE and metadata.tables[name] not in WRITTEN
)


class SchemaError(RuntimeError):
    """A table the flow writes lacks columns this release writes."""


class RightsError(RuntimeError):
    """The flow's account lacks a right the flow uses, or MySQL refuses it altogether."""


# MySQL refuses the account itself: a wrong password or user, no right on the database, or no
# such database. Said with the variable at start (it was SQLAlchemy's bare error).
REFUSED_LOGIN = {1044, 1045, 1046, 1049}  # 1046: a URL without a database


# What the flow's account must not be able to do (storage/accounts.py): statements that touch
# no row; one that MySQL runs says the account is not the flow's.
FORBIDDEN = (
    ("delete scored payments", "DELETE FROM `scored_payments` WHERE FALSE"),
    (
        "change recorded model versions",
        "UPDATE `model_versions` SET `origin` = `origin` WHERE FALSE",
    ),
)


def excess_rights(engine: Engine) -> list[str]:
    """Which of :data:`FORBIDDEN` ``engine``'s account may do (in a transaction rolled back)."""
    allowed = []
    with engine.connect() as connection:
        for what, statement in FORBIDDEN:
            if refused(connection, statement) is None:
                allowed.append(what)
        connection.rollback()
    return allowed


def missing_columns(engine: Engine, tables: tuple[Table, ...] = USED) -> list[str]:
    """``table.column`` for each column of ``tables`` the database does not have that the flow
    uses (every column, but of a table it may read only some columns of: those), and a missing
    table as ``table`` alone."""
    seen = inspect(engine)
    missing: list[str] = []
    for table in tables:
        some = rights(table.name, "flow").read_columns
        if some:  # column rights: MySQL shows the account those columns alone, no SHOW CREATE
            have = _visible_columns(engine, table.name)
            if not have:
                missing.append(table.name)
                continue
            gone = some - have
            missing += [f"{table.name}.{c.name}" for c in table.columns if c.name in gone]
            continue
        try:
            missing += [f"{table.name}.{c.name}" for c in lacking(seen, table)]
        except NoSuchTableError:
            missing.append(table.name)
    return missing


def narrow_charsets(engine: Engine, tables: tuple[Table, ...] = USED) -> list[str]:
    """``table.column (charset)`` for each text column of ``tables`` whose character set is not
    utf8mb4: tables made in a database whose default was latin1 (MariaDB's server default)
    before the tables named their own (``storage/tables.py``); MySQL refuses an accented letter
    or an emoji in them (error 1366), found only when the first one comes."""
    names = [t.name for t in tables]
    query = text(
        "SELECT table_name, column_name, character_set_name FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND character_set_name IS NOT NULL"
        " AND character_set_name <> 'utf8mb4'"
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return sorted(f"{t}.{c} ({cs})" for t, c, cs in rows if t in names)


def _visible_columns(engine: Engine, table: str) -> set[str]:
    """The columns of ``table`` in the engine's database that its account has a right on."""
    query = text(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = :table"
    )
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(query, {"table": table})}


def require_schema(config: Config) -> None:
    """The flow's start: see the module."""
    engine = make_engine(config.mysql_dsn, pool_size=1)
    checking = "the tables' columns and the flow's rights"
    try:
        missing = missing_columns(engine)
        checking = "the flow's rights"
        narrow = narrow_charsets(engine) if not missing else []
        denied = missing_rights(engine) if not missing else []
        excess = excess_rights(engine) if not missing and not denied else []
    except DBAPIError as exc:
        code = error_code(exc)
        if code in REFUSED_LOGIN:
            url = engine.url.render_as_string(hide_password=True)
            raise RightsError(
                f"MySQL refused the flow's account at start ({url}, PAYSCORE_MYSQL_URL): "
                f"{bounded(str(exc.orig), 300)}; expected the flow's account and password "
                "(PAYSCORE_MYSQL_PASSWORD_FILE) on the database `python -m storage.schema "
                "--create` made and granted (PAYSCORE_MYSQL_ACCOUNT_HOSTS naming the host the "
                "flow connects from)"
            ) from None
        # MySQL out, read-only (a failover), or a lock wait or deadlock: what the sinks ride
        # out (storage/engine.py TRANSIENT); a restart during it must not stop for good.
        if not is_transient(exc):
            url = engine.url.render_as_string(hide_password=True)
            raise SchemaError(
                f"MySQL refused {checking} at start ({url}, PAYSCORE_MYSQL_URL): "
                f"{bounded(str(exc.orig), 300)}; expected the current schema: run `python -m "
                "storage.schema --create` (as the admin account), then start the flow again"
            ) from None
        log.warning(
            "%s not checked at start: MySQL could not answer now (%s); the sinks wait for it",
            checking,
            describe(exc),
        )
        return
    finally:
        engine.dispose()
    if missing:
        raise SchemaError(
            f"the database of PAYSCORE_MYSQL_URL lacks {len(missing)} of the tables and columns "
            f"this release reads and writes ({', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}); "
            "expected the current schema: run `python -m storage.schema --create` (as the admin "
            "account, README *Review queue*, *Start*), then start the flow again"
        )
    if narrow:
        raise SchemaError(
            f"the database of PAYSCORE_MYSQL_URL has {len(narrow)} text columns the flow "
            f"writes or reads in another character set than utf8mb4 ({', '.join(narrow[:5])}"
            f"{', ...' if len(narrow) > 5 else ''}): tables made in a database whose default "
            "was latin1; MySQL would refuse an accented letter or an emoji in them. Expected "
            "utf8mb4: as the admin account, ALTER TABLE <table> MODIFY <column> ... CHARACTER "
            "SET utf8mb4 COLLATE utf8mb4_unicode_ci for each (test_data/schema.sql has their "
            "types), or move the data to a database made with CHARACTER SET utf8mb4"
        )
    if denied:
        raise RightsError(
            f"the account of PAYSCORE_MYSQL_URL lacks rights the flow uses on {len(denied)} "
            f"tables ({'; '.join(denied[:3])}{'; ...' if len(denied) > 3 else ''}); expected "
            "the rights storage/accounts.py gives the flow: run `python -m storage.schema "
            "--create` as the admin account (with PAYSCORE_MYSQL_ACCOUNT_HOSTS naming the host "
            "the flow connects from), then start the flow again"
        )
    if excess:
        user = make_url(config.mysql_dsn).username
        raise RightsError(
            f"the account of PAYSCORE_MYSQL_URL ({user}) may {' and '.join(excess)}, which the "
            "flow's account may not (it deletes nothing and never changes a recorded version): "
            "it is another job's account (the admin's, root). Expected the flow's own account "
            "(payscore_flow as ops/services.sh makes it), with the rights storage/accounts.py "
            "gives it"
        )
