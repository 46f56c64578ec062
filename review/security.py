"""Sessions, sign-in state and CSRF tokens of the review application.

Sessions are signed cookies (Starlette's ``SessionMiddleware``, itsdangerous) under a key read
from ``PAYSCORE_REVIEW_SESSION_KEY_FILE``; the file is created at first start (mode 0600). A
session holds the user's name and a CSRF token; the user's role is read from MySQL on every
request, so a removed user or a changed role counts at once. Every form carries the token and
every POST without the session's token is refused with 403 (:func:`check_csrf`). Signing in
starts a new session (a token given before it is not kept).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

CSRF_FIELD = "csrf_token"
SESSION_HOURS = 8


def session_key(path: Path) -> str:
    """The session signing key in ``path``, created (mode 0600) if the file does not exist."""
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


def sign_in(request: Request, name: str) -> None:
    request.session.clear()
    request.session["user"] = name
    request.session["csrf"] = secrets.token_urlsafe(32)
