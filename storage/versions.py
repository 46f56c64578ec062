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
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select, tuple_, update

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


def fetch_version(connection: Connection, version: str) -> Row[Any] | None:
    """One recorded version's row: its name, lineage, sequence, metadata and pickled artifact
    (and the other columns), or None."""
    return connection.execute(
        select(model_versions).where(model_versions.c.version == version)
    ).first()


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


def record_version(
    connection: Connection,
    row: dict[str, Any],
    *,
    labels_topic: str,
    learned: Sequence[tuple[int, int]],
    learned_implicit: Sequence[str] = (),
    untrusted: Callable[[Row[Any]], str | None] | None = None,
) -> list[tuple[str, str]]:
    """Store a version's row (first write wins) and mark the labels it learned since its parent
    (``(partition, offset)`` on ``labels_topic``, and the implicit negatives
    ``learned_implicit`` by transaction id) as learned by it; call in a transaction, so
    that a version is recorded together with what it learned, or not at all.

    A row holding the version's name or its place in the order (lineage, sequence) that
    ``untrusted`` finds fault with (it returns why, or None for a trusted row) is not this
    version but a row written in its stead (forged, or a copy of another version). It blocks
    the version: ``model_versions`` is insert-only for the flow's account (an audit of every
    version that scored, ``storage/accounts.py``), so the row stays for the admin account to
    remove, and the version is not stored. Its labels are marked as learned by it all the same
    (they were: a replay must not learn them again); the learner's next version is recorded
    as usual. Returns the blocking rows' names and what is wrong with them."""
    mv = model_versions
    same = or_(
        mv.c.version == row["version"],
        and_(mv.c.lineage == row["lineage"], mv.c.sequence == row["sequence"]),
    )
    stored = False
    blocking: list[tuple[str, str]] = []
    for existing in connection.execute(select(mv).where(same)).all():
        why = untrusted(existing) if untrusted is not None else None
        if why is None:
            stored = stored or existing.version == row["version"]
        else:
            blocking.append((existing.version, why))
    if not stored and not blocking:
        connection.execute(mv.insert(), [row])
    if learned:
        fl = fraud_labels
        connection.execute(
            update(fl)
            .where(
                fl.c.topic == labels_topic,
                tuple_(fl.c.kafka_partition, fl.c.kafka_offset).in_(list(learned)),
                fl.c.learned_version.is_(None),
            )
            .values(learned_version=row["version"])
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
            .values(learned_version=row["version"])
        )
    return blocking
