"""How payscore connects to MySQL: one function that builds a SQLAlchemy engine.

JSON columns are serialised with msgspec (several times faster than ``json.dumps`` on the
feature dicts the sink writes). Nothing connects until the engine is first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec
import pymysql
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

_encode = msgspec.json.Encoder()


def _to_json(value: object) -> str:
    return _encode.encode(value).decode()


T = TypeVar("T")

# InnoDB asks the client to retry these: the transaction was rolled back as a whole.
DEADLOCK, LOCK_WAIT_TIMEOUT = 1213, 1205


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):  # SQLAlchemy's wrapper around the driver's error
        exc = exc.orig
    return isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] in (
        (DEADLOCK,),
        (LOCK_WAIT_TIMEOUT,),
    )


def retry_transient(work: Callable[[], T]) -> T:
    """Run ``work`` (one whole transaction) again when InnoDB rolled it back for a deadlock or a
    lock wait timeout; up to 5 tries with jittered backoff, then the error goes up."""
    return retry(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(5),
        wait=wait_random_exponential(multiplier=0.05, max=2),
        reraise=True,
    )(work)()


def make_engine(url: str, *, pool_size: int = 2, isolation_level: str | None = None) -> Engine:
    """An engine for ``url`` (``mysql+pymysql://user:password@host:port/database``)."""
    if not url.startswith("mysql+pymysql://"):
        raise ValueError(
            f"PAYSCORE_MYSQL_URL must start with 'mysql+pymysql://'; got {url.split('@')[-1]!r}"
        )
    return create_engine(
        url,
        pool_size=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        json_serializer=_to_json,
        json_deserializer=msgspec.json.decode,
        connect_args={"charset": "utf8mb4", "local_infile": True},
        **({"isolation_level": isolation_level} if isolation_level else {}),
    )
