"""Storing a dead letter in MySQL never fails because of what it holds.

A dead letter is the flow's last word on a message, so its row must be stored whatever the
message was: keys and values of any size, any bytes, a reason of any text. The bulk sink
(:mod:`storage.sink`) stores most of them in one ``LOAD DATA`` per batch (which takes rows of
any size). A row MySQL still refuses, and every letter the sinks make themselves (a scored row
MySQL refused, a transaction id reused), goes through :func:`store_letters`, which tries, for
each row and in the caller's transaction, until one is stored:

1. the row as it is (skipped when its key, value and headers would make an ``INSERT`` larger
   than the server's ``max_allowed_packet``: the server would drop the connection, which reads
   as an outage and would be retried for ever);
2. the row without its key, value and headers, the reason extended with why they were left
   out;
3. the row with a fixed reason and nothing of the input: position and times only.

Every level is queryable by (topic, partition, offset). Only a server that refuses even the
third (a missing table, no privilege: the deployment's to fix) raises
:class:`UnstorableLetterError`, and the flow stops without losing the message. First write
wins, as everywhere: a replayed letter changes nothing. Each try is a plain ``INSERT``, and a
letter whose position is stored already (MySQL's duplicate-key error, which undoes only that
statement) counts as stored. Neither ``INSERT IGNORE`` (strict mode then stores a value too
long cut, with a warning, instead of refusing it) nor an upsert (``ON DUPLICATE KEY UPDATE``
needs the right to update every column it inserts, on MariaDB) would do: the flow's account
may add dead letters, never change one (``storage/accounts.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert

from features.bounded import bounded
from storage.engine import DUPLICATE_KEY, describe, error_code, is_row_error
from storage.tables import dead_letters

Row = Mapping[str, Any]
# What a row adds to an INSERT besides its key and value: the other columns and the SQL.
_ROW_OVERHEAD = 64 * 1024
BARE_REASON = (
    "dead letter kept without its bytes and its reason: MySQL refused both (see the flow's log)"
)
_INSERT = insert(dead_letters)
_PAYLOAD = ("message_key", "raw_value", "message_headers")  # the letter's bytes of input


class UnstorableLetterError(RuntimeError):
    """MySQL refused even a dead letter without any of its input: the table or the account is
    wrong, not the message."""


def without_raw_bytes(row: Row, reason: str) -> dict[str, Any]:
    """A dead letter kept without its key and value, its reason saying why."""
    return {
        **row,
        "message_key": None,
        "raw_value": None,
        "message_headers": None,
        "error": bounded(f"{row['error']}; key, value and headers not stored: {reason}"),
    }


def bare(row: Row) -> dict[str, Any]:
    """A dead letter with nothing of its input: where it was read, and when."""
    return {
        **row,
        "message_key": None,
        "raw_value": None,
        "message_headers": None,
        "error": BARE_REASON,
        "received_at": None,
    }


def payload_bytes(row: Row) -> int:
    return sum(len(row.get(name) or b"") for name in _PAYLOAD)


def store_letters(connection: Connection, rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Store each dead-letter row in ``connection``'s transaction, in the first form MySQL takes
    (see the module docstring); the rows as stored (as tried, for one stored before). Raises
    only for a server that takes none."""
    if not rows:
        return []
    packet = int(connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())
    stored = []
    for row in rows:
        size = payload_bytes(row)
        tries: list[dict[str, Any]] = []
        if 2 * size + _ROW_OVERHEAD <= packet:  # bytes travel escaped: up to twice their size
            tries.append(dict(row))
        else:
            tries.append(
                without_raw_bytes(
                    row,
                    f"{size:,} bytes are more than an INSERT may carry "
                    f"(max_allowed_packet {packet:,})",
                )
            )
        stored.append(_first_taken(connection, tries, row))
    return stored


def _first_taken(connection: Connection, tries: list[dict[str, Any]], row: Row) -> dict[str, Any]:
    problems = []
    while tries:
        attempt = tries.pop(0)
        try:
            connection.execute(_INSERT, attempt)
            return attempt
        except Exception as exc:
            if error_code(exc) == DUPLICATE_KEY:  # stored before (a replay): first write wins
                return attempt
            if not is_row_error(exc):
                raise
            problems.append(describe(exc))
            if any(attempt.get(name) is not None for name in _PAYLOAD):
                tries.append(without_raw_bytes(row, bounded(describe(exc), 500)))
            elif attempt["error"] != BARE_REASON:
                tries.append(bare(row))
    raise UnstorableLetterError(
        bounded(
            f"MySQL refused the dead letter {row['topic']}[{row['kafka_partition']}]@"
            f"{row['kafka_offset']} in every form, the last without any of its input: "
            + "; ".join(problems)
        )
    )
