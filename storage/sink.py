"""A Bytewax sink that writes rows into one MySQL table, idempotently.

Delivery: Bytewax gives sinks **at-least-once** delivery; after a resume from a recovery
snapshot, the rows of the last epoch are written again. Every batch is therefore written as one
transaction of ``INSERT ... ON DUPLICATE KEY UPDATE <primary key> = <primary key>``: a row whose
primary key is already present is left exactly as it is (first write wins), so a replayed batch
changes nothing, and a batch is either all in or all out.

``INSERT IGNORE`` is not used: it would also turn real errors (a value too long, a NULL in a NOT
NULL column) into warnings and silently store something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from sqlalchemy import Engine, Table
from sqlalchemy.dialects.mysql import Insert, insert

from storage.engine import make_engine

Row = Mapping[str, Any]


def first_write_wins(table: Table) -> Insert:
    """``INSERT`` into ``table`` that leaves an existing row with the same primary key untouched."""
    key = table.primary_key.columns.values()[0]
    return insert(table).on_duplicate_key_update({key.name: key})


class MySQLSinkPartition(StatelessSinkPartition[Row]):
    """One worker's writer: a batch is one transaction of one multi-row insert."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self._engine = engine
        self._table = table
        self._statement = first_write_wins(table)

    def write_batch(self, items: list[Row]) -> None:
        if not items:
            return
        with self._engine.begin() as connection:
            connection.execute(self._statement, items)

    def close(self) -> None:
        self._engine.dispose()


class MySQLSink(DynamicSink[Row]):
    """Writes row dicts (column name -> value) into ``table``; each worker has its own connection.

    Safe to replay: see the module docstring.
    """

    def __init__(self, url: str, table: Table) -> None:
        self._url = url
        self._table = table

    def build(self, step_id: str, worker_index: int, worker_count: int) -> MySQLSinkPartition:
        return MySQLSinkPartition(make_engine(self._url, pool_size=1), self._table)
