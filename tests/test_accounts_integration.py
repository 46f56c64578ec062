"""Every account's rights on the real server, as ``python -m storage.schema --create`` gives them
in the product (the tests' databases get them the same way): a matrix of every account, every
table and every statement (SELECT of all columns and of each, INSERT, UPDATE of each column,
DELETE, ALTER, DROP, GRANT, and CREATE), each run and checked against ``storage/accounts.py``:
what is allowed succeeds, what is not fails with MySQL's privilege error. Then the facts of
issue 20 by hand, with real rows, and the schema command bringing wrong rights back to the
stated ones."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import datetime

import pymysql
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from settings.config import Config
from storage.accounts import (
    GRANTS,
    ROLES,
    Account,
    Accounts,
    Rights,
    Role,
    apply_grants,
    grant_as,
    held_rights,
    rights,
)
from storage.engine import make_engine
from storage.tables import metadata

pytestmark = pytest.mark.integration

ADMIN = "admin"
ACCOUNTS = (*ROLES, ADMIN)
# MySQL's refusals: a table right (1142), a column right (1143), a database right (1044).
DENIED = {1142, 1143, 1044}


def root_sql(statement: str) -> None:
    """As ``ops/services.sh`` does: the server's root account over its local socket."""
    subprocess.run(
        ["mariadb", "--protocol=socket", "-uroot", "-e", statement], check=True, timeout=30
    )


@pytest.fixture
def connections(database_config: Config) -> Iterator[dict[str, pymysql.Connection]]:
    """One connection per account, as each job connects (autocommit: every statement alone)."""
    urls = {
        "flow": database_config.mysql_dsn,
        "review": database_config.review_mysql_dsn,
        "models": database_config.models_mysql_dsn,
        "analyst": database_config.analyst_mysql_dsn,
        ADMIN: database_config.mysql_admin_dsn,
    }
    opened = {}
    for account, url in urls.items():
        u = make_url(url)
        opened[account] = pymysql.connect(
            host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
            database=u.database, autocommit=True, charset="utf8mb4",
        )  # fmt: skip
    yield opened
    for c in opened.values():
        c.close()


@pytest.fixture
def stranger() -> Iterator[str]:
    """An account of nobody's, for the GRANT statements to name."""
    name = f"psg_{secrets.token_hex(4)}"
    root_sql(f"CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY '{secrets.token_hex(12)}'")
    yield f"'{name}'@'127.0.0.1'"
    root_sql(f"DROP USER IF EXISTS '{name}'@'127.0.0.1'")


