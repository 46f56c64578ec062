"""A malformed MySQL URL setting is refused at start, naming the variable, what was expected and
what came (the password hidden), in one bounded line; the command lines refuse it with status 2.

Before: ``PAYSCORE_MODELS_MYSQL_URL=mysql+pymysql://u:pw@db:notaport/payscore`` stopped the flow
and the commands with ``ValueError: invalid literal for int() with base 10: 'notaport'`` (no
variable named), ``PAYSCORE_MYSQL_ADMIN_URL='not a url'`` with SQLAlchemy's ``ArgumentError``
traceback, and a URL of another driver with a message naming ``PAYSCORE_MYSQL_URL`` whichever
variable held it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from settings.config import Config

URLS = [
    "mysql_url",
    "review_mysql_url",
    "models_mysql_url",
    "analyst_mysql_url",
    "mysql_admin_url",
]
MALFORMED = {
    "not a url": "not a url",
    "mysql+pymysql://u:s3cret@db:notaport/payscore": "port",
    "mysql+pymysql://u:s3cret@db:99999/payscore": "port",
    "mysql://u:s3cret@db:3306/payscore": "mysql+pymysql",
    "postgresql://u:s3cret@db/payscore": "mysql+pymysql",
    "mysql+pymysql://u:s3cret@db:3306/" + "x" * 100_000: "database",
}
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("field", URLS)
@pytest.mark.parametrize("url", sorted(MALFORMED))
def test_a_malformed_url_is_refused_naming_its_variable(field: str, url: str) -> None:
    variable = f"PAYSCORE_{field.upper()}"
    with pytest.raises(ValueError, match="invalid configuration") as refused:
        Config.from_env({variable: url})
    said = str(refused.value)
    assert said.startswith(f"invalid configuration: {variable}"), said[:300]
    assert "expected mysql+pymysql://" in said, said[:300]
    assert "s3cret" not in said  # the password is never shown
    assert len(said) < 1_000


def test_good_urls_stay_accepted() -> None:
    config = Config.from_env(
        {
            "PAYSCORE_MYSQL_URL": "mysql+pymysql://u:p%40ss@db.example:3307/payscore?ssl_ca=/ca.pem",
            "PAYSCORE_REVIEW_MYSQL_URL": "mysql+pymysql://u@localhost/payscore",
            "PAYSCORE_MYSQL_ADMIN_URL": "mysql+pymysql://root:x@[::1]:3306/payscore",
        }
    )
    assert config.mysql_url.startswith("mysql+pymysql://u:p%40ss@db.example:3307")


@pytest.mark.parametrize(
    "command",
    [
        ["storage.schema", "--create"],
        ["storage.accounts"],
        ["storage.report"],
        ["rules", "show"],
        ["review.users", "list"],
    ],
)
def test_commands_refuse_a_malformed_url_in_one_line(command: list[str]) -> None:
    env = {
        **os.environ,
        "PAYSCORE_MYSQL_ADMIN_URL": "mysql+pymysql://u:s3cret@db:notaport/payscore",
        "PAYSCORE_MYSQL_URL": "mysql+pymysql://u:s3cret@db:notaport/payscore",
    }
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "PAYSCORE_MYSQL" in done.stderr and "port" in done.stderr
    assert "s3cret" not in done.stderr
    assert len(done.stderr) < 2_000
