"""One sign-in attempt, in one MySQL transaction: limits, password, session and audit.

1. The limits that count (:mod:`review.throttle`): the client address's, then the account's; or
   only the device's when the browser shows a device cookie for the name. Each one's row of
   ``review_login_limits`` is created if missing and locked (``SELECT ... FOR UPDATE``), in that
   order in every transaction, so attempts on one account or from one address run one after
   the other, in any number of application processes. If one is locked the attempt is
   refused at once, without looking at the password (and the account's row is not even made
   when the address is locked).
2. Otherwise the password is checked (scrypt: the same work for an unknown name) while the rows
   are held: forty attempts sent at once are forty attempts in a row, and the sixth finds the
   account locked.
3. The counts are written, a session is started on success (:mod:`review.sessions`), and
   ``review_login_audit`` gets a row for the attempt and one for every lock it started.

State lives in MySQL only, so any number of processes share it. The clock is the
application's (naive UTC): keep the processes' clocks in sync (NTP), as for every audit time.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import Connection, Engine

from review import sessions, throttle
from review.login_records import FAILURE, LOCKOUT, REFUSED, SUCCESS, Audit, hold, write
from review.throttle import Count, Kind, Policy
from review.users import NAME, User, authenticate
from storage.engine import retry_transient


class Attempt(msgspec.Struct, frozen=True):
    """What became of a sign-in: a session token, a refusal until a time, or a failure."""

    user: User | None = None
    token: str | None = None  # the new session's, for the cookie
    locked_until: datetime | None = None  # refused: no attempt before this time


def attempt(
    engine: Engine,
    name: str,
    password: str,
    *,
    address: str,
    device: str | None,
    now: datetime,
    policy: Policy = throttle.POLICY,
) -> Attempt:
    """Try to sign ``name`` in from ``address`` (and ``device``, a trusted device's id); see the
    module. A deadlock between concurrent attempts runs the transaction again."""

    def run() -> Attempt:
        with engine.begin() as connection:
            return _attempt(connection, name, password, address, device, now, policy)

    return retry_transient(run, patience=10.0, what="a sign-in")


def _attempt(
    c: Connection,
    name: str,
    password: str,
    address: str,
    device: str | None,
    now: datetime,
    policy: Policy,
) -> Attempt:
    address = address[:64]
    record = Audit(c, name, address, device, now)
    subjects: list[tuple[Kind, str]] = (
        [("device", device)] if device else [("address", address), ("account", name)]
    )
    if not NAME.match(name):  # no account can have it: the address counts alone
        subjects = [s for s in subjects if s[0] != "account"]
    counts: dict[tuple[Kind, str], Count] = {}
    for subject in subjects:
        count = counts[subject] = hold(c, *subject)
        if count.locked_at(now):
            kind, who = subject
            record(REFUSED, f"{kind} {who} locked until {count.locked_until:%Y-%m-%d %H:%M:%S} UTC")
            return Attempt(locked_until=count.locked_until)
    user, password_hash, why = authenticate(c, name, password)
    token = None
    if user is not None and password_hash is not None:
        token = sessions.start(c, user, password_hash, address, now)
        record(SUCCESS, None, session_id=sessions.session_id(token))
    else:
        record(FAILURE, why)
    for (kind, who), count in counts.items():
        if token is not None:  # a success ends the run of failures, but not the address's
            after = count if kind == "address" else throttle.after_success(count)
        else:
            after = throttle.after_failure(count, now, policy.limit(kind))
        if after == count:
            continue
        write(c, kind, who, after)
        if after.locked_until is not None and after.locked_until != count.locked_until:
            limit = policy.limit(kind)
            record(
                LOCKOUT,
                f"{kind} {who} locked until {after.locked_until:%Y-%m-%d %H:%M:%S} UTC after "
                f"{limit.threshold} failed sign-ins, each within {limit.reset_after} of the last",
            )
    return Attempt() if token is None else Attempt(user=user, token=token)
