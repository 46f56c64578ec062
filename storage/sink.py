"""A Bytewax sink that writes rows into one MySQL table, idempotently and in bulk.

Delivery: Bytewax gives sinks **at-least-once** delivery; after a resume from a recovery
snapshot, the rows of the last epoch are written again. Every batch is therefore one transaction
in which a row whose primary key is already stored is skipped: first write wins, a replayed batch
changes nothing, and a batch is either all in or all out.

Two ways to write a batch, with the same effect:

- ``load`` (default): the batch goes to the server as a tab-separated file through
  ``LOAD DATA LOCAL INFILE ... IGNORE``. The server then reports one warning per skipped
  duplicate (code 1062); any other warning (a value truncated, a bad date) fails the batch, so
  ``IGNORE`` never hides bad data. About twice as fast as ``insert`` here (see
  ``benchmarks/bench_sink.py``). The server must allow ``local_infile`` (MariaDB's default; on
  MySQL 8 start it with ``--local-infile=1``).
- ``insert``: ``INSERT IGNORE`` of many rows a statement, with the same check of warnings as
  ``load``. It needs no ``local_infile``: choose it where the client must not grant the server
  file reads (see :mod:`storage.engine`).

Both need only the right to insert rows: an upsert (``ON DUPLICATE KEY UPDATE``) would need the
right to update every column it inserts (MariaDB's rule), and the flow's account may not change
a stored dead letter (``storage/accounts.py``); it changes a stored payment only to settle a
reused transaction id (below).

**What MySQL cannot take.** A batch that fails because the server is unavailable is retried as
a whole, for up to ``patience`` seconds (:func:`storage.engine.retry_transient`). A batch that
fails because of its data (a value too long, a bad date, a number out of range: MySQL's own
refusal) is split in halves until the refused rows stand alone; every other row is stored, and
each refused row is handed to ``refused``, which makes it a dead letter with MySQL's reason:
stored in ``dead_letters`` by the same worker, in whatever form MySQL takes
(:mod:`storage.dead_letters`), and handed to the worker's ``letters_out`` (the dead-letter
topic). Any other error (a missing table, no privilege) stops the flow: it is the deployment's
to fix, and no row is lost meanwhile.

**Rows that conflict.** When MySQL skipped rows as stored already, ``conflicts`` settles them
in one transaction (for scored payments, :func:`storage.payments.settle_reused_ids`: the first
message in Kafka order keeps a transaction id). The dead letters it makes are stored and
published *in* that transaction, before it commits: a letter for a stored row it displaced
exists nowhere else, and a crash after the commit would not make it again. A crash before the
commit makes it again on replay (the topic is at-least-once).

**Before each commit** (``Writing.before_commit``, one per worker): in the transaction of every
batch that stores rows (after MySQL took them and no row was refused), and again in the
transaction that settles conflicting rows, the hook reads what is stored for the batch's rows
and hands it on; if it raises, the transaction rolls back and the flow stops (nothing stored,
nothing lost: the batch is replayed). For scored payments it publishes their stored decisions on
the decisions topic (``dataflows/decisions_topic.py`` says what that guarantees).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from sqlalchemy import JSON, Connection, Engine, LargeBinary, Table
from sqlalchemy.dialects.mysql import Insert, insert

from features.bounded import bounded
from storage.dead_letters import store_letters, without_raw_bytes
from storage.engine import (
    DEFAULT_PATIENCE_SECONDS,
    DUPLICATE_KEY,
    describe,
    is_row_error,
    make_engine,
    retry_transient,
)

Row = Mapping[str, Any]
Method = Literal["load", "insert"]
# Makes the dead-letter row for a row MySQL refused, from the row and MySQL's reason.
Refused = Callable[[Row, str], Row]
# For a batch in which rows were skipped as stored already, in a transaction: the rows (of the
# batch, or stored ones it displaced) that become dead letters, with why.
Conflicts = Callable[[Connection, Sequence[Row]], Sequence[tuple[Row, str]]]
# Hands dead-letter rows on (to the dead-letter topic); raises if it cannot.
Publish = Callable[[Sequence[Row]], None]
# Reads in a batch's transaction: SQL with %s placeholders and its parameters -> the rows.
Read = Callable[[str, Sequence[Any]], Sequence[Sequence[Any]]]
# In a batch's transaction, after its rows are written and checked, before it commits: hands on
# what is stored now for the batch's rows (read with ``Read``); raising rolls the batch back.
BeforeCommit = Callable[[Read, Sequence[Row]], None]

log = logging.getLogger(__name__)
REFUSED_BY_MYSQL = "refused_by_mysql"  # the kind of a dead letter made of a row MySQL refused
_TMP_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
_json = msgspec.json.Encoder()


class SinkWriteError(RuntimeError):
    """A batch was refused by MySQL; nothing of it was stored."""


def refused_by_mysql(exc: BaseException) -> bool:
    """True when ``exc`` is MySQL refusing a row's data (as opposed to the server or schema)."""
    return isinstance(exc, SinkWriteError) or is_row_error(exc)


