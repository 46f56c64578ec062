"""Model versions in MySQL: their names, their order, and recording one with what it learned.

A version is named ``v<lineage>`` (a pre-trained or retrained root, ``v00002``) or
``v<lineage>.<sequence>`` (the online learner's ``sequence``-th version on that root,
``v00002.000017``). Names are zero-padded for people, but never compared as strings: under the
collation MySQL or MariaDB give a column, ``'v00001.~'`` may sort above or below
``'v00001.000123'``. The order is that of ``(lineage, sequence)`` as numbers, kept in two integer
columns of ``model_versions``; a number that outgrows its padding still sorts right.

>>> version_key("v00002.000017"), version_key("v00002"), version_key("v3.1234567")
((2, 17), (2, 0), (3, 1234567))
>>> sorted(["v00001.1000000", "v00001.999999", "v00002"], key=version_key)
['v00001.999999', 'v00001.1000000', 'v00002']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from storage.tables import fraud_labels, implicit_labels, model_versions

_NAME = re.compile(r"v([0-9]{1,18})(?:\.([0-9]{1,18}))?")


def version_key(version: str) -> tuple[int, int]:
    """``(lineage, sequence)`` of a version name; a root has sequence 0."""
    match = _NAME.fullmatch(version)
    if match is None:
        raise ValueError(
            f"model version must look like 'v00001' or 'v00001.000042'; got {version!r}"
        )
    return int(match[1]), int(match[2] or 0)


def fetch_version(
    connection: Connection, version: str, *, artifact: bool = True
) -> Row[Any] | None:
    """One recorded version's row: its name, lineage, sequence, metadata and pickled artifact
    (and the other columns; without ``artifact``, all but it), or None."""
    mv = model_versions
    columns = list(mv.columns) if artifact else [c for c in mv.columns if c.name != "artifact"]
    return connection.execute(select(*columns).where(mv.c.version == version)).first()


def light_rows(
    connection: Connection,
    after: tuple[int, int] | None,
    *,
    below: tuple[int, int] | None = None,
    limit: int = 256,
) -> list[Row[Any]]:
    """The versions recorded after the place ``after`` (``(lineage, sequence)``; all if None)
    and, with ``below``, before that place: newest first, at most ``limit``, each with its name,
    place and content hash only (no metadata, no artifact), so that a page is light to read
    however large the rows are."""
    mv = model_versions
    query = select(mv.c.version, mv.c.lineage, mv.c.sequence, mv.c.content_hash)
    if after is not None:
        query = query.where(tuple_(mv.c.lineage, mv.c.sequence) > tuple_(*after))
    if below is not None:
        query = query.where(tuple_(mv.c.lineage, mv.c.sequence) < tuple_(*below))
    order = (mv.c.lineage.desc(), mv.c.sequence.desc())
    return list(connection.execute(query.order_by(*order).limit(limit)).all())


def newer_rows(
    connection: Connection,
    after: str | None,
    *,
    below: tuple[int, int] | None = None,
    limit: int = 16,
) -> list[Row[Any]]:
    """The versions recorded after ``after`` (all if None) and, with ``below``, before that
    ``(lineage, sequence)``: newest first, at most ``limit``. Each row has every column but the
    artifact, whose MD5 comes instead (``artifact_md5``), so that a page is light to read."""
    mv = model_versions
    columns = [c for c in mv.columns if c.name != "artifact"]
    query = select(*columns, func.md5(mv.c.artifact).label("artifact_md5"))
    if after is not None:
        lineage, sequence = version_key(after)
        query = query.where(tuple_(mv.c.lineage, mv.c.sequence) > tuple_(lineage, sequence))
    if below is not None:
        query = query.where(tuple_(mv.c.lineage, mv.c.sequence) < tuple_(*below))
    order = (mv.c.lineage.desc(), mv.c.sequence.desc())
    return list(connection.execute(query.order_by(*order).limit(limit)).all())


def labels_name(connection: Connection, version: str) -> bool:
    """True when some label is marked as learned by ``version`` (``learned_version``)."""
    fl, il = fraud_labels, implicit_labels
    found = connection.execute(select(fl.c.topic).where(fl.c.learned_version == version).limit(1))
    if found.first() is not None:
        return True
    implicit = connection.execute(
        select(il.c.transaction_id).where(il.c.learned_version == version).limit(1)
    )
    return implicit.first() is not None


RENAMES = 1_000  # names a version tries before it is given up as unrecordable
ANOTHER_VERSION = "it is another version of the key's (its content hash differs)"


class VersionNotRecordedError(RuntimeError):
    """No free name was found for a version after :data:`RENAMES` tries."""


@dataclass(frozen=True)
class Recorded:
    """Where a version was recorded: ``version``, the name its labels are marked with (the
    name it was published under, or the next free one), and the rows that stood in its way,
    each with what is wrong with it (a row the key does not vouch for) or that it is another
    version (an earlier one of the learner, recorded under this name)."""

    version: str
    blocking: list[tuple[str, str]]


def _holder(
    connection: Connection, row: dict[str, Any], untrusted: Callable[[Row[Any]], str | None] | None
) -> tuple[str, str | None]:
    """Who holds ``row``'s name or place: ``("free", None)``; ``("it", None)`` (this very
    version, by its content hash: written before); or ``(name, why)`` of a row in the way."""
    mv = model_versions
    same = or_(
        mv.c.version == row["version"],
        and_(mv.c.lineage == row["lineage"], mv.c.sequence == row["sequence"]),
    )
    existing = connection.execute(select(mv).where(same)).all()
    if not existing:
        return "free", None
    for held in existing:
        why = untrusted(held) if untrusted is not None else None
        if why is not None:
            return held.version, why
    for held in existing:
        if held.version == row["version"] and held.content_hash == row["content_hash"]:
            return "it", None
    return existing[0].version, ANOTHER_VERSION


def next_free_sequence(connection: Connection, lineage: int, sequence: int) -> int:
    """The lowest sequence above ``sequence`` of ``lineage`` that no row holds (one query, an
    index walk: a block of forged rows costs one pass, not one query a row)."""
    mv = model_versions
    a, b = mv.alias("a"), mv.alias("b")
    gap = connection.execute(
        select(func.min(a.c.sequence + 1))
        .select_from(
            a.outerjoin(b, and_(b.c.lineage == a.c.lineage, b.c.sequence == a.c.sequence + 1))
        )
        .where(a.c.lineage == lineage, a.c.sequence >= sequence, b.c.version.is_(None))
    ).scalar_one()
    return int(gap) if gap is not None else sequence + 1


def record_version(
    connection: Connection,
    row: dict[str, Any],
    *,
    labels_topic: str,
    learned: Sequence[tuple[int, int]],
    learned_implicit: Sequence[str] = (),
    untrusted: Callable[[Row[Any]], str | None] | None = None,
    rename: Callable[[str], dict[str, Any]] | None = None,
) -> Recorded:
    """Store a version's row (a replay of it, same name and content hash, is kept as it is)
        and mark the labels it learned since its parent (``(partition, offset)`` on
        ``labels_topic``, and the implicit negatives ``learned_implicit`` by transaction id) as
        learned by it; call in a transaction, so that a version is recorded together with what it
        learned, or not at all.

        A row holding the version's name or its place in the order (lineage, sequence) that
        ``untrusted`` finds fault with (it returns why, or None for a trusted row), or another
        version under its name, is not this version. It stays (``model_versions`` is insert-only
        for the flow's account, an audit of every version that scored: ``storage/accounts.py``),
        and the version is recorded under the next free name of its lineage instead, ``rename``
        giving its row under that name (signed anew). The labels are marked as learned by the
        name actually stored, checked by reading back the row's content hash: never by a row in
        the way. Without ``rename`` a version in the way is not stored and its labels stay
        unmarked (:class:`VersionNotRecordedError`), and so is a lineage's root (its deltas refer
    to it by name)."""
    blocking: list[tuple[str, str]] = []
    for _ in range(RENAMES):
        holder, why = _holder(connection, row, untrusted)
        if holder == "free":
            try:
                with connection.begin_nested():
                    connection.execute(model_versions.insert(), [row])
            except IntegrityError:
                continue  # written meanwhile: see who holds it now
            holder = "it"
        if holder == "it" and _stored_hash(connection, row["version"]) == row["content_hash"]:
            break
        blocking.append((holder, why or "it does not hold this version"))
        if rename is None or row["sequence"] == 0:  # a root is named by its deltas: no other
            raise VersionNotRecordedError(
                f"version {row['version']} is not recorded: {holder} stands in its place ({why})"
            )
        lineage, sequence = row["lineage"], row["sequence"]
        row = rename(version_name(lineage, next_free_sequence(connection, lineage, sequence)))
    else:
        raise VersionNotRecordedError(
            f"no free name for a version of lineage {row['lineage']} after {RENAMES} tries"
        )
    version = row["version"]
    if learned:
        fl = fraud_labels
        connection.execute(
            update(fl)
            .where(
                fl.c.topic == labels_topic,
                tuple_(fl.c.kafka_partition, fl.c.kafka_offset).in_(list(learned)),
                fl.c.learned_version.is_(None),
            )
            .values(learned_version=version)
        )
    if learned_implicit:
        il = implicit_labels
        connection.execute(
            update(il)
            .where(
                il.c.kind == "implicit",
                il.c.transaction_id.in_(list(learned_implicit)),
                il.c.learned_version.is_(None),
            )
            .values(learned_version=version)
        )
    return Recorded(version, blocking)


def _stored_hash(connection: Connection, version: str) -> str | None:
    mv = model_versions
    return connection.execute(
        select(mv.c.content_hash).where(mv.c.version == version)
    ).scalar_one_or_none()


def version_name(lineage: int, sequence: int) -> str:
    """The name of the version at ``(lineage, sequence)``: ``v00002``, ``v00002.000017``.

    >>> version_name(2, 17), version_name(2, 0), version_key(version_name(3, 1234567))
    ('v00002.000017', 'v00002', (3, 1234567))
    """
    return f"v{lineage:05d}" if sequence == 0 else f"v{lineage:05d}.{sequence:06d}"
