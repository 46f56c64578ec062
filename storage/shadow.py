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

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Row, func, select

from storage.rows import utc_naive
from storage.tables import model_actions, model_candidates, model_versions
from storage.versions import version_key

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
    for table in (model_versions, model_candidates):
        row = connection.execute(select(table).where(table.c.version == version)).first()
        if row is not None:
            return row
    return None


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


def newest_lineage(connection: Connection) -> int:
    """The highest lineage number of any recorded version or candidate (0 when none)."""
    recorded = connection.execute(select(func.max(model_versions.c.lineage))).scalar_one()
    names = connection.execute(select(model_candidates.c.version)).scalars().all()
    return max([recorded or 0, *(version_key(n)[0] for n in names)])
