"""``python -m review.users``: passwords never on the command line, and too short ones refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from review.passwords import hash_password, verify_password
from review.users import main


def test_a_password_cannot_be_given_as_an_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["add", "alice", "--role", "analyst", "--password", "a long enough password"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --password" in capsys.readouterr().err


def test_a_short_password_is_refused_before_anything_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unreachable database: the refusal must come before any connection.
    monkeypatch.setenv("PAYSCORE_MYSQL_ADMIN_URL", "mysql+pymysql://nobody:x@127.0.0.1:1/none")
    secret = tmp_path / "password"
    secret.write_text("short\n")
    assert main(["add", "alice", "--role", "analyst", "--password-file", str(secret)]) == 2
    assert "password too short: expected at least 10 characters, got 5" in capsys.readouterr().err


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: d / "missing", "No such file or directory"),  # was a FileNotFoundError
        (lambda d: d, "Is a directory"),  # was an IsADirectoryError
        (lambda d: _written(d / "latin1", b"caf\xe9 au lait\n"), "not UTF-8"),
    ],
)
def test_a_password_file_that_cannot_be_read_is_a_refusal_naming_it(
    make: Callable[[Path], Path],
    why: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A traceback (status 1) before, or for a file not in UTF-8 Python's codec error naming no
    file; now one line naming the file and why, status 2, before any connection."""
    monkeypatch.setenv("PAYSCORE_MYSQL_ADMIN_URL", "mysql+pymysql://nobody:x@127.0.0.1:1/none")
    file = make(tmp_path)
    assert main(["add", "alice", "--role", "analyst", "--password-file", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"review.users: --password-file {file}: {why}") and err.count("\n") == 1


def test_hashes_are_salted_and_checked() -> None:
    one, two = hash_password("same password"), hash_password("same password")
    assert one != two
    assert verify_password("same password", one)
    assert verify_password("same password", two)
    assert not verify_password("same passworD", one)
    with pytest.raises(ValueError, match="expected 'scrypt"):
        verify_password("x", "md5$abc")


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["unlock", "--address", "1" * 5_000], "'" + "1" * 40 + "'"),
        (["unlock", "--address", "192.0.2.1\n; DROP TABLE x"], "'192.0.2.1\\n; DROP TABLE x'"),
        (["unlock", "--address", ""], "''"),
        (["unlock", "a" * 5_000], "'" + "a" * 40 + "'"),
        (["unlock", "alice bob"], "'alice bob'"),
    ],
)
def test_an_unlock_of_no_possible_name_or_address_is_refused_bounded(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    shown: str,
) -> None:
    """Before: ``unlock --address`` with 5,000 characters reached MySQL and printed them all back
    ("address 1111…: was not locked"), as if an address that long could have been locked."""
    monkeypatch.setenv("PAYSCORE_MYSQL_ADMIN_URL", "mysql+pymysql://nobody:x@127.0.0.1:1/none")
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "expected 1 to 64 characters of" in err
    assert f"got {shown}" in err
    assert len(err) < 1_500


@pytest.mark.parametrize(
    "address",
    ["192.0.2.1", "2001:db8::1", "fe80::1%eth0", "[2001:db8::1]", "unknown", "testclient"],
)
def test_every_address_the_review_app_records_may_be_unlocked(address: str) -> None:
    from review.users import client_address

    assert client_address(address) == address


@pytest.mark.parametrize(
    "data",
    [
        b"p" * 5_000 + b"\n",  # was stored: no sign-in form carries it (review.forms)
        b"p" * 3_000_000,  # one line, read whole
    ],
)
def test_a_password_longer_than_a_sign_in_takes_is_refused_before_anything_is_stored(
    data: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAYSCORE_MYSQL_ADMIN_URL", "mysql+pymysql://nobody:x@127.0.0.1:1/none")
    file = _written(tmp_path / "password", data)
    assert main(["add", "alice", "--role", "analyst", "--password-file", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("review.users: password too long: expected at most 1,024 characters")
    assert len(err) < 300


def test_a_password_file_that_never_ends_is_read_no_further_than_a_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--password-file /dev/zero`` was read until memory ran out."""
    monkeypatch.setenv("PAYSCORE_MYSQL_ADMIN_URL", "mysql+pymysql://nobody:x@127.0.0.1:1/none")
    assert main(["add", "alice", "--role", "analyst", "--password-file", "/dev/zero"]) == 2
    assert "password too long: expected at most 1,024 characters" in capsys.readouterr().err
