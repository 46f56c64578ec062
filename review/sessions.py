"""Sessions of the review application, kept in MySQL and checked on every request.

The cookie (signed, :mod:`review.security`) carries a random session token; MySQL keeps a row
of ``review_sessions`` under the token's SHA-256 (a copy of the table opens no session). A
request is served only if its session's row says it is live (:func:`why_ended`):

- not ended: signing out ends it (``logout``), and so does signing in again over it
  (``replaced``);
- the user still exists (``removed``) with the role and password hash it signed in with
  (``credentials``): ``python -m review.users add`` that changes either ends every session of
  the user at its next request, however it was changed;
- younger than :data:`SESSION.absolute` (``expired``), and used within :data:`SESSION.idle`
  (``idle``).

So a cookie saved before any of these is refused: it names a row that says why. A session
table rather than a per-user generation number: it ends one session (a sign-out on one browser)
without the others, keeps the idle time per session, and is itself the record of who was
signed in from where and when.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Connection, insert, select, update

from review.users import User
from storage.tables import review_sessions, review_users


class SessionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    idle: timedelta  # a session unused this long ends
    absolute: timedelta  # and any session this long after sign-in


# PCI DSS v4.0 8.2.8: re-authenticate after 15 minutes idle; a working day at most.
SESSION = SessionPolicy(idle=timedelta(minutes=15), absolute=timedelta(hours=8))


def session_id(token: str) -> str:
    """The row id of the session whose cookie carries ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def credentials(role: str, password_hash: str) -> str:
    """What a session remembers of its user: a change to either ends it."""
    return hashlib.sha256(f"{role}\0{password_hash}".encode()).hexdigest()


def why_ended(row: Any, now: datetime, policy: SessionPolicy) -> str | None:
    """Why the session of ``row`` (a ``review_sessions`` row joined with its user's ``role``
    and ``password_hash``, None when removed) may serve no request at ``now``; None if it may."""
    if row.ended_at is not None:
        return str(row.end_reason or "ended")
    if row.role is None:
        return "removed"
    if credentials(row.role, row.password_hash) != row.credentials:
        return "credentials"
    if now >= row.created_at + policy.absolute:
        return "expired"
    if now >= row.last_seen_at + policy.idle:
        return "idle"
    return None


def start(
    connection: Connection, user: User, password_hash: str, address: str, now: datetime
) -> str:
    """A new session of ``user``; returns the token for the cookie (stored only as its hash)."""
    token = secrets.token_urlsafe(32)
    connection.execute(
        insert(review_sessions).values(
            id=session_id(token),
            user_name=user.name,
            credentials=credentials(user.role, password_hash),
            client_address=address[:64],
            created_at=now,
            last_seen_at=now,
        )
    )
    return token


def current(
    connection: Connection, token: str, now: datetime, policy: SessionPolicy = SESSION
) -> User | None:
    """The user of the live session ``token``, its last request now ``now``; None if it is not
    live (then its row says why, from now on)."""
    rs, ru = review_sessions, review_users
    sid = session_id(token)
    row = connection.execute(
        select(
            rs.c.user_name,
            rs.c.credentials,
            rs.c.created_at,
            rs.c.last_seen_at,
            rs.c.ended_at,
            rs.c.end_reason,
            ru.c.role,
            ru.c.password_hash,
        )
        .select_from(rs.outerjoin(ru, ru.c.name == rs.c.user_name))
        .where(rs.c.id == sid)
    ).first()
    if row is None:
        return None
    reason = why_ended(row, now, policy)
    if reason is None:
        connection.execute(update(rs).where(rs.c.id == sid).values(last_seen_at=now))
        return User(row.user_name, row.role)
    if row.ended_at is None:  # it ended when it timed out, else when it was found out
        timed_out = {
            "idle": row.last_seen_at + policy.idle,
            "expired": row.created_at + policy.absolute,
        }
        end(connection, token, min(timed_out.get(reason, now), now), reason)
    return None


def end(connection: Connection, token: str, now: datetime, reason: str) -> None:
    """End the session ``token`` (if it is not ended already), saying why."""
    rs = review_sessions
    connection.execute(
        update(rs)
        .where(rs.c.id == session_id(token), rs.c.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
    )
