"""The rows of sign-in limits and their audit: ``review_login_limits`` (a count per account,
client address and trusted device, :mod:`review.throttle`) and ``review_login_audit``
(insert-only: every attempt, lockout and unlock). :mod:`review.signin` uses them in its
transaction; ``python -m review.users unlock`` ends a lock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from review.throttle import Count, Kind
from storage.engine import ConcurrentChangeError
from storage.tables import review_login_audit, review_login_limits

SUCCESS, FAILURE, REFUSED, LOCKOUT, UNLOCK = "success", "failure", "refused", "lockout", "unlock"


def hold(c: Connection, kind: Kind, subject: str) -> Count:
    """The count of ``(kind, subject)``, its row created if missing and locked till commit.

    The row is locked exclusively at once (``SELECT ... FOR UPDATE``): an ``INSERT IGNORE``
    of an existing row would take a shared lock that two attempts then both try to raise (a
    deadlock every time). Only a missing row is added (``INSERT IGNORE``, then locked): two
    attempts that both find it missing may deadlock once, and the loser's transaction runs
    again (:func:`review.signin.attempt`) and finds it. No upsert: ``ON DUPLICATE KEY UPDATE``
    needs the right to update every column it inserts (MariaDB), the key columns included,
    which the review account has not (``storage/accounts.py``)."""
    found = _locked(c, kind, subject)
    if found is None:
        rl = review_login_limits
        c.execute(insert(rl).prefix_with("IGNORE").values(kind=kind, subject=subject, failures=0))
        found = _locked(c, kind, subject)
    if found is None:  # deleted meanwhile (by the admin): the attempt runs again
        raise ConcurrentChangeError(f"the sign-in limit of {kind} {subject!r} vanished")
    return found


def _locked(c: Connection, kind: Kind, subject: str) -> Count | None:
    rl = review_login_limits
    row = c.execute(
        select(rl.c.failures, rl.c.last_failure_at, rl.c.locked_until)
        .where(rl.c.kind == kind, rl.c.subject == subject)
        .with_for_update()
    ).first()
    return None if row is None else Count(row.failures, row.last_failure_at, row.locked_until)


def write(c: Connection, kind: Kind, subject: str, count: Count) -> None:
    rl = review_login_limits
    c.execute(
        update(rl)
        .where(rl.c.kind == kind, rl.c.subject == subject)
        .values(
            failures=count.failures,
            last_failure_at=count.last_failure_at,
            locked_until=count.locked_until,
        )
    )


class Audit:
    """Rows of ``review_login_audit`` about one attempt (insert-only)."""

    def __init__(
        self, c: Connection, name: str, address: str, device: str | None, now: datetime
    ) -> None:
        self._c = c
        # What was typed, bounded and storable whatever it is (a lone surrogate becomes '?').
        typed = name[:64].encode("utf-8", "replace").decode("utf-8")
        self._row: dict[str, Any] = {
            "at": now,
            "name": typed,
            "client_address": address,
            "device": device,
        }

    def __call__(self, outcome: str, detail: str | None, **more: Any) -> None:
        self._c.execute(
            insert(review_login_audit).values(
                **self._row, outcome=outcome, detail=detail and detail[:255], **more
            )
        )


def unlock(c: Connection, kind: Kind, subject: str, *, by: str, now: datetime) -> bool:
    """End the lock of an account or address now (``python -m review.users unlock``); audited.
    False if it was not locked."""
    rl = review_login_limits
    ended = c.execute(
        update(rl)
        .where(rl.c.kind == kind, rl.c.subject == subject, rl.c.locked_until > now)
        .values(failures=0, locked_until=now)
    ).rowcount
    if ended:
        name, address = (subject, "") if kind == "account" else ("", subject)
        Audit(c, name, address[:64], None, now)(UNLOCK, f"{kind} {subject} unlocked by {by}")
    return bool(ended)
