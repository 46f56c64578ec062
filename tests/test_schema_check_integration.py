"""The flow's start refuses a database the previous release made (a column it writes missing),
on the real server, as the flow's own account; ``storage.schema --create`` mends it."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError

from dataflows.schema_check import (
    RightsError,
    SchemaError,
    missing_columns,
    missing_rights,
    narrow_charsets,
    require_schema,
)
from settings.config import Config
from storage.accounts import Accounts
from storage.engine import make_engine
from storage.schema import create_schema
from storage.schema import missing_columns as lacking
from storage.tables import dead_letters, implicit_labels, metadata, scored_payments
from test_data.ports import free_ports

pytestmark = pytest.mark.integration


def test_a_column_this_release_writes_missing_refuses_the_start_until_the_schema_is_created(
    database_config: Config, admin_engine: Engine, engine: Engine
) -> None:
    require_schema(database_config)  # the current schema: nothing missing
    with admin_engine.begin() as c:
        c.execute(text("ALTER TABLE dead_letters DROP COLUMN message_headers"))
    assert missing_columns(engine) == ["dead_letters.message_headers"]
    with pytest.raises(SchemaError, match=r"lacks 1 of .*dead_letters\.message_headers.*--create"):
        require_schema(database_config)
    create_schema(admin_engine, Accounts.of(database_config))
    assert missing_columns(engine) == []
    require_schema(database_config)


def test_a_database_out_of_reach_at_start_is_left_to_the_sinks(database_config: Config) -> None:
    """A supervised restart during an outage starts; the sinks wait for MySQL."""
    url = make_url(database_config.mysql_dsn).set(port=free_ports(1))  # nothing listens
    require_schema(Config.from_env({"PAYSCORE_MYSQL_URL": url.render_as_string(False)}))


def test_the_start_and_the_schema_upgrade_see_the_same_missing_columns(
    database_config: Config, admin_engine: Engine, engine: Engine
) -> None:
    """One function (``storage.schema.missing_columns``) says what the database lacks: the
    columns the start refuses are those ``create_schema`` adds; a table that is gone is named
    alone, and ``create_schema`` makes it again."""
    with admin_engine.begin() as c:
        c.execute(text("ALTER TABLE scored_payments DROP COLUMN shadow_version"))
        c.execute(text("ALTER TABLE dead_letters DROP COLUMN message_headers"))
        c.execute(text("DROP TABLE implicit_labels"))
    seen = inspect(admin_engine)
    assert [c.name for c in lacking(seen, scored_payments)] == ["shadow_version"]
    with pytest.raises(NoSuchTableError):
        lacking(seen, implicit_labels)
    assert missing_columns(engine) == [
        "scored_payments.shadow_version",
        "implicit_labels",
        "dead_letters.message_headers",
    ]
    with pytest.raises(SchemaError, match=r"lacks 3 of .*implicit_labels"):
        require_schema(database_config)
    create_schema(admin_engine, Accounts.of(database_config))
    assert missing_columns(engine) == []
    assert lacking(inspect(admin_engine), scored_payments) == []


def revoke_from_the_flow(admin_engine: Engine, config: Config, statement: str) -> None:
    """``statement`` (``REVOKE ... ON {db}.table``) for the flow's account at each of its hosts,
    on the test's own database."""
    accounts = Accounts.of(config)
    database = make_url(config.mysql_dsn).database
    with admin_engine.begin() as c:
        for host in accounts.hosts:
            user = f"'{accounts.users['flow']}'@'{host}'"
            c.execute(text(f"{statement.format(db=f'`{database}`')} FROM {user}"))


