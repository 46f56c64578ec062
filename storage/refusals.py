"""The command lines' answer to an operator's mistake: a refusal that names the setting and the
remedy, exit status 2, never a bare traceback.

Each command of the project runs as one MySQL account (``storage/accounts.py``): the admin
account makes the tables and review users, the analysts' account the rules, the model tools'
account the versions, and the flow's account what the flow stores. An operator who puts one
account's URL in another's setting (the flow's account in ``PAYSCORE_MYSQL_ADMIN_URL``, say),
misspells a password, names a database that does not exist or was never given the schema got
MySQL's refusal as a Python traceback several screens long, ``(1142, "SELECT command denied to
user 'payscore_flow'@'localhost' for table ... review_users")`` at its end, from whichever
statement came first. :func:`refusals` turns those refusals, and a setting
:meth:`settings.config.Config.from_env` refuses, into one line: which command, which account
and setting, MySQL's words (bounded), and what to do.

>>> print(account_variable("analyst"))
PAYSCORE_ANALYST_MYSQL_URL
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from features.bounded import bounded
from storage.accounts import GRANTS, Role, probes, rights
from storage.engine import ACCESS_DENIED, error_code
from storage.tables import metadata

Account = Literal["flow", "review", "models", "analyst", "admin"]
REFUSED = 2  # the exit status of a refusal (argparse's for a bad argument)

_VARIABLES: dict[Account, str] = {
    "flow": "MYSQL",
    "review": "REVIEW_MYSQL",
    "models": "MODELS_MYSQL",
    "analyst": "ANALYST_MYSQL",
    "admin": "MYSQL_ADMIN",
}
NO_DATABASE = {1046, 1049}  # none in the URL, or none of that name
NO_TABLE = 1146
NO_COLUMN = 1054
# MySQL refuses the account, or the database lacks what this release reads: an operator's
# mistake, said as one line (anything else is a failure, with its traceback).
REFUSALS = ACCESS_DENIED | NO_DATABASE | {NO_TABLE, NO_COLUMN}


def account_variable(account: Account) -> str:
    """The setting that names ``account``'s URL."""
    return f"PAYSCORE_{_VARIABLES[account]}_URL"


def account_refusal(exc: BaseException, account: Account) -> str | None:
    """What to tell the operator when MySQL refused ``account`` with ``exc``; None when ``exc``
    is no such refusal."""
    code = error_code(exc)
    if code not in REFUSALS:
        return None
    url = account_variable(account)
    said = bounded(str(exc.orig if isinstance(exc, DBAPIError) else exc), 300)
    if code in {NO_TABLE, NO_COLUMN}:
        remedy = (
            "the database lacks a table or column this release uses: run `python -m "
            "storage.schema --create` (as the admin account, PAYSCORE_MYSQL_ADMIN_URL)"
        )
    elif account == "admin":
        remedy = (
            f"expected the admin account (the one that creates tables and grants rights: "
            f"payscore_admin as ops/services.sh makes it) in {url}, its password in "
            f"PAYSCORE_{_VARIABLES[account]}_PASSWORD_FILE, and an existing database"
        )
    else:
        remedy = (
            f"expected the {account} account in {url} (not another job's: storage/accounts.py "
            f"gives each its rights), its password in "
            f"PAYSCORE_{_VARIABLES[account]}_PASSWORD_FILE, on the database `python -m "
            "storage.schema --create` made and granted (PAYSCORE_MYSQL_ACCOUNT_HOSTS naming "
            "the host it connects from)"
        )
    return f"MySQL refused the {account} account ({url}): {said}; {remedy}"


@contextmanager
def refusals(command: str, account: Account) -> Iterator[None]:
    """Run a command's body: MySQL refusing ``account`` (:func:`account_refusal`) or a setting
    refused (``invalid configuration``) ends it with one line on standard error and exit
    status :data:`REFUSED`."""
    try:
        yield
    except DBAPIError as exc:
        said = account_refusal(exc, account)
        if said is None:
            raise
        print(f"{command}: refused: {said}", file=sys.stderr)
        raise SystemExit(REFUSED) from None
    except ValueError as exc:
        if not str(exc).startswith("invalid configuration"):
            raise
        print(f"{command}: refused: {bounded(str(exc))}", file=sys.stderr)
        raise SystemExit(REFUSED) from None


P = ParamSpec("P")
R = TypeVar("R")


def refusing(command: str, account: Account) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """:func:`refusals` around a whole ``main``."""

    def wrap(main: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(main)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with refusals(command, account):
                return main(*args, **kwargs)

        return run

    return wrap


def missing_rights(engine: Engine, role: Role = "flow") -> list[str]:
    """``NEED on table: MySQL's refusal`` for each table on which ``engine``'s account lacks a
    right ``storage/accounts.py`` gives ``role`` (the first it lacks there), in the order of
    ``GRANTS``: one statement a right that touches no row (:func:`storage.accounts.probes`),
    in a transaction rolled back. Any other error (a missing table) is raised."""
    lacking_rights = []
    with engine.connect() as connection:
        for name in GRANTS:
            want = rights(name, role)
            for need, statement in probes(metadata.tables[name], want):
                if (exc := refused(connection, statement)) is not None:
                    lacking_rights.append(f"{need} on {name}: {bounded(str(exc.orig), 300)}")
                    break
        connection.rollback()
    return lacking_rights


def refused(connection: Connection, statement: str) -> DBAPIError | None:
    """Run ``statement`` (one that touches no row); the error MySQL refused it with for want
    of a right, the transaction rolled back, or None when it ran. Any other error is raised."""
    try:
        connection.exec_driver_sql(statement)
    except DBAPIError as exc:
        if error_code(exc) not in ACCESS_DENIED:
            raise
        connection.rollback()
        return exc
    return None
