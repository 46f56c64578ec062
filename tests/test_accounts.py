"""The accounts' rights as stated (storage/accounts.py), without a server: every table has its
line, and the grant plan turns any rights an account holds into exactly the stated ones,
never taking away on the way a right the account keeps."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.accounts import (
    COLUMN_PRIVILEGES,
    GRANTS,
    READ,
    ROLES,
    SCRATCH_DATABASES,
    Account,
    Accounts,
    GrantsError,
    Held,
    Rights,
    check_complete,
    plan,
    rights,
    root_sql,
)
from storage.tables import metadata
from tests.conftest import BASE

COLUMNS = ("a", "b", "c", "d")
ROW = ("SELECT", "INSERT", "UPDATE", "DELETE")
FOREIGN = ("ALTER", "DROP", "INDEX", "REFERENCES", "GRANT OPTION")
# Privileges MySQL grants per column; SELECT and UPDATE are the only ones a job is given.
ANY_COLUMN = ("SELECT", "UPDATE", "INSERT", "REFERENCES")
ACCOUNT = Account("u", "127.0.0.1")


def test_every_table_has_its_rights_stated_and_every_named_column_exists() -> None:
    check_complete()
    assert set(GRANTS) == set(metadata.tables)


def test_a_new_table_without_a_line_stops_the_schema_command() -> None:
    with pytest.raises(GrantsError, match="no rights stated for login_attempts: add a line"):
        check_complete([*metadata.tables, "login_attempts"])


def test_the_issue_s_facts_as_stated() -> None:
    """Issue 20: the flow's account inserted a review user and gave a verdict with it; audit rows
    could be rewritten."""
    assert rights("review_users", "flow") == Rights()
    # The flow reads what a verdict's label says, to believe a label's analyst (storage.labels);
    # not the analyst's note, and it adds none.
    assert rights("review_verdicts", "flow") == Rights(
        read=("transaction_id", "card_id", "analyst", "is_fraud", "decided_at")
    )
    for review_table in ("review_sessions", "review_login_limits", "review_login_audit"):
        assert rights(review_table, "flow") == Rights(), review_table
    assert not rights("review_users", "review").insert
    audits = (
        "review_verdicts",
        "model_actions",
        "model_versions",
        "review_login_audit",
        "ruleset_versions",
        "ruleset_audit",
    )
    for audit in audits:
        for role in ROLES:
            granted = rights(audit, role)
            assert not granted.delete and not granted.update_all, (audit, role)
            if audit != "review_verdicts":
                assert not granted.update, (audit, role)
    assert set(rights("review_verdicts", "review").update) == {
        "kafka_partition",
        "kafka_offset",
        "delivery_error",
    }
    assert all(not rights("model_actions", role).update for role in ROLES)
    assert all(not rights("review_login_audit", role).update for role in ROLES)
    # No job account deletes a row, but the rules' writers the current rules (a rollback
    # deletes the rules added since; the versions and the audit keep every one).
    deleters = {
        (t, role) for t, by_role in GRANTS.items() for role, r in by_role.items() if r.delete
    }
    assert deleters == {("fraud_rules", "review"), ("fraud_rules", "analyst")}


def test_rules_and_lists_are_the_review_account_s_to_change_and_the_flow_s_to_read() -> None:
    """Issue 21: analysts change rules and lists (the review queue as the review account,
    python -m rules as the analyst account); the flow's loader reads the newest version and its
    packed lists only; a list entry is never deleted nor re-keyed, only marked removed."""
    writer_tables = (
        "fraud_rules",
        "rule_lists",
        "rule_list_entries",
        "rule_list_blobs",
        "ruleset_versions",
        "ruleset_audit",
    )
    for table in writer_tables:
        assert rights(table, "review").insert and rights(table, "review").select, table
        assert rights(table, "models") == Rights(), table
    assert {t for t in writer_tables if rights(t, "flow") != Rights()} == {
        "ruleset_versions",
        "rule_list_blobs",
    }
    assert (
        rights("ruleset_versions", "flow")
        == rights("rule_list_blobs", "flow")
        == Rights(select=True)
    )
    entries = rights("rule_list_entries", "review")
    assert set(entries.update) == {"removed_in", "removed_by", "removed_at"}
    assert not entries.delete and not entries.update_all
    assert not rights("fraud_rules", "review").may_update("rule_id")


def test_the_analysts_command_lines_change_rules_and_read_payments_and_nothing_else() -> None:
    """Review of issue 20, item 3: python -m rules, rules.backtest and review.explain held the
    review queue's account, and with it could revive sessions, lift lockouts, read password
    hashes and add verdicts. Their own account changes rules and lists as the review queue does
    (the audit insert-only), reads payments and model versions, and nothing else."""
    writers = ("fraud_rules", "rule_lists", "rule_list_entries", "rule_list_blobs",
               "ruleset_versions", "ruleset_audit")  # fmt: skip
    for table in writers:
        assert rights(table, "analyst") == rights(table, "review"), table
    for audit in ("ruleset_versions", "ruleset_audit"):
        assert rights(audit, "analyst") == Rights(select=True, insert=True), audit
    assert rights("scored_payments", "analyst") == rights("model_versions", "analyst") == READ
    granted = {t for t in GRANTS if rights(t, "analyst") != Rights()}
    assert granted == {*writers, "scored_payments", "model_versions"}
    for table in ("review_users", "review_sessions", "review_login_limits",
                  "review_login_audit", "review_verdicts"):  # fmt: skip
        assert table not in granted


def test_the_flow_may_replace_a_payment_but_never_re_key_one_or_change_a_dead_letter() -> None:
    """Issue 20 item 5: the first message in Kafka order keeps a transaction id, so the flow
    replaces a payment stored from a later message in place (every column but the id)."""
    payments = rights("scored_payments", "flow")
    assert not payments.update_all and not payments.delete
    assert not payments.may_update("transaction_id")
    others = set(metadata.tables["scored_payments"].columns.keys()) - {"transaction_id"}
    assert all(payments.may_update(column) for column in others)
    assert rights("dead_letters", "flow") == Rights(select=True, insert=True)
    # Sign-in limits: the counts, never the key (the review app adds a missing row with
    # INSERT IGNORE, not an upsert, which would need the right to update the key).
    assert set(rights("review_login_limits", "review").update) == {
        "failures",
        "last_failure_at",
        "locked_until",
    }


def test_the_accounts_come_from_the_settings() -> None:
    accounts = Accounts.of(BASE)
    assert set(accounts.users) == set(ROLES)
    assert accounts.admin not in accounts.job_users
    assert len(set(accounts.users.values())) == len(ROLES), "each job its own account"


def test_root_s_part_gives_the_admin_the_grant_option_and_retires_old_users() -> None:
    accounts = Accounts(
        {"flow": "f", "review": "r", "models": "m", "analyst": "a"}, "adm", ("127.0.0.1",)
    )
    sql = root_sql(accounts, ["payscore", "payscore\\_%"], retired=["payscore", "f"])
    assert "GRANT ALL PRIVILEGES ON `payscore\\_%`.* TO 'adm'@'127.0.0.1' WITH GRANT OPTION;" in sql
    assert "GRANT SELECT ON mysql.tables_priv TO 'adm'@'127.0.0.1';" in sql
    assert "REVOKE ALL PRIVILEGES ON *.* FROM 'f'@'127.0.0.1';" in sql
    assert "DROP USER IF EXISTS 'payscore'@'127.0.0.1';" in sql
    assert "DROP USER IF EXISTS 'f'" not in sql  # a configured account is never retired


@pytest.mark.parametrize(
    ("user", "host"), [("x'; DROP", "127.0.0.1"), ("ok", "h' OR '1"), ("", "localhost")]
)
def test_account_names_that_could_break_a_statement_are_refused(user: str, host: str) -> None:
    with pytest.raises(GrantsError, match="expected"):
        Account(user, host)


# ----------------------------------------------------------------------------- the plan


class Server:
    """How MySQL and MariaDB keep one account's rights on one table: a revoke of a table
    privilege also takes it from every column; ALL leaves the grant option."""

    def __init__(self, held: Held) -> None:
        self.table = set(held.table)
        self.columns = {c: set(p) for c, p in held.columns.items()}

    def held(self) -> Held:
        return Held(frozenset(self.table), {c: frozenset(p) for c, p in self.columns.items() if p})

    def run(self, statement: str) -> None:
        verb, privileges, columns = _parse(statement)
        if columns is not None:
            (privilege,) = privileges
            assert privilege in ANY_COLUMN, statement
            for column in columns:
                mine = self.columns.setdefault(column, set())
                if verb == "GRANT":
                    mine.add(privilege)
                else:
                    assert privilege in mine, f"{statement}: no such grant"
                    mine.discard(privilege)
        elif verb == "GRANT":
            self.table |= privileges
        elif privileges == {"ALL PRIVILEGES"}:
            self.table &= {"GRANT OPTION"}
            self.columns = {}
        else:
            self.table -= privileges
            for mine in self.columns.values():
                mine -= privileges


def _parse(statement: str) -> tuple[str, set[str], list[str] | None]:
    found = re.fullmatch(
        r"(GRANT|REVOKE) (.+?)(?: \((.+)\))? ON `d`\.`t` (?:TO|FROM) .+", statement
    )
    assert found, statement
    verb, privileges, columns = found.groups()
    if columns is not None:
        assert privileges in ANY_COLUMN, statement
        return verb, {privileges}, columns.split(", ")
    return verb, set(privileges.split(", ")), None


helds = st.builds(
    Held,
    st.frozensets(st.sampled_from(ROW + FOREIGN)),
    st.dictionaries(
        st.sampled_from(COLUMNS),
        st.frozensets(st.sampled_from(ANY_COLUMN), min_size=1),
    ),
)
wants = st.builds(
    Rights,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.lists(st.sampled_from(COLUMNS), unique=True).map(tuple),
    st.booleans(),
    st.lists(st.sampled_from(COLUMNS), unique=True).map(tuple),
)


def _normal(held: Held) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    return held.table, {c: p for c, p in held.columns.items() if p}


@settings(max_examples=500, deadline=None)
@given(helds, wants)
def test_the_plan_reaches_exactly_the_stated_rights(held: Held, want: Rights) -> None:
    server = Server(held)
    for statement in plan("d", "t", ACCOUNT, held, want):
        server.run(statement)
    expected = {
        c: frozenset(p for p in COLUMN_PRIVILEGES if c in want.columns(p))
        for c in want.read_columns | want.update_columns
    }
    assert _normal(server.held()) == _normal(Held(want.table_privileges, expected))
    # Run again on what it made: nothing to do.
    assert plan("d", "t", ACCOUNT, server.held(), want) == []


@settings(max_examples=500, deadline=None)
@given(helds, wants)
def test_an_account_in_use_keeps_what_it_keeps_while_the_plan_runs(
    held: Held, want: Rights
) -> None:
    """Additions come first, and rights no job is given (ALTER, the grant option, a column's
    INSERT, ...) are revoked one by one: a running flow never loses, even for a moment, a right
    it still has afterwards. (One case cannot be done so: a whole-table SELECT or UPDATE
    becoming column rights, since MySQL's revoke of the table privilege takes it from every
    column; its columns are granted again by the next statement.)"""
    narrowing = ("UPDATE" in held.table and not want.update_all) or (
        "SELECT" in held.table and not want.select
    )
    if narrowing:
        return
    kept_table = held.table & want.table_privileges
    kept = {p: held.granted(p) & want.columns(p) for p in COLUMN_PRIVILEGES}
    server = Server(held)
    statements = plan("d", "t", ACCOUNT, held, want)
    assert not any("ALL PRIVILEGES" in statement for statement in statements)
    for statement in statements:
        server.run(statement)
        now = server.held()
        assert kept_table <= now.table, statement
        for p in COLUMN_PRIVILEGES:
            assert kept[p] <= now.granted(p) or p in now.table, statement


@pytest.mark.parametrize(
    "argv",
    [
        ["--retire", "x'; DROP DATABASE payscore; --"],
        ["--database", "pay`score"],
        ["--retire", "u" * 100_000],
    ],
)
def test_the_command_refuses_a_name_that_could_break_root_s_sql_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: refused, but as a GrantsError traceback (ops/services.sh pipes what it prints
    into root's mysql: SERVICES_MYSQL_RETIRED_USERS reaches --retire)."""
    from storage.accounts import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("python -m storage.accounts: refused: ") and err.count("\n") == 1
    assert len(err) < 600


