"""How payscore connects to MySQL: one function that builds a SQLAlchemy engine, and one rule for
riding out what the server cannot do right now.

JSON columns are serialised with msgspec (several times faster than ``json.dumps`` on the
feature dicts the sink writes). Nothing connects until the engine is first used.

**Outages.** :func:`retry_transient` runs one whole transaction again while the error says the
server could not do it *now*: a deadlock or lock wait (InnoDB rolled the transaction back), a
refused or lost connection, a server shutting down or gone away, read-only (a failover). It
backs off (jittered, exponential, at most 10 s between tries) for up to ``patience`` seconds of
wall-clock time (``PAYSCORE_MYSQL_OUTAGE_SECONDS``, default 300), then raises
:class:`MySQLUnavailableError`, which stops the flow with a non-zero exit for a supervisor to
restart it. Any other error goes up at once: it is about the data or the schema, not the
server's health. Where it stops the flow, the guard of the step it came from logs it with its
cause (``dataflows/failures.py``: a two-process Bytewax flow may print only ``Send thread
panic`` for it), and the process exits at once (``dataflows/exiting.py``).

**Access denied after access granted.** Grants are applied again on running servers: DBAs'
tools often do it with a ``REVOKE ALL`` and then the ``GRANT`` (``ops/services.sh mysql-up``
did so after every start, issue 20), and narrowing a whole-table right to column rights takes
two statements, between which the columns are not granted (``storage/accounts.py``). Meanwhile
a new connection of the account is refused (1044) and its statements too (1142, 1143): right
after an outage, when every connection is new. Once MySQL has let this process in (one
transaction succeeded), such a refusal is retried like an outage; before that, it is a wrong
configuration and stops the flow at once. A right the account really lacks is therefore
reported after the patience, by an error that says access was refused and quotes MySQL.

**Over the local unix socket.** With ``PAYSCORE_MYSQL_SOCKET`` set, a URL naming this host
carries ``unix_socket`` (``settings.config.over_socket``): no TCP and no TLS on the way to a
server on the same host. Each new connection then asks the server for its port: a socket that
leads to another server than the URL's port names (a drill's private server beside the shared
one) is refused with :class:`SocketMismatchError`, which is no outage and stops the flow at once.

**``local_infile``** is off unless a caller asks for it: with it on, a hostile or impersonated
server may read any file the client can. Only the bulk ``load`` sink needs it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import msgspec
import pymysql
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from features.bounded import bounded

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder()


def _to_json(value: object) -> str:
    return _encode.encode(value).decode()


T = TypeVar("T")

DEFAULT_PATIENCE_SECONDS = 300.0

# InnoDB asks the client to retry these: the transaction was rolled back as a whole.
DEADLOCK, LOCK_WAIT_TIMEOUT = 1213, 1205
# The server is unreachable, restarting, or dropped the connection (client and server codes).
UNAVAILABLE = {
    1040,  # too many connections
    1053,  # server shutdown in progress
    1077,  # normal shutdown
    1152,  # aborted connection
    1158, 1159, 1160, 1161,  # network read/write errors and timeouts
    1927,  # connection killed
    2002, 2003, 2005, 2006, 2013, 2014, 2055,  # can't connect, gone away, lost connection
    4031,  # disconnected by the server for inactivity
}  # fmt: skip
# The server refuses writes for now: read-only (a replica during a failover).
READ_ONLY = {1290, 1836}
TRANSIENT = {DEADLOCK, LOCK_WAIT_TIMEOUT} | UNAVAILABLE | READ_ONLY
# The account is refused what it may do: transient only once the process was let in (above).
ACCESS_DENIED = {
    1044,  # access denied to a database (connecting)
    1045,  # access denied (logging in)
    1142,  # command denied on a table
    1143,  # command denied on a column
}

# A row with this primary key is stored already (an error for INSERT, a warning for IGNORE).
DUPLICATE_KEY = 1062
# MySQL refuses the data of a row, not the statement: too long, out of range, a bad date, ...
ROW_ERRORS = {1048, 1153, 1263, 1264, 1265, 1292, 1300, 1366, 1367, 1406, 1411, 1690, 3140, 4025}


class _LetIn:
    """Whether MySQL has let this process in: one transaction of :func:`retry_transient`
    succeeded (a process-wide fact, as the account and its grants are)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def mark(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def forget(self) -> None:
        """For tests: as a process that has not reached MySQL yet."""
        self._event.clear()


LET_IN = _LetIn()


class ConcurrentChangeError(RuntimeError):
    """A transaction found rows changed under it that it expected unchanged; it rolls back and
    runs again (as after a deadlock)."""


class MySQLUnavailableError(RuntimeError):
    """MySQL could not be reached (or kept rolling back) for longer than the patience allows."""


class SocketMismatchError(RuntimeError):
    """The server behind the configured unix socket is not the one the URL names (its port)."""


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number behind ``exc`` (SQLAlchemy's wrapper or the driver's own)."""
    if isinstance(exc, DBAPIError):
        exc = exc.orig  # type: ignore[assignment]
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_transient(exc: BaseException, *, let_in: bool = False) -> bool:
    """True when running the same transaction again later may succeed; with ``let_in`` (MySQL
    let this process in before), an access refusal too (see the module docstring)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    inner = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(inner, pymysql.err.InterfaceError):  # the connection was already closed
        return True
    if isinstance(inner, ConnectionError | TimeoutError | ConcurrentChangeError):
        return True
    code = error_code(exc)
    return code in TRANSIENT or (let_in and code in ACCESS_DENIED)


def is_row_error(exc: BaseException) -> bool:
    """True when ``exc`` is MySQL refusing a row's data (as opposed to the server or schema)."""
    return error_code(exc) in ROW_ERRORS


def describe(exc: BaseException) -> str:
    """The driver's own words for ``exc``, without SQLAlchemy's statement and parameters, bounded
    (MySQL may quote the value it refused)."""
    inner = exc.orig if isinstance(exc, DBAPIError) else exc
    return bounded(f"{type(inner).__name__}: {inner}")


def retry_transient(
    work: Callable[[], T],
    *,
    patience: float = DEFAULT_PATIENCE_SECONDS,
    what: str = "a write",
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``work`` (one whole transaction) until it succeeds or fails for another reason than
    the server's availability; after ``patience`` seconds of transient failures raise
    :class:`MySQLUnavailableError` naming ``what`` was being done. ``on_retry`` is called before
    each new try (a metric). Any other error goes up as it is (see the module docstring)."""

    def warn(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry()
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s while %s (try %d, %.0f s so far): %s; retrying",
            _what_failed(exc),
            what,
            state.attempt_number,
            state.seconds_since_start or 0.0,
            describe(exc) if exc else "?",
            extra={"event": "sink_retry", "reason": what},
        )

    retrying = Retrying(
        retry=retry_if_exception(lambda exc: is_transient(exc, let_in=bool(LET_IN))),
        stop=stop_after_delay(patience),
        wait=_Jitter(multiplier=0.1, max=10),
        before_sleep=warn,
    )
    try:
        done = retrying(work)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        bound = (
            f" for more than {patience:.0f} s (PAYSCORE_MYSQL_OUTAGE_SECONDS)" if patience else ""
        )
        error = MySQLUnavailableError(
            f"{_what_failed(last)}{bound} while {what}: {describe(last) if last else 'no answer'}"
        )
        if patience:  # the flow stops on it: say so where operators look, whatever Bytewax prints
            log.error(
                "%s; stopping the flow", error, extra={"event": "mysql_unavailable", "reason": what}
            )
        raise error from last
    LET_IN.mark()
    return done


class _Jitter(wait_exponential):
    """tenacity's ``wait_random_exponential`` (a uniform draw below the exponential bound), from
    a generator of its own: a retry never moves the ``random`` module's global state, which
    belongs to the program (hypothesis warns when something moves it while it draws data, as a
    retry in another thread of the same process would)."""

    def __init__(self, *, multiplier: float, max: float) -> None:
        super().__init__(multiplier=multiplier, max=max)
        self._random = random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        return self._random.uniform(0.0, super().__call__(retry_state))


def _what_failed(exc: BaseException | None) -> str:
    """What a transient failure was, in words: MySQL unavailable; an access refusal (the account
    lacks a right or its grants are being applied again, see the module docstring); or a
    conflict with another transaction (a deadlock, a lock wait, rows changed under it), which is
    no outage and is not called one.

    >>> _what_failed(ConcurrentChangeError("x"))
    'a concurrent transaction changed the rows (a conflict, not an outage)'
    >>> _what_failed(pymysql.err.OperationalError(1213, "Deadlock found"))
    'MySQL deadlock with a concurrent transaction (a conflict, not an outage)'
    >>> _what_failed(pymysql.err.OperationalError(2003, "Can't connect"))
    'MySQL unavailable'
    """
    if isinstance(exc, ConcurrentChangeError):
        return "a concurrent transaction changed the rows (a conflict, not an outage)"
    code = error_code(exc) if exc is not None else None
    if code in ACCESS_DENIED:
        return "MySQL refused access (a right the account lacks, or its grants being applied again)"
    if code == DEADLOCK:
        return "MySQL deadlock with a concurrent transaction (a conflict, not an outage)"
    if code == LOCK_WAIT_TIMEOUT:
        return "MySQL lock wait timeout behind a concurrent transaction (a conflict, not an outage)"
    return "MySQL unavailable"


@functools.cache
def shared_engine(url: str, *, pool_size: int = 2, isolation_level: str | None = None) -> Engine:
    """One engine per process for ``url`` and these options (steps of every worker thread share
    it; SQLAlchemy's pool is thread-safe). Nothing connects until it is first used."""
    return make_engine(url, pool_size=pool_size, isolation_level=isolation_level)


def make_engine(
    url: str,
    *,
    pool_size: int = 2,
    isolation_level: str | None = None,
    local_infile: bool = False,
) -> Engine:
    """An engine for ``url`` (``mysql+pymysql://user:password@host:port/database``)."""
    if not url.startswith("mysql+pymysql://"):
        raise ValueError(
            f"PAYSCORE_MYSQL_URL must start with 'mysql+pymysql://'; got {url.split('@')[-1]!r}"
        )
    engine = create_engine(
        url,
        pool_size=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        json_serializer=_to_json,
        json_deserializer=msgspec.json.decode,
        connect_args={
            "charset": "utf8mb4",
            "local_infile": local_infile,
            "connect_timeout": 10,
            # A server that stops answering mid-statement counts as lost, not as slow forever.
            "read_timeout": 120,
            "write_timeout": 120,
            # Every time the server makes (a column default, SYSDATE) is UTC, as the flow's own.
            "init_command": "SET time_zone = '+00:00'",
        },
        **({"isolation_level": isolation_level} if isolation_level else {}),
    )
    parsed = make_url(url)
    socket = parsed.query.get("unix_socket")
    if isinstance(socket, str) and parsed.port is not None:
        event.listen(engine, "connect", same_server(socket, parsed.port))
    return engine


def same_server(socket: str, port: int) -> Callable[[object, object], None]:
    """A ``connect`` hook: the server reached through ``socket`` must listen on ``port`` (0: it
    listens on no TCP port, nothing to compare)."""

    def check(connection: object, _record: object) -> None:
        cursor = connection.cursor()  # type: ignore[attr-defined]
        try:
            cursor.execute("SELECT @@port")
            (served,) = cursor.fetchone()
        finally:
            cursor.close()
        refuse_another_server(socket, port, served)

    return check


def refuse_another_server(socket: str, port: int, served: int) -> None:
    """Raise :class:`SocketMismatchError` unless the server reached through ``socket``, which
    listens on ``served`` (0: no TCP port), is the URL's, on ``port``."""
    if served not in (0, port):
        raise SocketMismatchError(
            f"MySQL through unix socket {bounded(socket)!r} (PAYSCORE_MYSQL_SOCKET) is a "
            f"server on port {served}, but the URL names port {port}: another server on "
            "this host; set PAYSCORE_MYSQL_SOCKET to that server's socket, or empty for TCP"
        )


class LockBusyError(ValueError):
    """A MySQL named lock stayed held by another session past the wait."""


@contextlib.contextmanager
def named_lock(engine: Engine, purpose: str, seconds: int, busy: str) -> Iterator[None]:
    """Hold the MySQL named lock of ``purpose`` on ``engine``'s database for the block, waiting
    up to ``seconds`` for another session that holds it (two commands that must not run at once
    on one database: another host's, or another operator's). Past the wait, raise
    :class:`LockBusyError` saying ``busy`` (what holds it), the database and the wait. A lock
    name is at most 64 characters; a database name may be as long: its hash is in the name. The
    server drops the lock if this session's connection is lost."""
    database = str(engine.url.database)
    name = f"payscore.{purpose}." + hashlib.sha256(database.encode()).hexdigest()[:32]
    with engine.connect() as connection:
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :seconds)"), {"name": name, "seconds": seconds}
        ).scalar()
        if got != 1:
            raise LockBusyError(
                f"{busy} on the database {bounded(database, 64)!r} held its lock ({name}) for "
                f"{seconds} s; expected it to finish first (MySQL's SHOW PROCESSLIST shows it)"
            )
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