def run(connection: pymysql.Connection, statement: str) -> int | None:
    """None when it ran; else MySQL's error code."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            cursor.fetchall()
    except pymysql.MySQLError as exc:
        return exc.args[0]
    return None


def allowed(account: str, table: str, statement: str, column: str | None = None) -> bool:
    if account == ADMIN:
        return True
    if statement in {"CREATE", "ALTER", "DROP", "GRANT"}:
        return False  # the admin's alone
    granted = rights(table, account)  # type: ignore[arg-type]
    return {
        "SELECT": granted.select if column is None else granted.may_read(column),
        "INSERT": granted.insert,
        "DELETE": granted.delete,
        "UPDATE": column is not None and granted.may_update(column),
    }[statement]


def test_every_account_may_do_on_every_table_what_storage_accounts_states_and_nothing_else(
    connections: dict[str, pymysql.Connection], database_config: Config, stranger: str
) -> None:
    database = make_url(database_config.mysql_url).database
    assert set(GRANTS) == set(metadata.tables), "a table has no rights stated (storage/accounts.py)"
    wrong: list[str] = []
    ran = 0

    def check(account: str, table: str, kind: str, statement: str, column: str | None = None):
        nonlocal ran
        ran += 1
        code = run(connections[account], statement)
        want = allowed(account, table, kind, column)
        if want and code is not None:
            wrong.append(f"{account} {statement}: refused ({code}), expected to run")
        elif not want and code not in DENIED:
            got = "ran" if code is None else f"failed with {code}, not a privilege error"
            wrong.append(f"{account} {statement}: {got}, expected a privilege error")

    for account in ACCOUNTS:
        for name, table in metadata.tables.items():
            columns = [f"`{c.name}`" for c in table.columns]  # quoted: `change` is a keyword
            check(account, name, "SELECT", f"SELECT * FROM {name} WHERE FALSE")
            for column in table.columns:
                check(
                    account, name, "SELECT",
                    f"SELECT `{column.name}` FROM {name} WHERE FALSE", column.name,
                )  # fmt: skip
            check(
                account, name, "INSERT",
                f"INSERT INTO {name} ({', '.join(columns)}) "
                f"SELECT {', '.join(['NULL'] * len(columns))} FROM DUAL WHERE FALSE",
            )  # fmt: skip
            for column in table.columns:
                check(
                    account, name, "UPDATE",
                    f"UPDATE {name} SET `{column.name}` = NULL WHERE FALSE", column.name,
                )  # fmt: skip
            check(account, name, "DELETE", f"DELETE FROM {name} WHERE FALSE")
            comment = (table.comment or "").replace("'", "''")
            check(account, name, "ALTER", f"ALTER TABLE {name} COMMENT = '{comment}'")
            check(account, name, "GRANT", f"GRANT SELECT ON `{database}`.`{name}` TO {stranger}")
            if account != ADMIN:
                check(account, name, "DROP", f"DROP TABLE {name}")
        probe = f"probe_{account}"
        check(account, probe, "CREATE", f"CREATE TABLE {probe} (id INT)")
    # The admin's DROP last: the tables go.
    for name in metadata.tables:
        check(ADMIN, name, "DROP", f"DROP TABLE {name}")
    check(ADMIN, "probe_admin", "DROP", "DROP TABLE probe_admin")
    print(f"{ran} statements checked")
    assert not wrong, f"{len(wrong)} of {ran} statements:\n" + "\n".join(wrong)


def test_no_job_account_holds_a_right_on_a_whole_database_or_the_server(
    connections: dict[str, pymysql.Connection],
) -> None:
    """The old shared account had every row right on the payscore databases; a job account's
    rights are per table only (SHOW GRANTS for oneself needs no right)."""
    for role in ROLES:
        with connections[role].cursor() as cursor:
            cursor.execute("SHOW GRANTS")
            lines = [row[0] for row in cursor.fetchall()]
        wide = [line for line in lines if ".* TO" in line and not line.startswith("GRANT USAGE")]
        assert not wide, f"{role}: {wide}"


def _verdict(**changes: object) -> dict[str, object]:
    return {
        "transaction_id": "tx-1", "card_id": "card-1", "analyst": "alice", "is_fraud": 1,
        "note": "denied by the card holder", "decided_at": datetime(2026, 3, 2, 9, 0),
        "model_version": "v00001", "model_decision": "review", "model_probability": 0.7,
        "labels_topic": "fraud-labels",
    } | changes  # fmt: skip


def _insert(connection: pymysql.Connection, table: str, row: dict[str, object]) -> int | None:
    marks = ", ".join(["%s"] * len(row))
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", tuple(row.values())
            )
    except pymysql.MySQLError as exc:
        return exc.args[0]
    return None


def test_the_flow_cannot_add_a_review_user_nor_give_a_verdict(
    connections: dict[str, pymysql.Connection],
) -> None:
    """Issue 20: with the flow's account a tester added an analyst and gave a verdict."""
    user = {
        "name": "mallory", "role": "analyst", "password_hash": "scrypt$x",
        "created_at": datetime(2026, 3, 2),
    }  # fmt: skip
    assert _insert(connections["flow"], "review_users", user) == 1142
    assert _insert(connections["review"], "review_users", user) == 1142
    assert _insert(connections["flow"], "review_verdicts", _verdict()) == 1142
    assert _insert(connections[ADMIN], "review_users", user) is None  # python -m review.users
    # What the label join reads of a verdict, and not the analyst's note.
    flow = connections["flow"]
    read = "SELECT transaction_id, card_id, analyst, is_fraud, decided_at FROM review_verdicts"
    assert run(flow, read) is None
    assert run(flow, "SELECT note FROM review_verdicts") in DENIED
    assert run(flow, "SELECT * FROM review_verdicts") in DENIED


def test_the_review_queue_records_a_verdict_and_its_delivery_but_cannot_change_or_delete_it(
    connections: dict[str, pymysql.Connection],
) -> None:
    review = connections["review"]
    assert _insert(review, "review_verdicts", _verdict()) is None
    with review.cursor() as cursor:
        cursor.execute("SELECT MAX(id) FROM review_verdicts")
        (verdict,) = cursor.fetchone()
        # What the broker answered: allowed, on this verdict.
        cursor.execute(
            "UPDATE review_verdicts SET kafka_partition = 2, kafka_offset = 41 WHERE id = %s",
            (verdict,),
        )
        assert cursor.rowcount == 1
    for change in ("is_fraud = 0", "analyst = 'mallory'", "note = NULL", "decided_at = NOW()"):
        assert run(review, f"UPDATE review_verdicts SET {change} WHERE id = {verdict}") == 1143
    assert run(review, f"DELETE FROM review_verdicts WHERE id = {verdict}") == 1142
    with connections[ADMIN].cursor() as cursor:
        cursor.execute("SELECT is_fraud, analyst, kafka_offset FROM review_verdicts")
        assert cursor.fetchall() == ((1, "alice", 41),)


