"""Password hashes for review users: scrypt from the standard library, salted, self-describing.

A hash reads ``scrypt$n$r$p$salt$digest`` (salt and digest in URL-safe base64), so the cost can
be raised later without invalidating stored hashes.

>>> stored = hash_password("correct horse")
>>> stored.startswith("scrypt$16384$8$1$")
True
>>> verify_password("correct horse", stored), verify_password("wrong", stored)
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1
SALT_BYTES, DIGEST_BYTES = 16, 32
MIN_LENGTH = 10
# Longest password kept: the sign-in form takes 16 KiB (review.forms.SIGN_IN_FORM_BYTES), so a
# password of 5,000 characters (up to 36 KiB URL-encoded) was stored and could never sign in.
MAX_LENGTH = 1_024


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _digest(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=DIGEST_BYTES
    )


def hash_password(password: str) -> str:
    """A new salted hash of ``password``."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(_digest(password, salt, N, R, P))}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant-time comparison)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError(
            f"stored password hash: expected 'scrypt$n$r$p$salt$digest', got {parts[0]!r}"
        )
    n, r, p = (int(x) for x in parts[1:4])
    return hmac.compare_digest(_digest(password, _unb64(parts[4]), n, r, p), _unb64(parts[5]))


def check_new_password(password: str) -> None:
    """Refuse a password too short to keep, or too long for a sign-in form (raises
    ``ValueError`` saying why)."""
    if len(password) < MIN_LENGTH:
        raise ValueError(
            f"password too short: expected at least {MIN_LENGTH} characters, got {len(password)}"
        )
    if len(password) > MAX_LENGTH:
        raise ValueError(
            f"password too long: expected at most {MAX_LENGTH:,} characters, got {len(password):,}"
        )