def first_write_wins(table: Table, rows: Sequence[Row]) -> Insert:
    """One ``INSERT IGNORE`` of ``rows`` into ``table``: a row whose primary key is stored
    already is skipped (warning 1062); any other warning means a row was stored altered."""
    return insert(table).prefix_with("IGNORE").values(list(rows))


# Rows of one INSERT statement: at most this many, and about this many bytes of values (well
# below max_allowed_packet, 16 MiB on MariaDB and 64 MiB on MySQL 8, whatever the rows hold).
INSERT_ROWS, INSERT_BYTES = 1000, 1 << 20


def statement_chunks(items: Sequence[Row]) -> list[Sequence[Row]]:
    """``items`` cut into the rows of successive statements, each at least one row."""
    chunks, start, size = [], 0, 0
    for i, row in enumerate(items):
        row_size = sum(len(v) for v in row.values() if isinstance(v, str | bytes)) + 64
        if i > start and (i - start >= INSERT_ROWS or size + row_size > INSERT_BYTES):
            chunks.append(items[start:i])
            start, size = i, 0
        size += row_size
    if start < len(items):
        chunks.append(items[start:])
    return chunks


def load_data_statement(table: Table, columns: Sequence[str], path: str) -> str:
    """``LOAD DATA LOCAL INFILE`` for a tab-separated file of ``columns``; binary columns are
    sent as hex and decoded by the server."""
    targets, sets = [], []
    # A column marked written_at (scored_payments.stored_at) gets the time MySQL writes each row.
    sets += [f"{c.name} = SYSDATE(6)" for c in table.columns if c.info.get("written_at")]
    for name in columns:
        if isinstance(table.c[name].type, LargeBinary):
            targets.append(f"@{name}")
            sets.append(f"{name} = UNHEX(@{name})")
        else:
            targets.append(name)
    quoted_path = path.replace("\\", "\\\\").replace("'", "\\'")
    statement = (
        f"LOAD DATA LOCAL INFILE '{quoted_path}' IGNORE INTO TABLE {table.name} "
        "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' "
        f"LINES TERMINATED BY '\\n' ({', '.join(targets)})"
    )
    return statement + (f" SET {', '.join(sets)}" if sets else "")


def _finite(value: float) -> str:
    if not math.isfinite(value):
        raise SinkWriteError(f"cannot store the non-finite number {value} in MySQL")
    return repr(value)


_TEXT: dict[type, Callable[[Any], str]] = {
    str: lambda v: v.translate(_ESCAPES),
    bool: lambda v: "1" if v else "0",
    int: str,
    float: _finite,
    datetime: lambda v: v.isoformat(sep=" "),
    bytes: bytes.hex,
    bytearray: bytearray.hex,
    memoryview: memoryview.hex,
}


def tsv_field(value: Any, *, is_json: bool = False) -> str:
    """One value in LOAD DATA's default text format (``\\N`` is NULL)."""
    if value is None:
        return "\\N"
    if is_json:
        return _json_text(value)
    text = _TEXT.get(type(value))
    if text is None:  # a subclass (an int enum, a numpy float): by its nearest known base
        text = next((f for kind, f in _TEXT.items() if isinstance(value, kind)), None)
        if text is None:
            raise SinkWriteError(f"no MySQL text form for a value of type {type(value).__name__}")
    return text(value)


def _json_text(value: Any) -> str:
    # JSON escapes every control character, so only its backslashes need LOAD DATA's escape.
    text = _json.encode(value).decode()
    return text.replace("\\", "\\\\") if "\\" in text else text


def tsv_lines(table: Table, items: Sequence[Row]) -> tuple[list[str], list[str]]:
    """The columns (those of the first row) and one LOAD DATA line per row of ``items``."""
    columns = list(items[0])
    json_flags = [isinstance(table.c[name].type, JSON) for name in columns]
    plain = _TEXT
    field = tsv_field

    def line(row: Row) -> str:
        out = []
        for name, is_json in zip(columns, json_flags, strict=True):
            value = row[name]
            text = plain.get(type(value)) if not is_json else None
            out.append(text(value) if text is not None else field(value, is_json=is_json))
        return "\t".join(out)

    try:
        return columns, [line(row) for row in items]
    except KeyError as exc:
        raise SinkWriteError(
            f"row for {table.name} lacks column {exc}; expected {columns}"
        ) from None


