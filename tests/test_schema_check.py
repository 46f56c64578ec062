"""The start's rights check decides with fakes (``dataflows/schema_check.py``): MySQL that cannot
answer now (read-only during a failover, a lock wait, a deadlock) does not refuse the start; a
right the account lacks does. On the real server: ``tests/test_schema_check_integration.py``."""

from __future__ import annotations

import logging
from types import SimpleNamespace, TracebackType

import pymysql
import pytest
from sqlalchemy.exc import OperationalError

from dataflows import schema_check
from settings.config import Config

CONFIG = Config.from_env({"PAYSCORE_MYSQL_URL": "mysql+pymysql://flow:secret@db:3306/payscore"})


class Connection:
    """Answers every probe but INSERTs, which MySQL refuses with ``code``."""

    def __init__(self, code: int, words: str) -> None:
        self.code, self.words, self.ran = code, words, []

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        return None

    def exec_driver_sql(self, statement: str) -> None:
        self.ran.append(statement)
        if statement.startswith("INSERT"):
            raise OperationalError(
                statement, {}, pymysql.err.OperationalError(self.code, self.words)
            )

    def rollback(self) -> None:
        return None


def start(monkeypatch: pytest.MonkeyPatch, code: int, words: str) -> Connection:
    connection = Connection(code, words)
    engine = SimpleNamespace(
        connect=lambda: connection, dispose=lambda: None, url=SimpleNamespace()
    )
    monkeypatch.setattr(schema_check, "make_engine", lambda url, pool_size: engine)
    monkeypatch.setattr(schema_check, "missing_columns", lambda engine: [])
    monkeypatch.setattr(schema_check, "narrow_charsets", lambda engine: [])
    schema_check.require_schema(CONFIG)
    return connection


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (1290, "The MariaDB server is running with the --read-only option"),
        (1836, "Running in read-only mode"),
        (1205, "Lock wait timeout exceeded; try restarting transaction"),
        (1213, "Deadlock found when trying to get lock; try restarting transaction"),
    ],
)
def test_mysql_that_cannot_write_now_does_not_refuse_the_start_and_says_rights_went_unchecked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int, words: str
) -> None:
    with caplog.at_level(logging.WARNING, logger=schema_check.__name__):
        ran = start(monkeypatch, code, words).ran
    assert any(s.startswith("INSERT") for s in ran)  # the INSERT probe was reached
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "rights not checked at start: " in said[0], said
    assert str(code) in said[0] and words in said[0]


def test_a_right_the_account_lacks_still_refuses_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(schema_check.RightsError, match=r"INSERT on \w+: \(1142, \"INSERT command"):
        start(monkeypatch, 1142, "INSERT command denied to user 'flow'@'host' for table 'x'")