def test_the_command_s_help_names_the_scratch_databases(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``python -m storage.accounts --help`` (the README's Docker set-up runs the
    command) stopped with a ValueError traceback: the ``%`` of the scratch databases' ``LIKE``
    pattern in the help text was taken for a format of argparse's."""
    from storage.accounts import main

    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out, _ = capsys.readouterr()
    assert SCRATCH_DATABASES in out


def readme_rights(text: str) -> dict[str, list[str]]:
    """The README's table of rights (*Security*): table -> one cell per role, in ROLES' order."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\s*\| `(\w+)` \| (.*) \|\s*$", line)
        if match and match.group(1) in metadata.tables:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split(" | ")]
    return rows


def said(table: str, granted: Rights) -> str:
    """What the README says for ``granted``: read, add, delete, update (every column) or update
    and the columns, "—" for nothing."""
    if granted == Rights():
        return "—"
    parts = []
    if granted.select:
        parts.append("read")
    elif granted.read:
        parts.append("read " + ", ".join(f"`{c}`" for c in granted.read))
    if granted.insert:
        parts.append("add")
    if granted.delete:
        parts.append("delete")
    if granted.update_all:
        parts.append("update")
    elif granted.update:
        every = {c.name for c in metadata.tables[table].columns} - set(granted.update)
        if len(every) == 1:
            parts.append(f"update every column but `{every.pop()}`")
        else:
            parts.append("update " + ", ".join(f"`{c}`" for c in granted.update))
    return ", ".join(parts)


def rights_differences(text: str) -> list[str]:
    rows = readme_rights(text)
    found = [f"{table}: not in the README's table" for table in GRANTS if table not in rows]
    for table, by_role in GRANTS.items():
        cells = rows.get(table, [])
        if cells and len(cells) != len(ROLES):
            found.append(f"{table}: {len(cells)} cells in the README; expected {len(ROLES)}")
            continue
        for role, cell in zip(ROLES, cells, strict=False):
            want = said(table, by_role.get(role, Rights()))
            if cell.split(" (")[0] != want:
                found.append(f"{table}, {role}: README {cell!r}; storage/accounts.py {want!r}")
    return found


def test_the_readme_s_table_of_rights_is_storage_accounts() -> None:
    """The README's *Security* table of every account's rights per table says what GRANTS
    grants, cell by cell; a changed cell is caught."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert rights_differences(text) == []
    planted = text.replace(
        "| `rule_lists` | — | read, add |", "| `rule_lists` | read | read, add |"
    )
    assert planted != text
    assert rights_differences(planted) == [
        "rule_lists, flow: README 'read'; storage/accounts.py '—'"
    ]