def test_nobody_but_the_admin_updates_or_deletes_an_operator_s_action(
    connections: dict[str, pymysql.Connection],
) -> None:
    action = {
        "action": "promote", "version": "v00002", "decided_by": "alice",
        "decided_at": datetime(2026, 3, 2), "note": "weekly", "promoted_as": "v00003",
    }  # fmt: skip
    assert _insert(connections["models"], "model_actions", action) is None
    for role in ROLES:
        for statement in (
            "UPDATE model_actions SET decided_by = 'mallory'",
            "UPDATE model_actions SET note = 'nothing happened'",
            "DELETE FROM model_actions",
        ):
            assert run(connections[role], statement) in DENIED, (role, statement)
    assert _insert(connections["flow"], "model_actions", action) == 1142
    assert _insert(connections["review"], "model_actions", action) == 1142
    with connections[ADMIN].cursor() as cursor:
        assert cursor.execute("UPDATE model_actions SET note = 'corrected'") == 1


def test_the_schema_command_takes_away_what_an_account_should_not_have(
    admin_engine: Engine, database_config: Config
) -> None:
    """Rights given by hand, or by an older payscore, are brought back to the stated ones; a
    second run changes nothing."""
    database = make_url(database_config.mysql_url).database
    assert database
    accounts = Accounts.of(database_config)
    flow, review = (
        f"'{accounts.users[r]}'@'{accounts.hosts[0]}'" for r in ("flow", "review")
    )  # fmt: skip
    with admin_engine.begin() as c:
        for statement in (
            f"GRANT SELECT, DELETE, UPDATE ON `{database}`.review_verdicts TO {flow}",
            f"GRANT ALTER ON `{database}`.dead_letters TO {flow}",
            f"GRANT UPDATE (is_fraud) ON `{database}`.review_verdicts TO {review}",
            f"GRANT UPDATE ON `{database}`.scored_payments TO {flow}",
            f"GRANT INSERT ON `{database}`.review_users TO {review} WITH GRANT OPTION",
            # Rights no job is given, beside ones it keeps: revoked one by one (no REVOKE ALL).
            f"GRANT INSERT (error), REFERENCES (topic) ON `{database}`.dead_letters TO {flow}",
            f"GRANT REFERENCES, INDEX ON `{database}`.fraud_labels TO {flow} WITH GRANT OPTION",
            f"GRANT REFERENCES (status) ON `{database}`.fraud_labels TO {flow}",
            "CREATE TABLE leftover (id INT)",
            f"GRANT SELECT ON `{database}`.leftover TO {flow}",
            "DROP TABLE leftover",
        ):
            c.execute(text(statement))
    with admin_engine.begin() as c:
        statements = apply_grants(c, database, accounts)
    assert statements, "nothing was done"
    assert not [s for s in statements if "ALL PRIVILEGES" in s], statements
    with admin_engine.begin() as c:
        assert apply_grants(c, database, accounts) == []
        held = held_rights(c, database, accounts.job_users)
    for (account, table), have in held.items():
        roles = [r for r, u in accounts.users.items() if u == account.user]
        want = rights(table, roles[0])  # type: ignore[arg-type]
        assert have.table == want.table_privileges, (account, table)
        assert have.updatable() == want.update_columns, (account, table)
        assert have.readable() == want.read_columns, (account, table)
        assert all(p <= {"SELECT", "UPDATE"} for p in have.columns.values()), (account, table)
    assert not any(table == "leftover" for _, table in held)


def test_another_flow_account_gets_the_flow_s_rights_and_no_other(
    admin_engine: Engine, database_config: Config
) -> None:
    """A second flow account (a name or host of its own, e.g. one that logs in with a password
    file or over TLS) gets exactly the flow's rights; the configured accounts keep theirs."""
    database = make_url(database_config.mysql_url).database
    assert database
    user, password = f"psf_{secrets.token_hex(4)}", secrets.token_hex(16)
    root_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
    accounts = Accounts.of(database_config)
    try:
        with admin_engine.begin() as c:
            before = held_rights(c, database, accounts.job_users)
            assert grant_as(c, database, "flow", Account(user, "127.0.0.1"))
            held = held_rights(c, database, [user])
            assert held_rights(c, database, accounts.job_users) == before
        role: Role = "flow"
        assert {t for (_, t) in held} == {t for t in GRANTS if rights(t, role) != Rights()}
        engine = make_engine(f"mysql+pymysql://{user}:{password}@127.0.0.1:3306/{database}")
        with engine.connect() as c:
            c.execute(text("SELECT COUNT(*) FROM scored_payments"))
            with pytest.raises(Exception, match="1142"):
                c.execute(text("SELECT COUNT(*) FROM review_users"))
        engine.dispose()
    finally:
        root_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")  # its rights go with it
