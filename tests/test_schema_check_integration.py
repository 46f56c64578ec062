"""The flow's start refuses a database the previous release made (a column it writes missing),
on the real server, as the flow's own account; ``storage.schema --create`` mends it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from dataflows.schema_check import SchemaError, missing_columns, require_schema
from settings.config import Config
from storage.accounts import Accounts
from storage.schema import create_schema
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
