"""An operator who gives a command another job's MySQL account, a wrong password or a database
without the schema gets one line naming the setting and the remedy, exit status 2, never a
traceback (``storage/refusals.py``), on the real server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from model_state.offline import shadow
from review import users
from rules import __main__ as rules_cli
from settings.config import Config
from storage import report, schema
from storage.refusals import account_variable

pytestmark = pytest.mark.integration

Main = Callable[[], object]


def accounts_env(monkeypatch: pytest.MonkeyPatch, config: Config, **urls: str) -> None:
    """Every account's URL on the test's database, those of ``urls`` (by account) replaced."""
    own = {
        "flow": config.mysql_dsn,
        "review": config.review_mysql_dsn,
        "models": config.models_mysql_dsn,
        "analyst": config.analyst_mysql_dsn,
        "admin": config.mysql_admin_dsn,
    }
    for account, url in {**own, **urls}.items():
        monkeypatch.setenv(account_variable(account), url)  # type: ignore[arg-type]


def refused(main: Main, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("command", "account", "used", "argv"),
    [
        ("storage.schema", "admin", "flow", ["--create"]),
        ("storage.schema", "admin", "review", ["--create"]),
        ("review.users", "admin", "flow", ["list"]),
        ("rules", "analyst", "flow", ["show"]),
        ("model_state.shadow", "models", "analyst", ["status"]),
    ],
)
def test_another_job_s_account_is_refused_naming_the_setting(
    database_config: Config,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    account: str,
    used: str,
    argv: list[str],
) -> None:
    """Before: MySQL's ``command denied`` at the end of a traceback, from whichever statement
    came first (``DESCRIBE review_users`` for the schema command)."""
    urls = {
        "flow": database_config.mysql_dsn,
        "review": database_config.review_mysql_dsn,
        "analyst": database_config.analyst_mysql_dsn,
    }
    accounts_env(monkeypatch, database_config, **{account: urls[used]})
    monkeypatch.setattr("sys.argv", ["python -m " + command, *argv])
    mains: dict[str, Main] = {
        "storage.schema": schema.main,
        "review.users": lambda: users.main(argv),
        "rules": lambda: rules_cli.main(argv),
        "model_state.shadow": lambda: shadow.main(argv),
    }
    err = refused(mains[command], capsys)
    assert err.startswith(f"python -m {command}: refused: MySQL refused the {account} account")
    assert account_variable(account) in err  # type: ignore[arg-type]
    assert "denied" in err and f"payscore_{used}" in err


def test_a_wrong_password_and_a_database_without_the_schema_are_refused(
    database_config: Config,
    admin_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = make_url(database_config.mysql_dsn).set(password="wrong").render_as_string(False)
    accounts_env(monkeypatch, database_config, flow=wrong)
    err = refused(lambda: report.main([]), capsys)
    assert "PAYSCORE_MYSQL_URL" in err and "Access denied" in err and "wrong" not in err
    accounts_env(monkeypatch, database_config)
    with admin_engine.begin() as c:
        c.execute(text("DROP TABLE dead_letters"))
    err = refused(lambda: report.main([]), capsys)
    assert "dead_letters" in err and "storage.schema --create" in err


def test_a_setting_refused_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``ValueError: invalid configuration: ...`` at the end of a traceback."""
    monkeypatch.setenv("PAYSCORE_REVIEW_THRESHOLD", "abc")
    err = refused(lambda: shadow.main(["status"]), capsys)
    assert "PAYSCORE_REVIEW_THRESHOLD='abc'" in err


@pytest.mark.parametrize("used", ["flow", "analyst", "wrong password"])
def test_the_review_queue_refuses_to_start_on_another_account(
    database_config: Config, used: str
) -> None:
    """Before: it served its pages on the flow's or the analysts' account, and every sign-in
    failed (``SELECT command denied ... review_users``: a 500)."""
    from review.__main__ import account_refused
    from storage.engine import make_engine

    urls = {
        "flow": database_config.mysql_dsn,
        "analyst": database_config.analyst_mysql_dsn,
        "wrong password": make_url(database_config.review_mysql_dsn)
        .set(password="wrong")
        .render_as_string(False),
    }
    engine = make_engine(urls[used])
    try:
        said = account_refused(engine)
    finally:
        engine.dispose()
    assert said is not None and "PAYSCORE_REVIEW_MYSQL_URL" in said
    if used == "wrong password":
        assert "Access denied" in said
    else:
        assert "lacks rights the review queue uses" in said and "denied" in said
    review = make_engine(database_config.review_mysql_dsn)
    try:
        assert account_refused(review) is None
    finally:
        review.dispose()


def test_the_review_queue_starts_while_mysql_is_out_of_reach() -> None:
    from review.__main__ import account_refused
    from storage.engine import make_engine
    from test_data.ports import free_ports

    engine = make_engine(f"mysql+pymysql://payscore_review:x@127.0.0.1:{free_ports(1)}/payscore")
    try:
        assert account_refused(engine) is None
    finally:
        engine.dispose()
