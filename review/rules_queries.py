"""What the rules and lists pages read beyond :class:`rules.store.RulesStore`: a list's entries
searched and paged, the lists' descriptions, one rule's or one version's audit rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from rules.store import StoredEntry
from storage.tables import rule_list_entries, rule_lists, ruleset_audit

PAGE = 100


@dataclass(frozen=True)
class EntriesPage:
    entries: list[StoredEntry]
    next_after: str | None  # the last value shown, when there are more


def entries(
    connection: Connection,
    list_name: str,
    *,
    prefix: str = "",
    after: str | None = None,
    limit: int = PAGE,
) -> EntriesPage:
    """A page of the list's current entries by value, those starting with ``prefix`` (a range
    of the ``(list_name, removed_in, value)`` index), after the value ``after``."""
    e = rule_list_entries
    query = (
        select(e)
        .where(e.c.list_name == list_name, e.c.removed_in.is_(None))
        .order_by(e.c.value)
        .limit(limit + 1)
    )
    if prefix:
        query = query.where(e.c.value.startswith(prefix, autoescape=True))
    if after is not None:
        query = query.where(e.c.value > after)
    rows = connection.execute(query).all()
    shown = [
        StoredEntry(r.value, r.expires_at, r.reason or "", r.added_by, r.added_at, r.added_in)
        for r in rows[:limit]
    ]
    return EntriesPage(shown, shown[-1].value if len(rows) > limit else None)


def descriptions(connection: Connection) -> dict[str, str]:
    rows = connection.execute(select(rule_lists.c.name, rule_lists.c.description))
    return {r.name: r.description or "" for r in rows}


def audit_of(
    connection: Connection,
    *,
    target: str | None = None,
    version: int | None = None,
    limit: int = 50,
) -> list[Any]:
    """The newest audit rows of one rule or list (``target``) or of one ``version``."""
    a = ruleset_audit
    query = select(a).order_by(a.c.id.desc()).limit(limit)
    if target is not None:
        query = query.where(a.c.target == target)
    if version is not None:
        query = query.where(a.c.version == version)
    return list(connection.execute(query))
