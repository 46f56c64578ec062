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
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, or_, select, tuple_, update

from storage.tables import fraud_labels, model_versions

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
    """One recorded version's metadata and pickled artifact, or None."""
    mv = model_versions
    return connection.execute(
        select(mv.c.metadata, mv.c.artifact).where(mv.c.version == version)
    ).first()


def newest_after(
    connection: Connection, after: str | None, *, exclude: Collection[str] = ()
) -> Row[Any] | None:
    """The newest recorded version after ``after`` (any version if None), leaving out the
    versions in ``exclude``: its name, metadata and pickled artifact, or None."""
    mv = model_versions
    query = select(mv.c.version, mv.c.metadata, mv.c.artifact)
    if exclude:
        query = query.where(mv.c.version.not_in(sorted(exclude)))
    if after is not None:
        lineage, sequence = version_key(after)
        query = query.where(
            or_(mv.c.lineage > lineage, and_(mv.c.lineage == lineage, mv.c.sequence > sequence))
        )
    return connection.execute(
        query.order_by(mv.c.lineage.desc(), mv.c.sequence.desc()).limit(1)
    ).first()


def record_version(
    connection: Connection,
    row: dict[str, Any],
    *,
    labels_topic: str,
    learned: Sequence[tuple[int, int]],
) -> None:
    """Store a version's row (first write wins) and mark the labels it learned since its parent
    (``(partition, offset)`` on ``labels_topic``) as learned by it; call in a transaction, so
    that a version is recorded together with what it learned, or not at all."""
    mv = model_versions
    exists = connection.execute(select(mv.c.version).where(mv.c.version == row["version"])).first()
    if exists is None:
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
