"""Review users: who may sign in, and with which role.

    python -m review.users add NAME --role analyst|viewer [--password-file FILE]
    python -m review.users list
    python -m review.users unlock NAME | --address ADDRESS

The password comes from ``--password-file`` (its first line) or is asked twice at a prompt; it
is never a command-line argument (those show in process listings and shell history). An
``analyst`` may give verdicts; a ``viewer`` may only read. Adding a name that exists replaces
its role and password, and ends every session the user has (:mod:`review.sessions`). ``unlock``
ends the lock of a name, or of a client address, that failed sign-ins started
(:mod:`review.throttle`); it is audited in ``review_login_audit``. Users are rows of
``review_users`` in the flow's database, managed as the admin account
(``PAYSCORE_MYSQL_ADMIN_URL``): neither the flow's nor the review queue's account may add or
change one. The password is stored as a salted scrypt hash.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec
from sqlalchemy import Connection, select
from sqlalchemy.dialects.mysql import insert

from features.bounded import bounded
from review.login_records import unlock
from review.passwords import MAX_LENGTH, check_new_password, hash_password, verify_password
from settings.arguments import Parser
from storage.refusals import refusing
from storage.rows import utc_naive
from storage.tables import review_users

Role = Literal["analyst", "viewer"]
ROLES: tuple[Role, ...] = ("analyst", "viewer")
LINE_BYTES = 4 * MAX_LENGTH + 2  # a password's line in UTF-8 at most, and its line break
NAME = re.compile(r"\A[A-Za-z0-9_.:\-]{1,64}\Z")  # an Identifier of the label contract
# A client address as the review app records it (review.app.client_address: the host, cut to
# 64): IPv4, IPv6 (a zone after %, in brackets), a host name, "unknown".
ADDRESS = re.compile(r"\A[A-Za-z0-9_.:%\-\[\]]{1,64}\Z")


class User(msgspec.Struct, frozen=True):
    name: str
    role: Role

    @property
    def may_decide(self) -> bool:
        return self.role == "analyst"


def add_user(connection: Connection, name: str, role: Role, password: str) -> None:
    """Store ``name`` with ``role`` and a hash of ``password`` (replacing an existing one)."""
    if not NAME.match(name):
        raise ValueError(
            f"user name {name!r}: expected 1-64 characters of A-Za-z0-9_.:- (it goes into labels)"
        )
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    check_new_password(password)
    statement = insert(review_users).values(
        name=name,
        role=role,
        password_hash=hash_password(password),
        created_at=utc_naive(datetime.now(UTC)),
    )
    connection.execute(
        statement.on_duplicate_key_update(
            role=statement.inserted.role, password_hash=statement.inserted.password_hash
        )
    )


def authenticate(
    connection: Connection, name: str, password: str
) -> tuple[User | None, str | None, str]:
    """The user ``name``, their stored password hash and "right password" if ``password`` is
    theirs; else None, None and why not, in words for the audit. The same scrypt work is done
    whatever the case, so the time taken tells nothing."""
    row = None
    if NAME.match(name):
        row = connection.execute(
            select(review_users.c.role, review_users.c.password_hash).where(
                review_users.c.name == name
            )
        ).first()
    if row is None:
        verify_password(password, _dummy())  # the same work either way: no timing hint
        return None, None, "unknown name" if NAME.match(name) else "not a user name"
    if not verify_password(password, row.password_hash):
        return None, None, "wrong password"
    return User(name, row.role), row.password_hash, "right password"


def list_users(connection: Connection) -> list[User]:
    rows = connection.execute(
        select(review_users.c.name, review_users.c.role).order_by(review_users.c.name)
    )
    return [User(r.name, r.role) for r in rows]


def _matching(pattern: re.Pattern[str], what: str, chars: str) -> Callable[[str], str]:
    """An argument's type: ``pattern`` or refused by the parser (status 2), quoting the first 40
    characters that came (an ``unlock --address`` of 5,000 characters reached MySQL and was
    printed back whole, "was not locked", as if one that long could have been)."""

    def matching(text: str) -> str:
        if not pattern.match(text):
            raise argparse.ArgumentTypeError(
                f"expected 1 to 64 characters of {chars} ({what}); got {text[:40]!r}"
                + (f" ({len(text):,} characters)" if len(text) > 40 else "")
            )
        return text

    return matching


client_address = _matching(
    ADDRESS, "a client address as review_login_audit shows it", "A-Za-z0-9_.:%-[]"
)
user_name = _matching(NAME, "a user name", "A-Za-z0-9_.:-")


@functools.cache
def _dummy() -> str:
    return hash_password("not a password of anyone")


def _password(file: str | None) -> str:
    if file:
        try:  # its first line only, and no further than a password: /dev/zero never ends
            with Path(file).open("rb") as opened:
                first = opened.readline(LINE_BYTES)
            if len(first) == LINE_BYTES and not first.endswith(b"\n"):
                raise ValueError(
                    f"password too long: expected at most {MAX_LENGTH:,} characters, got a "
                    f"first line of more than {LINE_BYTES:,} bytes in --password-file "
                    f"{bounded(file, 300)}"
                )
            lines = first.decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:  # a traceback (OSError) or no file named
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ValueError(
                f"--password-file {bounded(file, 300)}: {why}; expected a readable UTF-8 file "
                "with the password on its first line"
            ) from None
        if not lines or not lines[0]:
            raise ValueError(f"--password-file {file}: expected the password on its first line")
        return lines[0]
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


@refusing("python -m review.users", "admin")
def main(argv: Sequence[str] | None = None) -> int:
    # No abbreviations: ``--password SECRET`` must not pass for ``--password-file``.
    parser = Parser(prog="python -m review.users", description=__doc__, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser(
        "add", help="add a user, or replace one's role and password", allow_abbrev=False
    )
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-file", help="read the password from this file's first line")
    commands.add_parser("list", help="list users and their roles")
    unlocking = commands.add_parser(
        "unlock", help="end the lock of a name or a client address now", allow_abbrev=False
    )
    which = unlocking.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", type=user_name)
    which.add_argument(
        "--address", type=client_address, help="a client address, as review_login_audit shows it"
    )
    args = parser.parse_args(argv)

    from settings.config import Config
    from storage.engine import make_engine

    engine = make_engine(Config.from_env(os.environ).mysql_admin_dsn, pool_size=1)
    try:
        if args.command == "add":
            try:
                password = _password(args.password_file)
                check_new_password(password)
                with engine.begin() as connection:
                    add_user(connection, args.name, args.role, password)
            except ValueError as exc:
                print(f"review.users: {exc}", file=sys.stderr)
                return 2
            print(f"user {args.name} ({args.role}) stored")
        elif args.command == "unlock":
            kind, subject = ("address", args.address) if args.address else ("account", args.name)
            with engine.begin() as connection:
                ended = unlock(
                    connection,
                    kind,
                    subject,
                    by=f"{getpass.getuser()} (python -m review.users)",
                    now=utc_naive(datetime.now(UTC)),
                )
            print(f"{kind} {subject}: {'unlocked' if ended else 'was not locked'}")
        else:
            with engine.connect() as connection:
                for user in list_users(connection):
                    print(f"{user.name}\t{user.role}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