@dataclass(frozen=True)
class Writing:
    """How a sink writes: its method, what becomes of refused and conflicting rows, and how long
    it rides out an outage (see the module docstring)."""

    method: Method = "load"
    # Turns a row MySQL refuses (or that ``conflicts`` finds) into a row of ``refused_table``.
    refused: Refused | None = None
    refused_table: Table | None = None
    patience: float = DEFAULT_PATIENCE_SECONDS
    conflicts: Conflicts | None = None
    # Metrics: the rows of a batch just committed (those refused left out; True when some were
    # skipped as stored already, e.g. a replay); a retry while MySQL is unavailable; a batch
    # that failed for good (the flow stops).
    after_commit: Callable[[Sequence[Row], bool], None] | None = None
    on_retry: Callable[[], None] | None = None
    on_failure: Callable[[], None] | None = None
    # A row became a dead letter, and of which kind: ``refused_by_mysql`` (MySQL refused its
    # data), or ``conflict_kind`` (``conflicts`` made it one). Named by where the letter is
    # made, never read from the reason's text (which quotes the row's values).
    on_refused: Callable[[str], None] | None = None
    conflict_kind: str = "conflict"
    # Makes, for each worker, what publishes the dead letters this sink makes (the topic).
    letters_out: Callable[[], Publish] | None = None
    # Makes, for each worker, what runs in each batch's transaction before it commits.
    before_commit: Callable[[], BeforeCommit] | None = None


class MySQLSinkPartition(StatelessSinkPartition[Row]):
    """One worker's writer: each batch is one transaction (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        writing: Writing = Writing(),
        publish: Publish | None = None,
        before_commit: BeforeCommit | None = None,
    ) -> None:
        self._engine = engine
        self._table = table
        self._writing = writing
        self._publish = publish
        self._before_commit = before_commit
        self._max_packet: int | None = None

    def write_batch(self, items: list[Row]) -> None:
        if items:
            refused = self._write(items)
            if refused:
                self._dead_letters(refused, REFUSED_BY_MYSQL, within=None)

    def _write(self, items: list[Row]) -> list[tuple[Row, str]]:
        """Store ``items``; the rows MySQL refused, with its reason (dead letters to make)."""
        writing = self._writing
        write = self._insert if writing.method == "insert" else self._load
        try:
            skipped = retry_transient(
                lambda: write(items),
                patience=writing.patience,
                what=f"writing {len(items)} rows to {self._table.name}",
                on_retry=writing.on_retry,
            )
        except Exception as exc:
            if not refused_by_mysql(exc):
                if writing.on_failure is not None:
                    writing.on_failure()
                raise
            if len(items) > 1:
                half = len(items) // 2
                return self._write(items[:half]) + self._write(items[half:])
            why = describe(exc) if not isinstance(exc, SinkWriteError) else str(exc)
            return [(items[0], bounded(f"MySQL refused the row for {self._table.name}: {why}"))]
        settled: Sequence[tuple[Row, str]] = ()
        if skipped and writing.conflicts is not None:
            check = writing.conflicts

            def settle() -> Sequence[tuple[Row, str]]:
                with self._engine.begin() as connection:
                    found = check(connection, items)
                    if found:
                        self._dead_letters(found, writing.conflict_kind, within=connection)
                    if self._before_commit is not None:  # what is stored now, settled
                        self._before_commit(_reader(connection), items)
                    return found

            settled = retry_transient(
                settle, patience=writing.patience, what=f"checking {skipped} repeated rows"
            )
        if writing.after_commit is not None:
            lettered = {_position(row) for row, _ in settled}
            stored = [row for row in items if _position(row) not in lettered]
            writing.after_commit(stored if settled else items, bool(skipped))
        return []

    def _dead_letters(
        self, refused: Sequence[tuple[Row, str]], kind: str, *, within: Connection | None
    ) -> None:
        """Make dead letters of ``refused`` rows (of ``kind``, for ``on_refused``): store them
        (in ``within``'s transaction, or in one of their own) and publish them."""
        writing = self._writing
        if writing.refused is None or writing.refused_table is None:
            raise SinkWriteError(refused[0][1])
        letters = [writing.refused(row, reason) for row, reason in refused]
        for letter, (_, reason) in zip(letters, refused, strict=True):
            if writing.on_refused is not None:
                writing.on_refused(kind)
            log.warning(
                "row for %s stored as a dead letter at %s[%s]@%s: %s",
                self._table.name,
                letter.get("topic"),
                letter.get("kafka_partition"),
                letter.get("kafka_offset"),
                reason,
                extra={"event": "dead_letter", "table": self._table.name, "reason": reason},
            )
        if within is not None:
            store_letters(within, letters)
        else:

            def store() -> None:
                with self._engine.begin() as connection:
                    store_letters(connection, letters)

            retry_transient(
                store, patience=writing.patience, what=f"storing {len(letters)} dead letters"
            )
        if self._publish is not None:
            self._publish(letters)

    def _insert(self, items: list[Row]) -> int:
        """Insert (``INSERT IGNORE``); the number of rows skipped as stored already. A row
        whose bytes an INSERT cannot carry is refused before it is sent (the server would
        drop the connection, which reads as an outage)."""
        skipped = 0
        with self._engine.begin() as connection:
            if self._max_packet is None:
                self._max_packet = int(
                    connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one()
                )
            for chunk in statement_chunks(items):
                size = sum(_bytes_in(row) for row in chunk)
                if 2 * size + 65_536 > self._max_packet:
                    raise SinkWriteError(
                        f"{len(chunk)} rows with {size:,} bytes of binary values are more than "
                        f"an INSERT may carry (max_allowed_packet {self._max_packet:,})"
                    )
                inserted = connection.execute(first_write_wins(self._table, chunk)).rowcount
                warnings = connection.exec_driver_sql("SHOW COUNT(*) WARNINGS").scalar_one()
                if warnings > len(chunk) - inserted:
                    # More warnings than skipped duplicates: something was stored altered.
                    shown = connection.exec_driver_sql("SHOW WARNINGS").all()
                    problems = [w for w in shown if w[1] != DUPLICATE_KEY][:5]
                    raise SinkWriteError(
                        f"MySQL refused a batch of {len(items)} rows for {self._table.name}: "
                        + "; ".join(f"{code} {message}" for _, code, message in problems)
                    )
                skipped += len(chunk) - inserted
            if self._before_commit is not None:
                self._before_commit(_reader(connection), items)
        return skipped

    def _load(self, items: list[Row]) -> int:
        """Bulk-load; the number of rows skipped as stored already."""
        columns, lines = tsv_lines(self._table, items)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=_TMP_DIR, prefix="payscore-", suffix=".tsv"
        ) as file:
            file.write("\n".join(lines))
            file.write("\n")
            file.flush()
            raw = self._engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute(load_data_statement(self._table, columns, file.name))
                skipped = len(items) - cursor.rowcount
                if cursor.warning_count > skipped:
                    # More warnings than skipped duplicates: something was stored altered.
                    cursor.execute("SHOW WARNINGS")
                    problems = [w for w in cursor.fetchall() if w[1] != DUPLICATE_KEY][:5]
                    raw.rollback()
                    raise SinkWriteError(
                        f"MySQL refused a batch of {len(items)} rows for {self._table.name}: "
                        + "; ".join(f"{code} {message}" for _, code, message in problems)
                    )
                if self._before_commit is not None:
                    self._before_commit(_cursor_reader(cursor), items)
                raw.commit()
                return skipped
            except BaseException:
                raw.rollback()
                raise
            finally:
                raw.close()

    def close(self) -> None:
        self._engine.dispose()


