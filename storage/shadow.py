"""Shadow scoring and promotions in MySQL: candidates, the operators' actions, and the challenger.

- ``model_candidates`` holds versions that may shadow the champion but never score by
  themselves: a retrain awaiting approval, or one the champion/challenger gate refused
  (``python -m model_state.retrain --candidate``).
- ``model_actions`` records every decision: ``shadow`` (a version starts scoring beside the
  champion), ``unshadow`` (it stops), ``promote`` (a version becomes the champion, recorded
  again as a new lineage so that every process adopts it; rolling back is promoting an older
  version). At most one challenger shadows at a time: the version of the latest action, if that
  action is ``shadow``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Row, or_, select, tuple_

from storage.rows import utc_naive
from storage.tables import model_actions, model_candidates, model_versions
from storage.versions import fetch_version, version_key

Action = Literal["shadow", "unshadow", "promote"]


def challenger(connection: Connection) -> tuple[str, datetime] | None:
    """The version shadowing now and when its shadow began (naive UTC), or None."""
    ma = model_actions
    latest = connection.execute(
        select(ma.c.action, ma.c.version, ma.c.decided_at).order_by(ma.c.id.desc()).limit(1)
    ).first()
    if latest is None or latest.action != "shadow":
        return None
    return latest.version, latest.decided_at


def record_action(
    connection: Connection,
    action: Action,
    version: str,
    *,
    by: str,
    note: str | None = None,
    promoted_as: str | None = None,
) -> None:
    connection.execute(
        model_actions.insert(),
        [
            {
                "action": action,
                "version": version,
                "decided_by": by,
                "decided_at": utc_naive(datetime.now(UTC)),
                "note": note,
                "promoted_as": promoted_as,
            }
        ],
    )


def fetch_any(connection: Connection, version: str) -> Row[Any] | None:
    """A recorded version or a candidate: its row (name, metadata, pickled artifact and the
    other columns), or None."""
    return fetch_any_of(connection, version)[0]


def fetch_any_of(connection: Connection, version: str) -> tuple[Row[Any] | None, str]:
    """:func:`fetch_any`, and the name of the table the row is in (empty when none is)."""
    for table in (model_versions, model_candidates):
        row = connection.execute(select(table).where(table.c.version == version)).first()
        if row is not None:
            return row, table.name
    return None, ""


def record_candidate(
    connection: Connection, metadata: dict[str, Any], payload: bytes, verdict: str
) -> None:
    """Keep a version (its metadata as a JSON-able dict) as a candidate."""
    connection.execute(
        model_candidates.insert(),
        [
            {
                "version": metadata["version"],
                "created_at": utc_naive(datetime.fromisoformat(metadata["created_at"])),
                "origin": metadata["origin"],
                "content_hash": metadata["content_hash"],
                "verdict": verdict,
                "metadata": metadata,
                "artifact": payload,
            }
        ],
    )


def newest_lineage(connection: Connection, untrusted: Callable[[Row[Any]], str | None]) -> int:
    """The highest lineage number of any recorded version or candidate that ``untrusted``
    finds no fault with (it returns why a row is not a version the key vouches for, or None);
    0 when none. A refused row, however high its ``lineage`` or name, names nothing: the rows
    are walked from the highest lineage down to the first trusted one (an operator's command,
    not the flow: the walk is not bounded)."""
    mv = model_versions
    best = 0
    below: tuple[int, int] | None = None
    while True:
        query = select(mv.c.version, mv.c.lineage, mv.c.sequence)
        if below is not None:
            query = query.where(tuple_(mv.c.lineage, mv.c.sequence) < tuple_(*below))
        page = connection.execute(
            query.order_by(mv.c.lineage.desc(), mv.c.sequence.desc()).limit(256)
        ).all()
        found = next(
            (
                light.lineage
                for light in page
                if (row := fetch_version(connection, light.version)) is not None
                and untrusted(row) is None
            ),
            None,
        )
        if found is not None:
            best = found
            break
        if len(page) < 256:
            break
        below = (page[-1].lineage, page[-1].sequence)
    for row in connection.execute(select(model_candidates)).all():
        try:
            lineage = version_key(row.version)[0]
        except ValueError:
            continue  # no version's name: refused below anyway
        if lineage > best and untrusted(row) is None:
            best = lineage
    return best


def free_lineage(connection: Connection, lineage: int) -> int:
    """The lowest lineage number from ``lineage`` up that no row of ``model_versions`` holds
    (by its lineage or its name) and no candidate is named after: where a new root may be
    recorded, whatever rows were forged at the next numbers."""
    mv, mc = model_versions, model_candidates
    while True:
        name = f"v{lineage:05d}"
        taken = (
            connection.execute(
                select(mv.c.version)
                .where(or_(mv.c.lineage == lineage, mv.c.version == name))
                .limit(1)
            ).first()
            or connection.execute(select(mc.c.version).where(mc.c.version == name)).first()
        )
        if taken is None:
            return lineage
        lineage += 1
