"""How payscore connects to MySQL: one function that builds a SQLAlchemy engine.

JSON columns are serialised with msgspec (several times faster than ``json.dumps`` on the
feature dicts the sink writes). Nothing connects until the engine is first used.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import Engine, create_engine

_encode = msgspec.json.Encoder()


def _to_json(value: object) -> str:
    return _encode.encode(value).decode()


def make_engine(url: str, *, pool_size: int = 2) -> Engine:
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
    )