def _reader(connection: Connection) -> Read:
    return lambda sql, params: connection.exec_driver_sql(sql, tuple(params)).all()


def _cursor_reader(cursor: Any) -> Read:
    def read(sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        cursor.execute(sql, tuple(params))
        return cursor.fetchall()

    return read


def _position(row: Row) -> tuple[object, object, object]:
    return row.get("topic"), row.get("kafka_partition"), row.get("kafka_offset")


def _bytes_in(row: Row) -> int:
    return sum(len(v) for v in row.values() if isinstance(v, bytes | bytearray | memoryview))


class MySQLSink(DynamicSink[Row]):
    """Writes row dicts (column name -> value) into ``table``; each worker has its own connection.

    Safe to replay: see the module docstring.
    """

    def __init__(self, url: str, table: Table, writing: Writing = Writing()) -> None:
        self._url = url
        self._table = table
        self._writing = writing

    @classmethod
    def for_dead_letters(
        cls,
        url: str,
        table: Table,
        *,
        patience: float = DEFAULT_PATIENCE_SECONDS,
        on_retry: Callable[[], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> MySQLSink:
        """The sink of the dead letters themselves: a letter MySQL refuses is kept without its
        bytes, or bare (:mod:`storage.dead_letters`); it publishes nothing itself."""
        return cls(
            url,
            table,
            Writing(
                refused=without_raw_bytes,
                refused_table=table,
                patience=patience,
                on_retry=on_retry,
                on_failure=on_failure,
            ),
        )

    def build(self, step_id: str, worker_index: int, worker_count: int) -> MySQLSinkPartition:
        local_infile = self._writing.method == "load"
        engine = make_engine(self._url, pool_size=1, local_infile=local_infile)
        out = self._writing.letters_out
        before = self._writing.before_commit
        return MySQLSinkPartition(
            engine,
            self._table,
            self._writing,
            out() if out is not None else None,
            before() if before is not None else None,
        )
