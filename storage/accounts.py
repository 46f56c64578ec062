"""Who may do what in MySQL: every payscore account's rights, per table, stated once.

Each job connects as its own account, with the least rights it needs:

- ``flow`` (``PAYSCORE_MYSQL_URL``): the scoring flow. Stores payments (and replaces one stored
  from a later message of its transaction id), dead letters and label outcomes, records the
  learner's versions; reads the challenger, the operators' decisions, the review queue's
  verdicts (to believe a label's analyst) and the newest ruleset version with its lists.
- ``review`` (``PAYSCORE_REVIEW_MYSQL_URL``): the review queue (``python -m review``). Reads
  payments, labels, versions and users; records verdicts, sessions and sign-ins; changes the
  rules and lists. No command line an analyst runs holds it.
- ``analyst`` (``PAYSCORE_ANALYST_MYSQL_URL``): the analysts' command lines ``python -m
  rules``, ``python -m rules.backtest`` and ``python -m review.explain``. Changes the rules and
  lists (their audit insert-only), reads payments and model versions; no right on the review
  queue's users, sessions, sign-in limits and records, or verdicts (an analyst at a shell must
  not revive a session, lift a lockout, read password hashes or give a verdict in another's
  name: review of issue 20, item 3).
- ``models`` (``PAYSCORE_MODELS_MYSQL_URL``): the operators' model tools (``python -m
  model_state.retrain``, ``.shadow``, ``.train --from-mysql``). Reads what the flow stored;
  records versions, candidates and the operators' actions.
- ``admin`` (``PAYSCORE_MYSQL_ADMIN_URL``): creates and alters tables, manages review users
  (``python -m review.users``) and grants the other accounts their rights
  (``python -m storage.schema --create``). It holds every right on the payscore databases
  ``WITH GRANT OPTION``, and may read ``mysql.tables_priv`` and ``mysql.columns_priv`` (what it
  granted); :func:`root_sql` states it, ``ops/services.sh`` applies it as root. No job uses it.

**Audit rows are insert-only** for every account but admin: ``review_verdicts`` (who decided
what, when, and what it overrode), ``model_actions`` (shadows and promotions),
``model_versions`` (every version that scored), ``review_login_audit`` (sign-ins),
``ruleset_versions`` and ``ruleset_audit`` (every ruleset, who changed what) may be read and
added to, never changed or deleted. The one exception is the outcome of a verdict's label
message, which the review queue learns only after the broker answers: it may set
``kafka_partition``, ``kafka_offset`` and ``delivery_error`` of a verdict (column rights), and
nothing else of it.

The learner's version sink has no account of its own: it runs in the flow's processes, with
the flow's secrets, and records a version in one transaction with the labels it learned.

``GRANTS`` is the one statement of the rights: table -> account -> :class:`Rights`. A table of
:mod:`storage.tables` without a line here stops ``storage.schema --create`` (and fails
``tests/test_accounts_integration.py``): a new table gets its line, one for each account that
uses it. MySQL and MariaDB refuse table rights on a table that does not exist, so the schema
command applies them, as admin, right after it creates the tables (:func:`apply_grants`); the
accounts themselves are made by root (``ops/services.sh``). Only statements MySQL 8 and
MariaDB both accept are used (``GRANT UPDATE (a, b) ON db.t TO 'user'@'host'``, the same with
``SELECT``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Connection, Table
from sqlalchemy.engine import make_url

from features.bounded import bounded
from settings.arguments import Parser
from settings.config import Config
from storage.tables import metadata, scored_payments

Role = Literal["flow", "review", "models", "analyst"]
ROLES: tuple[Role, ...] = ("flow", "review", "models", "analyst")
# The tests' and benchmarks' scratch databases (payscore_test_..., payscore_bench_...): the
# admin account creates them and grants in them as in the product's.
SCRATCH_DATABASES = "payscore\\_%"
ROW_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class Rights:
    """What one account may do to one table: read its rows (every column, ``select``, or only
    the ``read`` columns: column rights), add rows, delete rows, and change the ``update``
    columns of a row (column rights), or every column (``update_all``)."""

    select: bool = False
    insert: bool = False
    delete: bool = False
    update: tuple[str, ...] = ()
    update_all: bool = False
    read: tuple[str, ...] = ()

    @property
    def table_privileges(self) -> frozenset[str]:
        chosen = (
            ("SELECT", self.select),
            ("INSERT", self.insert),
            ("UPDATE", self.update_all),
            ("DELETE", self.delete),
        )
        return frozenset(name for name, on in chosen if on)

    @property
    def update_columns(self) -> frozenset[str]:
        """The columns granted one by one (none when every column may be changed)."""
        return frozenset() if self.update_all else frozenset(self.update)

    @property
    def read_columns(self) -> frozenset[str]:
        """The columns that may be read, granted one by one (none when every one may be)."""
        return frozenset() if self.select else frozenset(self.read)

    def columns(self, privilege: str) -> frozenset[str]:
        """The columns granted ``privilege`` (``SELECT`` or ``UPDATE``) one by one."""
        return {"SELECT": self.read_columns, "UPDATE": self.update_columns}[privilege]

    def may_update(self, column: str) -> bool:
        return self.update_all or column in self.update

    def may_read(self, column: str) -> bool:
        return self.select or column in self.read

    def __or__(self, other: Rights) -> Rights:
        every = self.update_all or other.update_all
        whole = self.select or other.select
        return Rights(
            whole,
            self.insert or other.insert,
            self.delete or other.delete,
            () if every else tuple(sorted(set(self.update) | set(other.update))),
            every,
            () if whole else tuple(sorted(set(self.read) | set(other.read))),
        )


# The privileges MySQL grants per column that a job account may hold.
COLUMN_PRIVILEGES = ("SELECT", "UPDATE")
NONE = Rights()
READ = Rights(select=True)
APPEND = Rights(select=True, insert=True)  # read and add rows: nothing stored is ever changed
# Read, add, and change any column: what an upsert needs (INSERT ... ON DUPLICATE KEY UPDATE
# needs the right to update every column it inserts, on MariaDB).
UPSERT = Rights(select=True, insert=True, update_all=True)


def updates(*columns: str) -> Rights:
    """Read, add rows, and change only these columns of a row."""
    return Rights(select=True, insert=True, update=columns)


def reads(*columns: str) -> Rights:
    """Read only these columns."""
    return Rights(read=columns)


# What the rules' writers (rules.store) do to the current rules: add, rewrite, delete (rollback).
RULE_WRITER = Rights(
    select=True,
    insert=True,
    delete=True,
    update=("text", "action", "priority", "status", "updated_by", "updated_at", "version"),
)
# A list entry's removal, recorded in it (an entry is never deleted).
ENTRY_REMOVAL = ("removed_in", "removed_by", "removed_at")

# Every column of a stored payment but its id: what replacing a payment changes.
PAYMENT_COLUMNS = tuple(c.name for c in scored_payments.columns if not c.primary_key)

GRANTS: dict[str, dict[Role, Rights]] = {
    # The flow adds payments first write wins (INSERT IGNORE) and marks a payment with its
    # label (label_is_fraud, label_reported_at). Widened for issue 20 item 5, the first message
    # in Kafka order keeps a transaction id: an unlabelled row stored from a later message is
    # replaced by the earlier one, in place (storage.payments.settle_reused_ids), so the flow
    # may change every column of a payment but its id. A delete and insert would need DELETE,
    # and a replacement kept elsewhere would leave the wrong payment where everything reads.
    # The flow deletes nothing and re-keys nothing.
    "scored_payments": {
        "flow": updates(*PAYMENT_COLUMNS),
        "review": READ,
        "models": READ,
        "analyst": READ,  # the backtest's payments, the explain command's features
    },
    "dead_letters": {"flow": APPEND, "models": READ},
    # Every label's outcome: the label join upserts it.
    "fraud_labels": {"flow": UPSERT, "review": READ, "models": READ},
    # Implicit negatives (storage.implicit): the flow adds each once and marks it learned.
    "implicit_labels": {"flow": updates("learned_version"), "review": READ, "models": READ},
    "model_versions": {"flow": APPEND, "review": READ, "models": APPEND, "analyst": READ},
    "model_candidates": {"flow": READ, "models": APPEND},
    "model_actions": {"flow": READ, "review": READ, "models": APPEND},
    "review_users": {"review": READ},
    # The outcome of a verdict's label message comes after the broker answers. The flow reads
    # what a label of a verdict says, to believe a label's analyst only when a verdict matches
    # it (storage.labels), and nothing else of it (not the analyst's note).
    "review_verdicts": {
        "review": updates("kafka_partition", "kafka_offset", "delivery_error"),
        "flow": reads("transaction_id", "card_id", "analyst", "is_fraud", "decided_at"),
    },
    # Review sessions (review.sessions): ended on sign-out, refused when idle or old.
    "review_sessions": {"review": updates("last_seen_at", "ended_at", "end_reason")},
    # Sign-in limits per name, address and browser (review.throttle); admin unlocks.
    "review_login_limits": {"review": updates("failures", "last_failure_at", "locked_until")},
    # Every sign-in, failure, lockout and unlock: insert-only (an audit trail).
    "review_login_audit": {"review": APPEND},
    # Rules and lists (rules/, issue 21). Analysts change them through rules.store, in the
    # review queue (the review account) and with python -m rules (the analyst account: the same
    # rights on these tables, and none on the review queue's own); python -m rules.backtest
    # reads them as the analyst account too. Every change adds a whole ruleset version and an
    # audit row, so the current rules may be rewritten and a rollback deletes the rules added
    # since (fraud_rules: the one table a job account may delete from; its history is in
    # ruleset_versions and ruleset_audit, which no job account changes). A list entry is never
    # deleted: its removal is recorded in it. The flow's loader (rules.loader) reads the newest
    # version and the packed lists it names, nothing else.
    "fraud_rules": {"review": RULE_WRITER, "analyst": RULE_WRITER},
    "rule_lists": {"review": APPEND, "analyst": APPEND},
    "rule_list_entries": {
        "review": updates(*ENTRY_REMOVAL),
        "analyst": updates(*ENTRY_REMOVAL),
    },
    "rule_list_blobs": {"review": APPEND, "analyst": APPEND, "flow": READ},
    "ruleset_versions": {"review": APPEND, "analyst": APPEND, "flow": READ},
    # Who changed which rule or list, when, and the diff: insert-only (an audit trail).
    "ruleset_audit": {"review": APPEND, "analyst": APPEND},
}


class GrantsError(RuntimeError):
    """The rights could not be stated or applied as ``GRANTS`` says."""


def probes(table: Table, want: Rights) -> list[tuple[str, str]]:
    """Statements that use every right of ``want`` on ``table`` and touch no row (``WHERE
    FALSE``), each with what it needs: MySQL checks an account's rights on the tables and
    columns a statement names before it runs it, so a right the account lacks fails here, at
    once, and the others change nothing. On MariaDB and MySQL 8 alike.

    >>> implicit = metadata.tables["implicit_labels"]
    >>> [need for need, _ in probes(implicit, rights("implicit_labels", "flow"))]
    ['SELECT', 'INSERT', 'UPDATE (learned_version)']
    """
    names = [c.name for c in table.columns]
    name = f"`{table.name}`"  # quoted: a column may be a reserved word (ruleset_versions.change)
    read = names if want.select else [n for n in names if n in want.read]
    out = []
    if read:
        out.append(("SELECT", f"SELECT {_quoted(read)} FROM {name} WHERE FALSE"))
    if want.insert:
        columns = _quoted(names)
        out.append(
            ("INSERT", f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {name} WHERE FALSE")
        )
    changed = names if want.update_all else [n for n in names if n in want.update]
    if changed:
        what = "UPDATE" if want.update_all else f"UPDATE ({', '.join(changed)})"
        sets = ", ".join(f"`{n}` = `{n}`" for n in changed)
        out.append((what, f"UPDATE {name} SET {sets} WHERE FALSE"))
    if want.delete:
        out.append(("DELETE", f"DELETE FROM {name} WHERE FALSE"))
    return out


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def rights(table: str, role: Role) -> Rights:
    """What ``role`` may do to ``table`` (nothing unless ``GRANTS`` says so)."""
    return GRANTS[table].get(role, NONE)


def check_complete(tables: Iterable[str] | None = None) -> None:
    """Every table has its line in ``GRANTS``, every line a table, every column named exists."""
    names = set(metadata.tables) if tables is None else set(tables)
    missing = sorted(names - set(GRANTS))
    unknown = sorted(set(GRANTS) - set(metadata.tables))
    problems = []
    if missing:
        problems.append(
            f"no rights stated for {', '.join(missing)}: add a line to GRANTS in "
            "storage/accounts.py (an empty dict: only the admin account uses it)"
        )
    if unknown:
        problems.append(f"GRANTS names tables storage/tables.py does not have: {unknown}")
    for table, by_role in GRANTS.items():
        if table not in metadata.tables:
            continue
        columns = set(metadata.tables[table].columns.keys())
        for role, granted in by_role.items():
            if role not in ROLES:
                problems.append(f"GRANTS[{table!r}] names the unknown account {role!r}")
            wrong = sorted(set(granted.update) - columns)
            if wrong:
                problems.append(f"GRANTS[{table!r}][{role!r}] updates unknown columns {wrong}")
            wrong = sorted(set(granted.read) - columns)
            if wrong:
                problems.append(f"GRANTS[{table!r}][{role!r}] reads unknown columns {wrong}")
    if problems:
        raise GrantsError("; ".join(problems))


# ----------------------------------------------------------------------------- accounts

_USER = re.compile(r"\A[A-Za-z0-9_.\-]{1,80}\Z")
_HOST = re.compile(r"\A[A-Za-z0-9_.%:/\-]{1,255}\Z")
_DATABASE = re.compile(r"\A[A-Za-z0-9_$\\%]{1,64}\Z")


@dataclass(frozen=True, order=True)
class Account:
    user: str
    host: str

    def __post_init__(self) -> None:
        if not _USER.match(self.user):
            raise GrantsError(
                f"MySQL user name {self.user!r}: expected 1-80 characters of A-Za-z0-9_.-"
            )
        if not _HOST.match(self.host):
            raise GrantsError(
                f"MySQL account host {self.host!r}: expected 1-255 characters of A-Za-z0-9_.%:/-"
            )

    def sql(self) -> str:
        return f"'{self.user}'@'{self.host}'"


@dataclass(frozen=True)
class Accounts:
    """The job accounts (role -> user name), the admin's user name, and the hosts they connect
    from (every user exists at every host)."""

    users: Mapping[Role, str]
    admin: str
    hosts: Sequence[str]

    @classmethod
    def of(cls, config: Config) -> Accounts:
        users: dict[Role, str] = {
            "flow": _user(config.mysql_url, "PAYSCORE_MYSQL_URL"),
            "review": _user(config.review_mysql_url, "PAYSCORE_REVIEW_MYSQL_URL"),
            "models": _user(config.models_mysql_url, "PAYSCORE_MODELS_MYSQL_URL"),
            "analyst": _user(config.analyst_mysql_url, "PAYSCORE_ANALYST_MYSQL_URL"),
        }
        admin = _user(config.mysql_admin_url, "PAYSCORE_MYSQL_ADMIN_URL")
        if not config.account_hosts:
            raise GrantsError("PAYSCORE_MYSQL_ACCOUNT_HOSTS names no host")
        accounts = cls(users, admin, tuple(config.account_hosts))
        for user in (*users.values(), admin):
            for host in accounts.hosts:
                Account(user, host)  # checks the names
        return accounts

    def wanted(self) -> dict[Account, dict[str, Rights]]:
        """Every job account -> table -> its rights (roles that share a user add up; the admin's
        user is left out: its rights are on the whole database)."""
        wanted: dict[Account, dict[str, Rights]] = {}
        for role, user in self.users.items():
            if user == self.admin:
                continue
            for host in self.hosts:
                tables = wanted.setdefault(Account(user, host), {})
                for table in GRANTS:
                    tables[table] = tables.get(table, NONE) | rights(table, role)
        return wanted

    @property
    def job_users(self) -> list[str]:
        return sorted({u for u in self.users.values() if u != self.admin})


def _user(url: str, variable: str) -> str:
    user = make_url(url).username
    if not user:
        raise GrantsError(f"{variable} names no user")
    return user


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Held:
    """Rights an account holds on one table now: table privileges (as MySQL names them:
    ``SELECT``, ``ALTER``, ``GRANT OPTION``, ...) and column privileges by column."""

    table: frozenset[str] = frozenset()
    columns: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def updatable(self) -> frozenset[str]:
        return self.granted("UPDATE")

    def readable(self) -> frozenset[str]:
        return self.granted("SELECT")

    def granted(self, privilege: str) -> frozenset[str]:
        """The columns granted ``privilege`` one by one."""
        return frozenset(c for c, privileges in self.columns.items() if privilege in privileges)


def plan(database: str, table: str, account: Account, held: Held, want: Rights) -> list[str]:
    """The statements that turn ``held`` into ``want``, additions first, so that an account in
    use never loses a right it keeps: rights no job is given (``ALTER``, the grant option, a
    column's ``INSERT``, ...) are revoked one by one, never with ``REVOKE ALL`` and a grant
    again. One change cannot be made without a moment between two statements: a whole-table
    ``SELECT`` or ``UPDATE`` narrowed to column rights, since MySQL's revoke of a table privilege
    takes it from every column too; the columns are granted again by the very next statement
    (a flow that meets that moment retries, ``storage/engine.py``)."""
    target = f"`{database}`.`{table}`"
    to = account.sql()
    statements = []
    foreign_table = held.table - set(ROW_PRIVILEGES)
    foreign_columns: dict[str, list[str]] = {}
    for column, privileges in sorted(held.columns.items()):
        for p in sorted(privileges - set(COLUMN_PRIVILEGES) - foreign_table):
            foreign_columns.setdefault(p, []).append(column)
    rows = held.table & set(ROW_PRIVILEGES)
    wanted_table = want.table_privileges
    add = sorted(wanted_table - rows)
    extra = sorted(rows - wanted_table)
    have = {p: held.granted(p) for p in COLUMN_PRIVILEGES}
    if add:
        statements.append(f"GRANT {', '.join(add)} ON {target} TO {to}")
    for p in COLUMN_PRIVILEGES:
        new_columns = sorted(want.columns(p) - have[p])
        if new_columns and p not in extra:
            statements.append(f"GRANT {p} ({', '.join(new_columns)}) ON {target} TO {to}")
    for p, columns in sorted(foreign_columns.items()):
        statements.append(f"REVOKE {p} ({', '.join(columns)}) ON {target} FROM {to}")
    if foreign_table - {"GRANT OPTION"}:
        names = ", ".join(
            _STATEMENT_NAMES.get(p, p) for p in sorted(foreign_table - {"GRANT OPTION"})
        )
        statements.append(f"REVOKE {names} ON {target} FROM {to}")
    if "GRANT OPTION" in foreign_table:
        statements.append(f"REVOKE GRANT OPTION ON {target} FROM {to}")
    if extra:
        statements.append(f"REVOKE {', '.join(extra)} ON {target} FROM {to}")
        for p in COLUMN_PRIVILEGES:
            if p in extra:
                have[p] = frozenset()
                if want.columns(p):
                    columns = ", ".join(sorted(want.columns(p)))
                    statements.append(f"GRANT {p} ({columns}) ON {target} TO {to}")
    for p in COLUMN_PRIVILEGES:
        gone = sorted(have[p] - want.columns(p))
        if gone:
            statements.append(f"REVOKE {p} ({', '.join(gone)}) ON {target} FROM {to}")
    return statements


# MariaDB's name in mysql.tables_priv of a privilege whose statement name differs.
_STATEMENT_NAMES = {"DELETE VERSIONING ROWS": "DELETE HISTORY"}


# ----------------------------------------------------------------------------- applying


def held_rights(
    connection: Connection, database: str, users: Sequence[str]
) -> dict[tuple[Account, str], Held]:
    """What ``users`` hold on the tables of ``database`` now, from ``mysql.tables_priv`` and
    ``mysql.columns_priv`` (the admin account may read both)."""
    if not users:
        return {}
    marks = ", ".join(["%s"] * len(users))
    tables: dict[tuple[Account, str], set[str]] = {}
    columns: dict[tuple[Account, str], dict[str, frozenset[str]]] = {}
    for user, host, table, table_priv in connection.exec_driver_sql(
        "SELECT User, Host, Table_name, Table_priv FROM mysql.tables_priv "
        f"WHERE Db = %s AND User IN ({marks})",
        (database, *users),
    ):
        tables[(Account(user, host), table)] = _privileges(table_priv)
    for user, host, table, column, column_priv in connection.exec_driver_sql(
        "SELECT User, Host, Table_name, Column_name, Column_priv FROM mysql.columns_priv "
        f"WHERE Db = %s AND User IN ({marks})",
        (database, *users),
    ):
        privileges = frozenset(_privileges(column_priv))
        if privileges:
            columns.setdefault((Account(user, host), table), {})[column.lower()] = privileges
    return {
        key: Held(frozenset(tables.get(key, set())), columns.get(key, {}))
        for key in set(tables) | set(columns)
    }


def _privileges(value: str | set[str] | None) -> set[str]:
    """MySQL's SET column (``'Select,Insert,Grant'``) as statement names."""
    if not value:
        return set()
    names = value.split(",") if isinstance(value, str) else list(value)
    return {"GRANT OPTION" if n.strip().upper() == "GRANT" else n.strip().upper() for n in names}


def apply_grants(connection: Connection, database: str, accounts: Accounts) -> list[str]:
    """Give every job account of ``accounts`` exactly its rights on the tables of ``database``
    (``GRANTS``), and take away any other table right they hold there (at any host); run as the
    admin account. Returns the statements run (none when all is as it should be). Checks the
    outcome."""
    return _converge(connection, database, accounts.wanted(), accounts.job_users)


def grant_as(connection: Connection, database: str, role: Role, account: Account) -> list[str]:
    """Give one more account exactly ``role``'s rights on ``database`` (another flow's account,
    with a name or a host of its own); run as the admin account."""
    wanted = {account: {table: rights(table, role) for table in GRANTS}}
    return _converge(connection, database, wanted, [account.user], only=account)


def _converge(
    connection: Connection,
    database: str,
    wanted: Mapping[Account, Mapping[str, Rights]],
    users: Sequence[str],
    only: Account | None = None,
) -> list[str]:
    check_complete()
    _check_database(database)

    def mine() -> dict[tuple[Account, str], Held]:
        found = held_rights(connection, database, users)
        return {k: v for k, v in found.items() if only is None or k[0] == only}

    held = mine()
    statements = []
    for (account, table), have in sorted(held.items()):
        if table not in GRANTS or account not in wanted:  # a table or host no job has now
            statements += plan(database, table, account, have, NONE)
    for account, tables in sorted(wanted.items()):
        for table, want in tables.items():
            statements += plan(database, table, account, held.get((account, table), Held()), want)
    for statement in statements:
        _execute(connection, statement)
    after = mine()
    wrong = [
        f"{account.sql()} on {table}: {_describe(after.get((account, table), Held()))}, "
        f"expected {_describe(_as_held(want))}"
        for account, tables in sorted(wanted.items())
        for table, want in tables.items()
        if _normal(after.get((account, table), Held())) != _normal(_as_held(want))
    ]
    wrong += [
        f"{account.sql()} on {table}: {_describe(have)}, expected nothing"
        for (account, table), have in sorted(after.items())
        if (table not in GRANTS or account not in wanted) and _normal(have) != _normal(Held())
    ]
    if wrong:
        raise GrantsError(
            f"rights in {database} differ from storage/accounts.py: " + "; ".join(wrong)
        )
    return statements


def revoke_all(connection: Connection, database: str, accounts: Accounts) -> None:
    """Take every table right of the job accounts on ``database`` away (before dropping it:
    MySQL keeps the rights of a dropped table, and would give them to a new one of its name)."""
    for (account, table), _ in sorted(
        held_rights(connection, database, accounts.job_users).items()
    ):
        _execute(
            connection, f"REVOKE ALL PRIVILEGES ON `{database}`.`{table}` FROM {account.sql()}"
        )


def _as_held(want: Rights) -> Held:
    """What MySQL shows an account holding ``want``."""
    columns: dict[str, set[str]] = {}
    for p in COLUMN_PRIVILEGES:
        for column in want.columns(p):
            columns.setdefault(column, set()).add(p)
    return Held(want.table_privileges, {c: frozenset(p) for c, p in columns.items()})


def _normal(held: Held) -> tuple[frozenset[str], frozenset[tuple[str, frozenset[str]]]]:
    return held.table, frozenset((c, p) for c, p in held.columns.items() if p)


def _describe(held: Held) -> str:
    parts = sorted(held.table)
    for p in COLUMN_PRIVILEGES:
        if held.granted(p):
            parts.append(f"{p} ({', '.join(sorted(held.granted(p)))})")
    return ", ".join(parts) or "nothing"


def _check_database(database: str) -> None:
    if not _DATABASE.match(database):
        raise GrantsError(f"database name {database!r}: expected 1-64 characters of A-Za-z0-9_$")


def _execute(connection: Connection, statement: str) -> None:
    """A statement without parameters (a ``%`` in a host must reach the server as it is)."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


# ----------------------------------------------------------------------------- root's part


def root_sql(accounts: Accounts, databases: Sequence[str], retired: Sequence[str] = ()) -> str:
    """What root runs (``ops/services.sh``), after creating the users: the admin account's
    rights on ``databases`` (names or ``LIKE`` patterns) with the grant option and its read of
    the grant tables; no global right for a job account (theirs are per table, granted by the
    schema command); and ``retired`` users, which no job uses any more, dropped."""
    for database in databases:
        _check_database(database)
    lines = []
    for host in accounts.hosts:
        admin = Account(accounts.admin, host).sql()
        for database in databases:
            lines.append(f"GRANT ALL PRIVILEGES ON `{database}`.* TO {admin} WITH GRANT OPTION;")
        lines.append(f"GRANT SELECT ON mysql.tables_priv TO {admin};")
        lines.append(f"GRANT SELECT ON mysql.columns_priv TO {admin};")
        for user in accounts.job_users:
            job = Account(user, host).sql()
            lines.append(f"REVOKE ALL PRIVILEGES ON *.* FROM {job};")
            lines.append(f"REVOKE GRANT OPTION ON *.* FROM {job};")
    keep = {accounts.admin, *accounts.job_users}
    for user in retired:
        if user in keep:
            continue
        for host in accounts.hosts:
            lines.append(f"DROP USER IF EXISTS {Account(user, host).sql()};")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = Parser(
        prog="python -m storage.accounts",
        description="Print the SQL root runs for payscore's accounts (after creating the users "
        "with CREATE USER): the admin's rights and grant option, no global right for the job "
        "accounts, retired users dropped. Account names and hosts come from the PAYSCORE_* "
        "settings; the table rights are granted by python -m storage.schema --create.",
    )
    parser.add_argument(
        "--database",
        action="append",
        help="a database (or LIKE pattern) the admin account owns; default: the admin URL's "
        # argparse formats help with %: the pattern's own % doubled (it stopped --help)
        f"and {SCRATCH_DATABASES.replace('%', '%%')} (the tests')",
    )
    parser.add_argument("--retire", action="append", default=[], help="a user to drop")
    parser.add_argument("--job-users", action="store_true", help="print the job users, one a line")
    args = parser.parse_args(argv)
    try:
        config = Config.from_env(os.environ)
    except ValueError as exc:  # a setting refused: was a traceback (storage.refusals imports us)
        print(f"python -m storage.accounts: refused: {bounded(str(exc), 400)}", file=sys.stderr)
        raise SystemExit(2) from None
    accounts = Accounts.of(config)
    if args.job_users:
        print("\n".join(accounts.job_users))
        return
    databases = args.database or [make_url(config.mysql_admin_url).database, SCRATCH_DATABASES]
    try:
        sql = root_sql(accounts, [d for d in databases if d], args.retire)
    except GrantsError as exc:  # a name that could break root's SQL: was a traceback
        print(f"python -m storage.accounts: refused: {bounded(str(exc), 400)}", file=sys.stderr)
        raise SystemExit(2) from None
    print(sql, end="")


if __name__ == "__main__":
    main()