def test_a_right_the_flow_s_account_lacks_refuses_the_start_until_the_grants_are_applied(
    database_config: Config, admin_engine: Engine, engine: Engine
) -> None:
    """Before, a missing INSERT on dead_letters was found at the first dead letter, retried as
    an outage for PAYSCORE_MYSQL_OUTAGE_SECONDS while the flow stood still, then stopped it."""
    assert missing_rights(engine) == []
    revoke_from_the_flow(admin_engine, database_config, "REVOKE INSERT ON {db}.dead_letters")
    revoke_from_the_flow(
        admin_engine, database_config, "REVOKE UPDATE (learned_version) ON {db}.implicit_labels"
    )
    denied = missing_rights(engine)
    assert [d.split(":")[0] for d in denied] == [
        "UPDATE (learned_version) on implicit_labels",
        "INSERT on dead_letters",
    ] or [d.split(":")[0] for d in denied] == [
        "INSERT on dead_letters",
        "UPDATE (learned_version) on implicit_labels",
    ]
    assert all("denied" in d for d in denied)
    with pytest.raises(RightsError, match=r"lacks rights the flow uses on 2 tables .*--create"):
        require_schema(database_config)
    create_schema(admin_engine, Accounts.of(database_config))
    assert missing_rights(engine) == []
    require_schema(database_config)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"password": "wrong"}, "Access denied for user"),
        ({"database": "payscore_test_no_such_database"}, "payscore_test_no_such_database"),
    ],
)
def test_mysql_refusing_the_flow_s_account_at_start_says_which_setting(
    database_config: Config, change: dict[str, str], said: str
) -> None:
    url = make_url(database_config.mysql_dsn).set(**change)
    config = Config.from_env({"PAYSCORE_MYSQL_URL": url.render_as_string(False)})
    with pytest.raises(RightsError) as caught:
        require_schema(config)
    text_ = str(caught.value)
    assert "MySQL refused the flow's account at start" in text_ and "PAYSCORE_MYSQL_URL" in text_
    assert said in text_ and "wrong" not in text_.split("Access denied")[0]  # no password shown


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("DROP TABLE ruleset_versions", "ruleset_versions"),
        ("DROP TABLE model_candidates", "model_candidates"),
        ("DROP TABLE review_verdicts", "review_verdicts"),
        ("ALTER TABLE model_versions DROP COLUMN parent_version", "model_versions.parent_version"),
        ("ALTER TABLE review_verdicts DROP COLUMN decided_at", "review_verdicts.decided_at"),
    ],
)
def test_a_table_the_flow_reads_missing_or_old_refuses_the_start_naming_it(
    database_config: Config, admin_engine: Engine, change: str, named: str
) -> None:
    """A database of a release before the rules or the challengers (a table the flow reads
    missing) stopped the start with MySQL's bare ``Table ... doesn't exist`` from the rights
    check; an old ``model_versions`` started, and the learner failed at its first publish."""
    with admin_engine.begin() as c:
        c.execute(text(change))
    with pytest.raises(SchemaError) as caught:
        require_schema(database_config)
    said = str(caught.value)
    assert f"({named})" in said and "PAYSCORE_MYSQL_URL" in said and "--create" in said
    if "decided_at" not in change:  # a column that must be filled: create_schema says so
        create_schema(admin_engine, Accounts.of(database_config))
        require_schema(database_config)


def test_a_column_of_a_table_the_flow_reads_in_part_that_it_does_not_read_is_not_asked_for(
    database_config: Config, admin_engine: Engine, engine: Engine
) -> None:
    """The flow reads five columns of ``review_verdicts``; one only the review queue writes may
    be missing (the review queue's own start is another matter)."""
    with admin_engine.begin() as c:
        c.execute(text("ALTER TABLE review_verdicts DROP COLUMN delivery_error"))
    assert missing_columns(engine) == []
    require_schema(database_config)


def test_the_admin_account_as_the_flow_s_is_refused_at_start(database_config: Config) -> None:
    """Before: the flow ran as the admin account without a word, able to delete what it stored
    and rewrite recorded model versions (the accounts' separation, storage/accounts.py, gone)."""
    config = Config.from_env({"PAYSCORE_MYSQL_URL": database_config.mysql_admin_dsn})
    with pytest.raises(RightsError) as caught:
        require_schema(config)
    said = str(caught.value)
    assert "(payscore_admin) may delete scored payments and change recorded model versions" in said
    assert "PAYSCORE_MYSQL_URL" in said and "another job's account" in said
    require_schema(database_config)  # the flow's own account


def test_tables_of_a_latin1_database_are_utf8mb4_and_an_old_latin1_column_refuses_the_start(
    database_config: Config, admin_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made with MariaDB's server default (latin1) gave every text column without a
    collation of its own latin1 (``dead_letters.error``, ``review_verdicts.note``, ...), which
    refuses an accented letter or an emoji (1366). Tables now name utf8mb4; a column left
    latin1 by an earlier install refuses the flow's start, named."""
    import test_data.chaos as chaos

    monkeypatch.setattr(chaos, "DATABASE_OPTIONS", "CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    with chaos.scratch_database(database_config, "payscore_test_latin1") as url:
        engine = make_engine(url)
        try:
            assert narrow_charsets(engine, tuple(metadata.tables.values())) == []
            with engine.begin() as c:
                c.execute(
                    insert(dead_letters).values(
                        topic="t",
                        kafka_partition=0,
                        kafka_offset=0,
                        error="unknown field `café💥`",
                        dead_lettered_at=datetime(2026, 3, 2),
                    )
                )
        finally:
            engine.dispose()
    with admin_engine.begin() as c:
        c.execute(text("ALTER TABLE dead_letters MODIFY error TEXT CHARACTER SET latin1 NOT NULL"))
    with pytest.raises(SchemaError) as caught:
        require_schema(database_config)
    assert "dead_letters.error (latin1)" in str(caught.value)
    assert "CHARACTER SET utf8mb4" in str(caught.value)
