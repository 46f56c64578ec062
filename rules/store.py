"""Rules and lists in MySQL: the one API through which the review app and ``python -m rules``
change them, and through which the flow and the backtest read them.

**Every change is one transaction that makes one new ruleset version** (``ruleset_versions``: the
whole ruleset, every rule's text and status and every list's packed form) **and one audit row**
(``ruleset_audit``: who, when, what, the diff). Writers take the newest version row ``FOR UPDATE``,
so two changes at once are ordered, never merged; a clash on the first version is retried.

**Nothing malformed is stored.** A rule's text is parsed and type-checked against the lists of
the version it goes into before anything is written (:func:`rules.syntax.parse`), and stored in
its canonical form; ids, statuses, list names, kinds and entries are checked the same way. A
refused change raises ``ValueError`` (:class:`rules.syntax.RuleSyntaxError` for a rule) with the
reason, and writes nothing.

**Lists** keep every entry ever, with the versions that added and removed it, so a list at any
version can be rebuilt; each change of a list also writes its packed form for the new version
(``rule_list_blobs``), built from the previous packed form and the change, which is what the flow
loads. Adding a value that is on the list already replaces its entry (new expiry, reason).

**Rollback** to version R makes a new version whose rules are R's (rules added since are removed)
and whose lists hold what they held at R (lists created since keep their entries; no rule of R
names them). Its diff is in the audit as any other change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rules.lists import (
    CsvRead,
    ListIndex,
    check_kind,
    check_list_name,
    check_reason,
    check_value,
    pack,
    read_csv,
    unpack,
    unpack_entries,
)
from rules.ruleset import RuleSpec, check_new_rule_id, check_status
from rules.syntax import parse, to_text
from storage.engine import DUPLICATE_KEY, ConcurrentChangeError, error_code, retry_transient
from storage.tables import (
    fraud_rules,
    rule_list_blobs,
    rule_list_entries,
    rule_lists,
    ruleset_audit,
    ruleset_versions,
)

ACTOR = re.compile(r"\A[A-Za-z0-9_.:@\-]{1,64}\Z")
EXAMPLES = 20  # values named in a diff; the rest are counted
CHUNK = 5000


def check_actor(actor: str) -> str:
    if not isinstance(actor, str) or not ACTOR.match(actor):
        raise ValueError(
            "who makes a change is 1 to 64 characters of A-Z a-z 0-9 _ . : @ -; got "
            f"{str(actor)[:70]!r}"
        )
    return actor


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ListRef:
    kind: str
    blob: int  # the version whose rule_list_blobs rows hold this list's packed form
    entries: int


@dataclass(frozen=True)
class Snapshot:
    """A whole ruleset version."""

    version: int
    rules: tuple[RuleSpec, ...] = ()
    lists: dict[str, ListRef] = field(default_factory=dict)
    created_at: datetime | None = None
    created_by: str = ""
    change: str = ""

    def kinds(self) -> dict[str, str]:
        return {name: ref.kind for name, ref in self.lists.items()}

    def rule(self, rule_id: str) -> RuleSpec | None:
        return next((r for r in self.rules if r.rule_id == rule_id), None)


@dataclass(frozen=True)
class NewEntry:
    value: str
    expires_at: datetime | None = None  # aware or naive UTC
    reason: str = ""


@dataclass(frozen=True)
class StoredRule:
    rule_id: str
    text: str
    action: str
    priority: int
    status: str
    updated_by: str
    updated_at: datetime
    version: int


@dataclass(frozen=True)
class StoredEntry:
    value: str
    expires_at: datetime | None
    reason: str
    added_by: str
    added_at: datetime
    added_in: int


@dataclass(frozen=True)
class ImportResult:
    version: int | None  # None: nothing imported
    imported: int
    bad_count: int
    report: str  # each bad row with its line number (bounded)


class ImportRefusedError(ValueError):
    """A CSV file with bad rows, refused whole; the message lists them with their lines."""


@dataclass(frozen=True)
class VersionDiff:
    """What changed from version ``since`` to version ``until``."""

    since: int
    until: int
    rules_added: list[RuleSpec]
    rules_removed: list[RuleSpec]
    rules_changed: list[tuple[RuleSpec, RuleSpec]]  # (before, after)
    lists: dict[str, dict[str, Any]]  # name -> added, removed (counts), examples

    def lines(self) -> list[str]:
        out = [f"from version {self.since} to {self.until}:"]
        out += [f"+ rule {r.rule_id} [{r.status}]: {r.text}" for r in self.rules_added]
        out += [f"- rule {r.rule_id} [{r.status}]: {r.text}" for r in self.rules_removed]
        for before, after in self.rules_changed:
            out.append(f"~ rule {after.rule_id}:")
            if before.text != after.text:
                out += [f"    - {before.text}", f"    + {after.text}"]
            if before.status != after.status:
                out.append(f"    status {before.status} -> {after.status}")
        for name, change in sorted(self.lists.items()):
            out.append(
                f"~ list @{name}: +{change['added']} -{change['removed']} "
                f"~{change['replaced']}"
                + (f" (e.g. {', '.join(change['examples'])})" if change["examples"] else "")
            )
        return out if len(out) > 1 else [*out, "  nothing"]


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(
        version=row.version,
        rules=tuple(RuleSpec(r["rule_id"], r["text"], r["status"]) for r in row.rules),
        lists={n: ListRef(v["kind"], v["blob"], v["entries"]) for n, v in row.lists.items()},
        created_at=row.created_at,
        created_by=row.created_by,
        change=row.change,
    )


def _naive_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _posix(moment: datetime | None) -> float | None:
    return None if moment is None else moment.replace(tzinfo=UTC).timestamp()


Work = Callable[[Connection, int, Snapshot], tuple[str, dict[str, Any], Snapshot]]


class RulesStore:
    """Rules and lists in the database of ``engine`` (see the module)."""

    def __init__(self, engine: Engine, *, patience: float = 30.0) -> None:
        self.engine = engine
        self.patience = patience

    # ------------------------------------------------------------------ reads

    def newest_version(self, connection: Connection | None = None) -> int:
        """The newest ruleset version (0: none yet): one look-up of the primary key."""
        query = select(func.max(ruleset_versions.c.version))
        if connection is not None:
            return int(connection.execute(query).scalar() or 0)
        with self.engine.connect() as c:
            return int(c.execute(query).scalar() or 0)

    def snapshot(self, version: int | None = None) -> Snapshot:
        """A ruleset version (the newest without ``version``); version 0 is the empty one."""
        with self.engine.connect() as c:
            return self._snapshot(c, version)

    def _snapshot(self, c: Connection, version: int | None, *, lock: bool = False) -> Snapshot:
        query = select(ruleset_versions)
        if version is None:
            query = query.order_by(ruleset_versions.c.version.desc()).limit(1)
        else:
            query = query.where(ruleset_versions.c.version == version)
        if lock:
            query = query.with_for_update()
        row = c.execute(query).first()
        if row is None:
            if version:
                raise ValueError(f"there is no ruleset version {version}")
            return Snapshot(0)
        return _snapshot(row)

    def rules(self) -> list[StoredRule]:
        with self.engine.connect() as c:
            rows = c.execute(select(fraud_rules).order_by(fraud_rules.c.rule_id)).all()
        return [
            StoredRule(
                r.rule_id,
                r.text,
                r.action,
                r.priority,
                r.status,
                r.updated_by,
                r.updated_at,
                r.version,
            )
            for r in rows
        ]

    def entries(
        self, list_name: str, *, limit: int = 100, after: str | None = None
    ) -> list[StoredEntry]:
        """A page of a list's current entries, by value (``after``: the last value of the page
        before); a ValueError for a list that does not exist (it was an empty page)."""
        self._existing_list(self.snapshot(), list_name)
        e = rule_list_entries
        query = (
            select(e)
            .where(e.c.list_name == list_name, e.c.removed_in.is_(None))
            .order_by(e.c.value)
            .limit(min(max(limit, 1), 10_000))
        )
        if after is not None:
            query = query.where(e.c.value > after)
        with self.engine.connect() as c:
            rows = c.execute(query).all()
        return [
            StoredEntry(r.value, r.expires_at, r.reason or "", r.added_by, r.added_at, r.added_in)
            for r in rows
        ]

    def versions(self, limit: int = 50) -> list[Snapshot]:
        """The newest ``limit`` versions, newest first."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(ruleset_versions).order_by(ruleset_versions.c.version.desc()).limit(limit)
            ).all()
        return [_snapshot(r) for r in rows]

    def audit(self, limit: int = 50) -> list[Any]:
        with self.engine.connect() as c:
            return list(
                c.execute(select(ruleset_audit).order_by(ruleset_audit.c.id.desc()).limit(limit))
            )

    def list_parts(self, connection: Connection, name: str, version: int) -> list[bytes]:
        b = rule_list_blobs
        parts = connection.execute(
            select(b.c.data).where(b.c.list_name == name, b.c.version == version).order_by(b.c.part)
        ).scalars()
        found = [bytes(p) for p in parts]
        if not found:
            raise ValueError(f"list @{name}: no packed form stored for version {version}")
        return found

    def stream_parts(self, connection: Connection, name: str, version: int) -> Iterator[bytes]:
        """The parts of a list's packed form, fetched one at a time (one primary-key read each):
        a process loading a large list holds one part (at most 4 MB) of it at once."""
        b = rule_list_blobs
        numbers = (
            connection.execute(
                select(b.c.part)
                .where(b.c.list_name == name, b.c.version == version)
                .order_by(b.c.part)
            )
            .scalars()
            .all()
        )
        if not numbers:
            raise ValueError(f"list @{name}: no packed form stored for version {version}")

        def parts() -> Iterator[bytes]:
            for number in numbers:
                data = connection.execute(
                    select(b.c.data).where(
                        b.c.list_name == name, b.c.version == version, b.c.part == number
                    )
                ).scalar_one()
                yield data if isinstance(data, bytes) else bytes(data)
                del data

        return parts()

    def load(
        self, version: int | None = None, cache: dict[tuple[str, int], ListIndex] | None = None
    ) -> tuple[Snapshot, dict[str, ListIndex]]:
        """A version and its lists as a process holds them; ``cache`` (by list and packed
        version) spares lists that did not change."""
        cache = cache if cache is not None else {}
        with self.engine.connect() as c:
            snap = self._snapshot(c, version)
            lists = {}
            for name, ref in snap.lists.items():
                key = (name, ref.blob)
                if key not in cache:
                    cache[key] = unpack(name, self.stream_parts(c, name, ref.blob))
                lists[name] = cache[key]
        return snap, lists

    def diff(self, since: int, until: int | None = None) -> VersionDiff:
        with self.engine.connect() as c:
            a, b = self._snapshot(c, since or None), self._snapshot(c, until)
            if since == 0:
                a = Snapshot(0)
            if a.version > b.version:  # the lists' counts assume it: "+0 -0" for 2 removed
                raise ValueError(
                    f"a diff goes from an older version to a newer one; got from {a.version} "
                    f"to {b.version} (swap them)"
                )
            lists = {}
            e = rule_list_entries
            for name in sorted(set(a.lists) | set(b.lists)):
                if a.lists.get(name) == b.lists.get(name):
                    continue
                added_rows = and_(
                    e.c.list_name == name,
                    e.c.added_in > a.version,
                    e.c.added_in <= b.version,
                    (e.c.removed_in.is_(None)) | (e.c.removed_in > b.version),
                )
                removed_rows = and_(
                    e.c.list_name == name,
                    e.c.added_in <= a.version,
                    e.c.removed_in > a.version,
                    e.c.removed_in <= b.version,
                )
                added = c.execute(select(func.count()).where(added_rows)).scalar() or 0
                removed = c.execute(select(func.count()).where(removed_rows)).scalar() or 0
                # a value removed and added again (a new expiry or reason) counts as replaced
                again = e.alias("again")
                replaced = (
                    c.execute(
                        select(func.count()).where(
                            removed_rows,
                            select(again.c.id)
                            .where(
                                again.c.list_name == name,
                                again.c.value == e.c.value,
                                again.c.added_in > a.version,
                                again.c.added_in <= b.version,
                                (again.c.removed_in.is_(None)) | (again.c.removed_in > b.version),
                            )
                            .exists(),
                        )
                    ).scalar()
                    or 0
                )
                examples = c.execute(
                    select(e.c.value).where(added_rows).order_by(e.c.value).limit(EXAMPLES)
                ).scalars()
                lists[name] = {
                    "added": int(added - replaced),
                    "removed": int(removed - replaced),
                    "replaced": int(replaced),
                    "examples": list(examples),
                }
        return _rules_diff(a, b, lists)

    # ------------------------------------------------------------------ writes

    def _change(self, actor: str, action: str, target: str, work: Work) -> int:
        check_actor(actor)

        def transaction() -> int:
            try:
                with self.engine.begin() as c:
                    previous = self._snapshot(c, None, lock=True)
                    version = previous.version + 1
                    change, diff, after = work(c, version, previous)
                    now = utc_now()
                    c.execute(
                        insert(ruleset_versions).values(
                            version=version,
                            created_at=now,
                            created_by=actor,
                            change=change[:255],
                            rules=[
                                {"rule_id": r.rule_id, "text": r.text, "status": r.status}
                                for r in sorted(after.rules, key=lambda r: r.rule_id.encode())
                            ],
                            lists={
                                n: {"kind": ref.kind, "blob": ref.blob, "entries": ref.entries}
                                for n, ref in sorted(after.lists.items())
                            },
                        )
                    )
                    c.execute(
                        insert(ruleset_audit).values(
                            version=version,
                            at=now,
                            actor=actor,
                            action=action,
                            target=target[:128],
                            diff=diff,
                        )
                    )
                    return version
            except IntegrityError as exc:
                # Two changes at once on an empty table (nothing to lock yet), or one that waited
                # for the newest row while the other added the next: the second one runs again.
                if error_code(exc) == DUPLICATE_KEY:
                    raise ConcurrentChangeError("another change took the version number") from exc
                raise

        return retry_transient(transaction, patience=self.patience, what=f"recording {action}")

    def add_rule(self, rule_id: str, text: str, *, by: str, status: str = "shadow") -> int:
        """A new rule (in shadow unless said otherwise); the new version."""
        check_new_rule_id(rule_id)
        check_status(status)

        def work(
            c: Connection, version: int, before: Snapshot
        ) -> tuple[str, dict[str, Any], Snapshot]:
            rule = parse(text, before.kinds())
            if before.rule(rule_id) is not None:
                raise ValueError(f"rule {rule_id} exists already; edit it instead")
            canonical = to_text(rule)
            now = utc_now()
            c.execute(
                insert(fraud_rules).values(
                    rule_id=rule_id,
                    text=canonical,
                    action=rule.action,
                    priority=rule.priority,
                    status=status,
                    created_by=by,
                    created_at=now,
                    updated_by=by,
                    updated_at=now,
                    version=version,
                )
            )
            spec = RuleSpec(rule_id, canonical, status)
            after = Snapshot(version, (*before.rules, spec), before.lists)
            return (
                f"add rule {rule_id} ({status})",
                {"rule": rule_id, "before": None, "after": _spec(spec)},
                after,
            )

        return self._change(by, "add_rule", rule_id, work)

    def edit_rule(self, rule_id: str, text: str, *, by: str) -> int:
        """A rule's new text (its status stays); the new version."""

        def work(
            c: Connection, version: int, before: Snapshot
        ) -> tuple[str, dict[str, Any], Snapshot]:
            old = self._existing(before, rule_id)
            rule = parse(text, before.kinds())
            spec = RuleSpec(rule_id, to_text(rule), old.status)
            c.execute(
                update(fraud_rules)
                .where(fraud_rules.c.rule_id == rule_id)
                .values(
                    text=spec.text,
                    action=rule.action,
                    priority=rule.priority,
                    updated_by=by,
                    updated_at=utc_now(),
                    version=version,
                )
            )
            after = Snapshot(version, _replace(before.rules, spec), before.lists)
            return (
                f"edit rule {rule_id}",
                {"rule": rule_id, "before": _spec(old), "after": _spec(spec)},
                after,
            )

        return self._change(by, "edit_rule", rule_id, work)

    def set_status(self, rule_id: str, status: str, *, by: str) -> int:
        """Activate, shadow or disable a rule; the new version."""
        check_status(status)

        def work(
            c: Connection, version: int, before: Snapshot
        ) -> tuple[str, dict[str, Any], Snapshot]:
            old = self._existing(before, rule_id)
            spec = RuleSpec(rule_id, old.text, status)
            c.execute(
                update(fraud_rules)
                .where(fraud_rules.c.rule_id == rule_id)
                .values(status=status, updated_by=by, updated_at=utc_now(), version=version)
            )
            after = Snapshot(version, _replace(before.rules, spec), before.lists)
            return (
                f"rule {rule_id}: {old.status} -> {status}",
                {"rule": rule_id, "before": _spec(old), "after": _spec(spec)},
                after,
            )

        return self._change(by, "set_status", rule_id, work)

    def create_list(self, name: str, kind: str, *, by: str, description: str = "") -> int:
        check_list_name(name)
        check_kind(kind)
        check_reason(description)

        def work(
            c: Connection, version: int, before: Snapshot
        ) -> tuple[str, dict[str, Any], Snapshot]:
            if name in before.lists:
                raise ValueError(f"list @{name} exists already")
            c.execute(
                insert(rule_lists).values(
                    name=name,
                    kind=kind,
                    description=description or None,
                    created_by=by,
                    created_at=utc_now(),
                )
            )
            self._write_parts(c, name, version, pack(kind, {}))
            after = Snapshot(
                version, before.rules, {**before.lists, name: ListRef(kind, version, 0)}
            )
            return f"create list @{name} ({kind})", {"list": name, "kind": kind}, after

        return self._change(by, "create_list", name, work)

    def add_entries(
        self, list_name: str, entries: Sequence[NewEntry], *, by: str, action: str = "add_entries"
    ) -> int:
        """Add (or replace) entries of a list, all or none; the new version."""
        if not entries:
            raise ValueError("no entries to add")
        seen: set[str] = set()
        for entry in entries:
            if entry.value in seen:
                raise ValueError(f"{entry.value[:70]!r} is given twice")
            seen.add(entry.value)
            check_reason(entry.reason)

        def work(
            c: Connection, version: int, before: Snapshot
        ) -> tuple[str, dict[str, Any], Snapshot]:
            ref = self._existing_list(before, list_name)
            for entry in entries:
                try:
                    check_value(ref.kind, entry.value)
                except ValueError as exc:
                    raise ValueError(f"list @{list_name} ({ref.kind}): {exc}") from None
            current = unpack_entries(self.list_parts(c, list_name, ref.blob))
            replaced = [e.value for e in entries if e.value in current]
            self._remove_rows(c, list_name, replaced, version, by)
            now = utc_now()
            rows = [
                {
                    "list_name": list_name,
                    "value": e.value,
                    "expires_at": _naive_utc(e.expires_at),
                    "reason": e.reason or None,
                    "added_by": by,
                    "added_at": now,
                    "added_in": version,
                }
                for e in entries
            ]
            for start in range(0, len(rows), CHUNK):
                c.execute(insert(rule_list_entries), rows[start : start + CHUNK])
            for e in entries:
                current[e.value] = _posix(_naive_utc(e.expires_at))
            self._write_parts(c, list_name, version, pack(ref.kind, current))
            after = Snapshot(
                version,
                before.rules,
                {**before.lists, list_name: ListRef(ref.kind, version, len(current))},
            )
            diff = {
                "list": list_name,
                "added": len(entries) - len(replaced),
                "replaced": len(replaced),
                "examples": [e.value for e in entries[:EXAMPLES]],
            }
            return f"@{list_name}: {len(entries)} entries added or replaced", diff, after

        return self._change(by, action, list_name, work)

    def remove_entries(self, list_name: str, values: Sequence[str], *, by: str) -> int:
        """Remove entries of a list; every value must be on it. The new version."""
        if not values:
            raise ValueError("no entries to remove")

        def work(
            c: Connection, version: int, before: Snapshot
        ) -> tuple[str, dict[str, Any], Snapshot]:
            ref = self._existing_list(before, list_name)
            current = unpack_entries(self.list_parts(c, list_name, ref.blob))
            absent = [v for v in values if v not in current]
            if absent:
                shown = ", ".join(repr(v[:64]) for v in absent[:5])
                raise ValueError(
                    f"not on @{list_name}: {shown}"
                    + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
                )
            self._remove_rows(c, list_name, list(values), version, by)
            for v in values:
                current.pop(v, None)
            self._write_parts(c, list_name, version, pack(ref.kind, current))
            after = Snapshot(
                version,
                before.rules,
                {**before.lists, list_name: ListRef(ref.kind, version, len(current))},
            )
            diff = {
                "list": list_name,
                "removed": len(set(values)),
                "examples": list(values[:EXAMPLES]),
            }
            return f"@{list_name}: {len(set(values))} entries removed", diff, after

        return self._change(by, "remove_entries", list_name, work)

    def import_csv(
        self, list_name: str, text: str, *, by: str, skip_bad: bool = False
    ) -> ImportResult:
        """Entries from a CSV file (:func:`rules.lists.read_csv`): refused whole when any row is bad
        (:class:`ImportRefusedError` lists them), or with ``skip_bad`` the good rows imported and
        the bad ones reported."""
        snap = self.snapshot()
        ref = self._existing_list(snap, list_name)
        read: CsvRead = read_csv(text, ref.kind)
        if read.bad_count and not skip_bad:
            raise ImportRefusedError(
                f"{read.bad_count} bad rows, nothing imported (fix them, or --skip-bad to import "
                f"the {len(read.entries)} good ones):\n{read.report()}"
            )
        if not read.entries:
            return ImportResult(None, 0, read.bad_count, read.report())
        version = self.add_entries(
            list_name,
            [NewEntry(e.value, e.expires_at, e.reason) for e in read.entries],
            by=by,
            action="import_csv",
        )
        return ImportResult(version, len(read.entries), read.bad_count, read.report())

    def rollback(self, to_version: int, *, by: str) -> int:
        """A new version equal to ``to_version`` (see the module); the new version."""

        def work(
            c: Connection, version: int, before: Snapshot
        ) -> tuple[str, dict[str, Any], Snapshot]:
            if not 1 <= to_version < before.version:
                raise ValueError(
                    f"can roll back to versions 1 to {before.version - 1}; got {to_version}"
                )
            target = self._snapshot(c, to_version)
            now = utc_now()
            c.execute(delete(fraud_rules))
            for spec in target.rules:
                rule = parse(spec.text, target.kinds(), stored=True)
                c.execute(
                    insert(fraud_rules).values(
                        rule_id=spec.rule_id,
                        text=spec.text,
                        action=rule.action,
                        priority=rule.priority,
                        status=spec.status,
                        created_by=by,
                        created_at=now,
                        updated_by=by,
                        updated_at=now,
                        version=version,
                    )
                )
            lists = dict(before.lists)
            e = rule_list_entries
            for name, ref in target.lists.items():
                if before.lists.get(name) == ref:
                    continue
                c.execute(
                    update(e)
                    .where(
                        e.c.list_name == name, e.c.removed_in.is_(None), e.c.added_in > to_version
                    )
                    .values(removed_in=version, removed_by=by, removed_at=now)
                )
                restored = select(
                    e.c.list_name,
                    e.c.value,
                    e.c.expires_at,
                    e.c.reason,
                    e.c.added_by,
                    e.c.added_at,
                    bindparam("v", version),
                ).where(
                    e.c.list_name == name,
                    e.c.added_in <= to_version,
                    e.c.removed_in > to_version,
                    e.c.removed_in < version,
                )
                c.execute(
                    insert(e).from_select(
                        [
                            "list_name",
                            "value",
                            "expires_at",
                            "reason",
                            "added_by",
                            "added_at",
                            "added_in",
                        ],
                        restored,
                    )
                )
                lists[name] = ref
            after = Snapshot(version, target.rules, lists)
            diff = _rules_diff(before, after, {}).__dict__
            summary = {
                "to": to_version,
                "rules_added": [r.rule_id for r in diff["rules_added"]],
                "rules_removed": [r.rule_id for r in diff["rules_removed"]],
                "rules_changed": [b.rule_id for b, _ in diff["rules_changed"]],
                "lists_restored": sorted(
                    n for n in target.lists if before.lists.get(n) != target.lists[n]
                ),
            }
            return f"rollback to version {to_version}", summary, after

        return self._change(by, "rollback", f"version {to_version}", work)

    # ------------------------------------------------------------------ helpers

    def _existing(self, snap: Snapshot, rule_id: str) -> RuleSpec:
        spec = snap.rule(rule_id)
        if spec is None:
            raise ValueError(f"there is no rule {rule_id[:64]!r}")
        return spec

    def _existing_list(self, snap: Snapshot, name: str) -> ListRef:
        ref = snap.lists.get(name)
        if ref is None:
            known = ", ".join(f"@{n}" for n in sorted(snap.lists)[:10]) or "none"
            raise ValueError(f"there is no list @{name[:64]}; known: {known}")
        return ref

    def _write_parts(self, c: Connection, name: str, version: int, parts: list[bytes]) -> None:
        for i, data in enumerate(parts):
            c.execute(
                insert(rule_list_blobs).values(list_name=name, version=version, part=i, data=data)
            )

    def _remove_rows(
        self, c: Connection, name: str, values: Iterable[str], version: int, by: str
    ) -> None:
        values = list(values)
        e = rule_list_entries
        now = utc_now()
        for start in range(0, len(values), 1000):
            c.execute(
                update(e)
                .where(
                    e.c.list_name == name,
                    e.c.removed_in.is_(None),
                    e.c.value.in_(values[start : start + 1000]),
                )
                .values(removed_in=version, removed_by=by, removed_at=now)
            )


def _spec(spec: RuleSpec) -> dict[str, str]:
    return {"text": spec.text, "status": spec.status}


def _replace(rules: Iterable[RuleSpec], spec: RuleSpec) -> tuple[RuleSpec, ...]:
    return tuple(spec if r.rule_id == spec.rule_id else r for r in rules)


def _rules_diff(a: Snapshot, b: Snapshot, lists: dict[str, dict[str, Any]]) -> VersionDiff:
    before = {r.rule_id: r for r in a.rules}
    after = {r.rule_id: r for r in b.rules}
    return VersionDiff(
        a.version,
        b.version,
        [after[i] for i in sorted(after.keys() - before.keys())],
        [before[i] for i in sorted(before.keys() - after.keys())],
        [
            (before[i], after[i])
            for i in sorted(before.keys() & after.keys())
            if before[i] != after[i]
        ],
        lists,
    )
