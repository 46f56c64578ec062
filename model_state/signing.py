"""Model versions are signed: HMAC-SHA256 with a key that is not stored beside them.

A version is pickled code as much as data: unpickling a tampered artifact runs whatever it says.
The SHA-256 in a version's metadata only shows that the pickle matches *its* metadata, and both
sit in the same row of ``model_versions``, so whoever can write that row could choose both. So
every version's metadata also carries ``signature``: HMAC-SHA256, under the key in
``PAYSCORE_MODEL_KEY_FILE``, of its metadata (which holds the pickle's SHA-256). Every process
checks it before unpickling anything, from disk or from MySQL, and refuses an unsigned or
tampered version with an error that says which.

The key file holds 64 hex digits and must be readable by the service account alone (mode 0600);
a key readable by others is refused too. ``python -m model_state.train`` creates it on first use.

Keys are made and versions signed by hand with ``python -m model_state.sign``. This module
imports nothing else of payscore: it signs any metadata struct with a ``version`` and a
``signature`` field.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

KEY_BYTES = 32


class Signable(Protocol):
    """What can be signed: a msgspec struct with a version name and a signature field."""

    version: str
    signature: str


M = TypeVar("M", bound=msgspec.Struct)


class UntrustedModelError(ValueError):
    """A stored model is not signed with the key this process trusts."""

    def __init__(self, message: str, version: str) -> None:
        super().__init__(message)
        self.version = version


def new_key(path: Path) -> bytes:
    """Create a key file readable by its owner alone; fails if ``path`` exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key.hex() + "\n")
    return key


def read_key(path: Path, *, create: bool = False) -> bytes:
    """The signing key in ``path`` (created first if ``create`` and it does not exist)."""
    if not path.exists():
        if create:
            return new_key(path)
        raise FileNotFoundError(
            f"no model signing key at {path} (PAYSCORE_MODEL_KEY_FILE): the key that signed "
            "the model versions is needed to trust them. `python -m model_state.train` creates "
            f"one; or `python -m model_state.sign --new-key {path}` and sign your versions"
        )
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise IsADirectoryError(
            f"model signing key {path} (PAYSCORE_MODEL_KEY_FILE) is a "
            f"{'directory' if stat.S_ISDIR(mode) else 'special file'}, not the key's file: "
            "expected the file `python -m model_state.train` created (model_state/model.key)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(
            f"model signing key {path} is readable by others (mode {stat.filemode(mode)}); "
            f"run `chmod 600 {path}`"
        )
    raw = path.read_bytes()
    try:  # another key's file (a DER key, any binary) is not text at all
        text = raw.decode("ascii").strip()
        key = bytes.fromhex(text)
    except ValueError:  # UnicodeDecodeError is one too
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"model signing key {path} must hold {2 * KEY_BYTES} hex digits (the file "
            "`python -m model_state.train` created, PAYSCORE_MODEL_KEY_FILE); it holds "
            f"{len(raw)} bytes that are not that"
        )
    return key


# Metadata fields added after versions were first signed: signed only when set, so that a version
# signed before a field existed (which never had it) keeps its signature.
SIGNED_WHEN_SET = ("base_version", "base_hash", "drift_reference")


def _signed_text(metadata: Signable) -> bytes:  # fields in sorted order: as MySQL's JSON
    unsigned = msgspec.to_builtins(msgspec.structs.replace(metadata, signature=""))
    for name in SIGNED_WHEN_SET:
        if not unsigned.get(name):
            unsigned.pop(name, None)
    return msgspec.json.encode(unsigned, order="sorted")


def sign(metadata: M, key: bytes) -> M:
    """``metadata`` with its signature (over everything it says, the pickle's hash included)."""
    digest = hmac.new(key, _signed_text(metadata), hashlib.sha256).hexdigest()
    return msgspec.structs.replace(metadata, signature=digest)


def verify(metadata: Signable, key: bytes, *, where: str) -> None:
    """Raise :class:`UntrustedModelError` unless ``metadata`` is signed with ``key``."""
    if not metadata.signature:
        raise UntrustedModelError(
            f"model {metadata.version} at {where} is not signed: refusing to load it. Sign a "
            "version you trust with `python -m model_state.sign --sign DIR/VERSION`",
            metadata.version,
        )
    want = hmac.new(key, _signed_text(metadata), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, metadata.signature):
        raise UntrustedModelError(
            f"model {metadata.version} at {where} has a signature that does not match: it was "
            "changed after it was signed, or signed with another key (PAYSCORE_MODEL_KEY_FILE); "
            "refusing to load it",
            metadata.version,
        )
