"""Who ``python -m rules`` records as making a change: the OS user who ran it, with the name
given by ``--by`` (review of issue 20, item 3: the actor was ``--by`` alone, any name typed)."""

from __future__ import annotations

import os
import pwd
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.__main__ import actor, main, os_user
from rules.store import check_actor


@given(
    by=st.none() | st.text(max_size=60) | st.from_regex(r"[A-Za-z0-9_.\-]{1,40}", fullmatch=True),
    user=st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True),
)
def test_an_actor_is_a_valid_one_naming_the_os_user_or_a_clear_refusal(
    by: str | None, user: str
) -> None:
    """Whatever is typed, the actor is one ``rules.store`` accepts and ends with the OS user
    (as ``os_user`` gives it), or ``--by`` is refused by name; a name given cannot pass for
    another OS user."""
    if by is not None and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,40}", by):
        with pytest.raises(ValueError, match=r"\A--by: expected 1 to 40 characters"):
            actor(by, user)
        return
    made = actor(by, user)
    assert check_actor(made) == made
    assert made == (f"os:{user}" if by is None else f"{by}@os:{user}")
    assert made.count("@") == (0 if by is None else 1)  # the OS user is what follows the @


def test_the_os_user_is_the_real_user_s_login_name_not_the_environment_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    for variable in ("USER", "LOGNAME", "USERNAME", "LNAME"):
        monkeypatch.setenv(variable, "mallory")
    assert os_user() == me[:20] != "mallory"
    assert os_user(2**31 - 7) == f"uid{2**31 - 7}"  # a user id with no login name


def test_a_by_that_would_pass_for_another_os_user_is_refused_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["list-add", "blocked", "c-1", "--by", "carl@os:carl"]) == 2
    assert "refused: --by: expected 1 to 40 characters" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["versions"], ["audit"], ["list-show", "blocked"]])
@pytest.mark.parametrize("limit", ["-5", "0", "99999999999999999999999", "ten"])
def test_a_limit_out_of_range_is_refused_before_connecting(
    command: list[str], limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--limit -5`` reached MySQL as ``LIMIT -5``: a syntax error and a traceback; a limit
    too large for MySQL, another. Refused by the parser, with status 2 and what is expected."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--limit", limit])
    assert exited.value.code == 2
    assert "expected a whole number of rows from 1 to 10,000" in capsys.readouterr().err


def test_an_import_file_that_never_ends_is_read_no_further_than_its_bound(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m rules import blocked /dev/zero`` read until memory ran out; now a file past
    rules.__main__.MAX_CSV_BYTES (256 MiB; 1 KiB here) is refused, before any connection."""
    from rules import __main__ as command

    monkeypatch.setattr(command, "MAX_CSV_BYTES", 1024)
    monkeypatch.setenv("PAYSCORE_ANALYST_MYSQL_URL", "mysql+pymysql://nobody:x@127.0.0.1:1/none")
    assert command.main(["import", "blocked", "/dev/zero"]) == 2
    assert capsys.readouterr().err == (
        "refused: /dev/zero: more than 1,024 bytes; expected a CSV file of at most 1,024 bytes "
        "(split it)\n"
    )
