"""Cookies and CSRF tokens of the review application.

**The session cookie** is signed (Starlette's ``SessionMiddleware``, itsdangerous) under a key
read from ``PAYSCORE_REVIEW_SESSION_KEY_FILE``; the file is created at first start (mode 0600).
It holds a CSRF token and, once signed in, a session token; the session itself lives in MySQL
and is checked on every request (:mod:`review.sessions`), so the cookie alone opens nothing once
its session ended. Every form carries the CSRF token and every POST without the session's token
is refused with 403 (:func:`check_csrf`). Signing in starts a new session (a token given before
it is not kept).

**The device cookie** (``payscore_review_device``, 90 days) is given to a browser when it signs
in: it names the user and a random device id, signed under the same key with its own salt. A
sign-in as that user from that browser counts against the device's limit instead of the
account's and the address's (:mod:`review.throttle`), so a locked-out attacker does not lock
the analysts out of their own browsers. It proves nothing about the password: it only changes
which limit counts.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import itsdangerous
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "payscore_review"
DEVICE_COOKIE = "payscore_review_device"
DEVICE_DAYS = 90
_DEVICE_SALT = "payscore-review-device"


def session_key(path: Path) -> str:
    """The cookie signing key in ``path``, created (mode 0600) if the file does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or len(lines[0]) < 32:
        raise ValueError(
            f"PAYSCORE_REVIEW_SESSION_KEY_FILE={str(path)!r}: expected a key of at least 32 "
            "characters on its first line"
        )
    return lines[0]


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made when the session has none."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    """Refuse (403) a POST whose form does not carry this session's CSRF token."""
    expected = request.session.get("csrf")
    given = form.get(CSRF_FIELD)
    if not expected or not isinstance(given, str) or not hmac.compare_digest(given, expected):
        raise HTTPException(403, "the form's CSRF token is missing or not this session's")


def session_token(request: Request) -> str | None:
    """The token of the session the cookie names, if any (live or not: MySQL says)."""
    token = request.session.get("sid")
    return token if isinstance(token, str) and token else None


def sign_in(request: Request, token: str) -> None:
    """Make the cookie carry the new session ``token`` and a new CSRF token, nothing else."""
    request.session.clear()
    request.session["sid"] = token
    request.session["csrf"] = secrets.token_urlsafe(32)


class Devices:
    """Device cookies, signed under the application's cookie key."""

    def __init__(self, key: str, *, https_only: bool = False) -> None:
        self._serializer = itsdangerous.URLSafeTimedSerializer(key, salt=_DEVICE_SALT)
        self._https_only = https_only

    def trusted(self, request: Request, name: str) -> str | None:
        """The device id of the request's device cookie if it was given to ``name``."""
        cookie = request.cookies.get(DEVICE_COOKIE)
        if not cookie or len(cookie) > 512:
            return None
        try:
            user, device = self._serializer.loads(cookie, max_age=DEVICE_DAYS * 86400)
        except (itsdangerous.BadData, TypeError, ValueError):
            return None
        return device if user == name and isinstance(device, str) else None

    def give(self, response: Response, name: str) -> None:
        """Set a new device cookie for ``name`` on ``response``."""
        response.set_cookie(
            DEVICE_COOKIE,
            self._serializer.dumps([name, secrets.token_hex(16)]),
            max_age=DEVICE_DAYS * 86400,
            httponly=True,
            samesite="strict",
            secure=self._https_only,
        )
