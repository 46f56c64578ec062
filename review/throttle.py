"""How failed sign-ins lock an account, a client address or a trusted device: pure rules, no I/O.

No library fits: ``limits`` (behind slowapi) counts requests in memory, Redis, Memcached or
MongoDB, not MySQL, and knows rate limits, not lockouts with an audit; so the rules are these
few pure functions, property-tested (``tests/test_review_throttle.py``), and their storage is
:mod:`review.login_records`.

Each of them keeps a :class:`Count` (in ``review_login_limits``, :mod:`review.signin`) under a
:class:`Limit` of three numbers, the three knobs of Windows' account lockout policy that bank
security teams know: a *threshold* of failed sign-ins, each within *reset_after* of the one
before, locks for a *duration*. A sign-in while locked is refused without looking at the
password and changes nothing (it is no guess, and it does not make the lock longer). A lock
ends by itself; after it the count starts again from zero.

>>> from datetime import datetime, timedelta
>>> limit = Limit(threshold=3, reset_after=timedelta(minutes=15), duration=timedelta(minutes=30))
>>> t0, count = datetime(2026, 3, 2, 9), Count()
>>> for minute in (0, 1, 2):
...     count = after_failure(count, t0 + timedelta(minutes=minute), limit)
>>> count.locked_at(t0 + timedelta(minutes=31)), count.locked_at(t0 + timedelta(minutes=32))
(True, False)

The policy (:data:`POLICY`) and why:

- **account**: 5 failures, each within 15 minutes of the one before, lock the name for 30
  minutes. PCI DSS v4.0 (8.3.4) asks for a lock after at most 10 failures, for at least 30
  minutes; 5 is what many banks' staff systems use. A guesser gets at most 5 guesses at a name
  in any 15 minutes; one slow enough never to lock it (4 every 15 minutes) at most 384 a day,
  against passwords of at least 10 characters, each one audited.
- **address**: 20 failures from one client address, whatever the names, lock the address for
  30 minutes: password spraying (one guess at many names) and the cheap way to lock many
  accounts both need many addresses.
- **device**: a browser that signed in as a user before holds a signed *device cookie* for that
  user (:mod:`review.security`). Its sign-ins as that user count against the device only, under
  the account's limit, and are exempt from the account's and the address's locks. That is what
  keeps an attacker who knows the names from locking everyone out: the analysts' own browsers
  sign in still. Unknown names are counted and locked like known ones (no name enumeration).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

Kind = Literal["account", "address", "device"]


class Limit(msgspec.Struct, frozen=True, kw_only=True):
    threshold: int  # failed sign-ins that lock
    reset_after: timedelta  # a run of failures ends after this long without one
    duration: timedelta  # how long a lock lasts

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"lock threshold {self.threshold}: expected at least 1 failure")
        if self.reset_after <= timedelta(0) or self.duration <= timedelta(0):
            raise ValueError(
                f"reset_after {self.reset_after} and duration {self.duration}: expected both > 0"
            )


class Count(msgspec.Struct, frozen=True):
    """Failed sign-ins of one account, address or device (a row of ``review_login_limits``)."""

    failures: int = 0  # in the current run
    last_failure_at: datetime | None = None  # naive UTC, as stored
    locked_until: datetime | None = None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def after_failure(count: Count, now: datetime, limit: Limit) -> Count:
    """The count after a failed sign-in at ``now`` (never called while locked)."""
    run_goes_on = (
        count.last_failure_at is not None and now - count.last_failure_at < limit.reset_after
    )
    failures = count.failures + 1 if run_goes_on else 1
    if failures >= limit.threshold:
        return Count(0, now, now + limit.duration)
    return Count(failures, now, count.locked_until)


def after_success(count: Count) -> Count:
    """The count after a successful sign-in: the run of failures ends."""
    return Count(0, None, count.locked_until)


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    account: Limit
    address: Limit
    device: Limit

    def limit(self, kind: Kind) -> Limit:
        limit: Limit = getattr(self, kind)
        return limit


POLICY = Policy(
    account=Limit(threshold=5, reset_after=timedelta(minutes=15), duration=timedelta(minutes=30)),
    address=Limit(threshold=20, reset_after=timedelta(minutes=15), duration=timedelta(minutes=30)),
    device=Limit(threshold=5, reset_after=timedelta(minutes=15), duration=timedelta(minutes=30)),
)
