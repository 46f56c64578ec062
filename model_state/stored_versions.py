"""Signed model versions read from MySQL's ``model_versions`` (and the shadowing challenger
from ``model_candidates``): what the scoring registry (:mod:`dataflows.model_registry`), the
learner and the retrain command load, each version's signature checked before it is unpickled.

**A row is what its signed metadata says, or nothing.** The signature covers a version's
metadata; the row's other columns (its name, ``lineage`` and ``sequence``, which order the
versions, and the rest) are copied from that metadata when the row is written. A row whose
columns say something else — named ``v00001.000008`` while holding a validly signed copy of
``v00001.000005``, or with a sequence that sorts it above every version — is refused
(:func:`identity_problems`), as is a row whose signature, artifact or root does not check out.

**A refused row hides nothing.** A look-up walks the versions recorded after the one asked
about, newest first, and returns the first it can load: a refused row is passed over wherever
it sorts, above, between or below the valid ones. Each refused row is logged once per process,
with its own name as stored (every quoted value bounded), and remembered by its content (every
column, the artifact's MD5), so it is not loaded again while it stays as it is; a row rewritten
in its place is tried afresh. A version whose root is missing is tried again at each look-up
(the root may come), but logged once too.

**The learner does not pass over its own versions.** Without ``skip_unloadable`` (the learner,
the retrain) a refused row newer than the version asked about, of the same lineage, that labels
name as learned by it (``fraud_labels.learned_version``) stops the look-up with the error: going
on without it would learn its labels twice (:class:`dataflows.learning.Lineages`). A refused row
no label names holds nothing to lose, and is passed over.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy import Engine

from model_state.artifact import (
    Bases,
    ModelArtifact,
    ModelMetadata,
    ModelMismatchError,
    ModelNotFoundError,
    from_bytes,
)
from model_state.signing import UntrustedModelError, verify
from storage import shadow
from storage.engine import make_engine, retry_transient
from storage.rows import utc_naive
from storage.versions import fetch_version, labels_name, newer_rows, version_key

log = logging.getLogger(__name__)

PAGE = 16  # rows read at a time while walking down past refused ones
QUOTED_CHARS = 80  # of a value quoted from a row
REASON_CHARS = 600  # of a refusal's reason
Refusal = UntrustedModelError | ModelMismatchError | ModelNotFoundError
REFUSALS = (UntrustedModelError, ModelMismatchError, ModelNotFoundError)

# The columns a row copies from its signed metadata, and how to read them from it.
_COPIED: dict[str, Callable[[ModelMetadata], object]] = {
    "parent_version": lambda m: m.parent_version,
    "origin": lambda m: m.origin,
    "labels_learned": lambda m: m.labels_learned,
    "content_hash": lambda m: m.content_hash,
    "created_at": lambda m: utc_naive(m.created_at),
}


class NotWhatItSaysError(ModelMismatchError):
    """A stored row whose columns differ from its signed metadata."""


def short(value: object, limit: int = QUOTED_CHARS) -> str:
    """``value`` (a string as it is, anything else as its repr) cut to ``limit`` characters,
    saying how long it was.

    >>> short("v00001.000008")
    'v00001.000008'
    >>> short("x" * 1000, 10)
    'xxxxxxxxxx… (1,000 characters)'
    """
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def identity_problems(row: Any, metadata: ModelMetadata) -> list[str]:
    """How the columns of a stored row (of ``model_versions``, or of ``model_candidates``,
    which lacks lineage and sequence) differ from its signed ``metadata``; empty if they
    agree."""
    problems = []
    if row.version != metadata.version:
        problems.append(
            f"it is named {short(row.version)} but its signed metadata is version "
            f"{short(metadata.version)}"
        )
    if hasattr(row, "lineage"):
        try:
            place: tuple[int, int] | None = version_key(metadata.version)
        except ValueError:
            place = None
            problems.append(f"its signed version {short(metadata.version)} is no version name")
        if place is not None and (row.lineage, row.sequence) != place:
            problems.append(
                f"its lineage and sequence are ({row.lineage}, {row.sequence}), its signed "
                f"version's {place}"
            )
    for column, signed in _COPIED.items():
        if hasattr(row, column) and getattr(row, column) != signed(metadata):
            problems.append(
                f"its {column} is {short(getattr(row, column))}, signed {short(signed(metadata))}"
            )
    return problems


def from_row(row: Any, *, key: bytes, bases: Bases | None) -> ModelArtifact:
    """The version a stored row holds, after checking its signature under ``key``, that its
    columns are what its signed metadata says (:func:`identity_problems`), and that its
    artifact fits it and this code; a delta's root is looked up through ``bases``."""
    where = f"model_versions[{short(row.version)}]"
    try:
        metadata = msgspec.convert(row.metadata, ModelMetadata, strict=False)
    except (msgspec.ValidationError, TypeError) as exc:
        raise ModelMismatchError(
            f"{where} holds no version's metadata: {short(str(exc), 200)}", row.version
        ) from None
    try:
        verify(metadata, key, where=where)
    except UntrustedModelError as exc:
        raise UntrustedModelError(short(str(exc), REASON_CHARS), row.version) from None
    problems = identity_problems(row, metadata)
    if problems:
        raise NotWhatItSaysError(
            f"{where} is not what its signed metadata says: {'; '.join(problems)}. Rows are "
            "written from their version's metadata: this one was written or changed by "
            "other means",
            row.version,
        )
    return from_bytes(row.artifact, metadata, where=where, key=key, bases=bases)


def row_fault(row: Any, *, key: bytes) -> str | None:
    """Why a stored row is not a version ``key`` vouches for (unreadable or unsigned metadata,
    another key's signature, columns that differ from its signed metadata, an artifact other
    than the signed one), or None; nothing is unpickled."""
    where = f"model_versions[{short(row.version)}]"
    try:
        metadata = msgspec.convert(row.metadata, ModelMetadata, strict=False)
        verify(metadata, key, where=where)
    except (msgspec.ValidationError, TypeError, UntrustedModelError) as exc:
        return short(str(exc), REASON_CHARS)
    problems = identity_problems(row, metadata)
    if hashlib.sha256(row.artifact).hexdigest() != metadata.content_hash:
        problems.append("its artifact is not the one its signed metadata names")
    return short("; ".join(problems), REASON_CHARS) if problems else None


def fingerprint(row: Any) -> str:
    """A row's content: every column, the artifact by its MD5 (``artifact_md5`` of a row read
    by :func:`storage.versions.newer_rows`, or computed from ``artifact``)."""
    fields = row._asdict()
    blob = fields.pop("artifact", None)
    if "artifact_md5" not in fields:
        fields["artifact_md5"] = hashlib.md5(blob or b"", usedforsecurity=False).hexdigest()
    return hashlib.sha256(msgspec.json.encode(fields, order="sorted", enc_hook=repr)).hexdigest()


def reason_class(exc: BaseException) -> str:
    """A short class of why a row was refused: ``identity``, ``signature``, ``missing`` or
    ``mismatch``."""
    if isinstance(exc, UntrustedModelError):
        return "signature"
    if isinstance(exc, ModelNotFoundError):
        return "missing"
    return "identity" if isinstance(exc, NotWhatItSaysError) else "mismatch"


class RefusedRows:
    """The refused rows a process has logged, each once (by :func:`fingerprint`); its loaders
    share one. ``on_refused`` is told each one too (its name and :func:`reason_class`), for a
    metric."""

    def __init__(self, on_refused: Callable[[str, str], None] | None = None) -> None:
        self._on_refused = on_refused
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def note(self, row: Any, mark: str, exc: Refusal) -> None:
        with self._lock:
            if mark in self._logged:
                return
            self._logged.add(mark)
        name = short(row.version)
        log.error(
            "model_versions row %s refused, passed over: %s",
            name,
            short(str(exc), REASON_CHARS),
            extra={"event": "version_refused", "version": name},
        )
        if self._on_refused is not None:
            self._on_refused(name, reason_class(exc))


class NewerVersionsInMySQL:
    """Fetches the newest loadable version recorded after a given one (any, for None) from
    ``model_versions``, refusing rows as the module docstring says; connects lazily, and rides
    out an outage for up to ``patience`` seconds (0: one try).

    ``skip_unloadable`` (the scoring registry): every refused row is passed over. Otherwise
    (the learner, the retrain) a refused row of the lineage asked about, newer and holding
    labels, raises its error. ``refused``: where refused rows are logged once (the loaders of
    a process share one)."""

    def __init__(
        self,
        url: str,
        engine: Engine | None = None,
        *,
        key: bytes,
        patience: float = 0.0,
        skip_unloadable: bool = False,
        refused: RefusedRows | None = None,
    ) -> None:
        self._url = url
        self._engine = engine
        self._key = key
        self._patience = patience
        self._roots: dict[str, ModelArtifact] = {}
        self._skip = skip_unloadable
        self._log = refused or RefusedRows()
        self._refused: dict[str, Refusal] = {}  # by fingerprint; never loaded again as it is
        self._holds_labels: dict[str, bool] = {}
        self._newest: tuple[int, int] | None = None
        self._shadow: ModelArtifact | None = None

    def newest_seen(self) -> tuple[int, int] | None:
        """``(lineage, sequence)`` of the newest row the last look-up found after the version
        it was asked about, loadable or not; None when there was none."""
        return self._newest

    def __call__(self, after: str | None) -> ModelArtifact | None:
        engine = self._connect()
        below: tuple[int, int] | None = None
        first = True
        while True:

            def page(below: tuple[int, int] | None = below) -> list[Any]:
                with engine.connect() as connection:
                    return newer_rows(connection, after, below=below, limit=PAGE)

            rows = retry_transient(
                page, patience=self._patience, what=f"looking for a model version after {after}"
            )
            if first:
                self._newest = (rows[0].lineage, rows[0].sequence) if rows else None
                first = False
            for light in rows:
                known = self._refused.get(fingerprint(light))
                if known is not None:
                    self._stop_or_pass(light, after, known)
                    continue
                found = self._try(light.version, after)
                if found is not None:
                    return found
            if len(rows) < PAGE:
                return None
            below = (rows[-1].lineage, rows[-1].sequence)

    def _try(self, version: str, after: str | None) -> ModelArtifact | None:
        """The version of the row named ``version`` if it loads; None if it is refused (and
        passed over) or gone."""
        engine = self._connect()

        def fetch() -> Any:
            with engine.connect() as connection:
                return fetch_version(connection, version)

        row = retry_transient(
            fetch, patience=self._patience, what=f"loading model version {short(version)}"
        )
        if row is None:
            return None
        mark = fingerprint(row)
        known = self._refused.get(mark)
        if known is None:
            try:
                return from_row(row, key=self._key, bases=self._root)
            except REFUSALS as exc:
                known = exc
                self._note(row, mark, exc)
        self._stop_or_pass(row, after, known)
        return None

    def _note(self, row: Any, mark: str, exc: Refusal) -> None:
        if not isinstance(exc, ModelNotFoundError):  # a missing root may come: try again later
            self._refused[mark] = exc
        self._log.note(row, mark, exc)

    def _stop_or_pass(self, row: Any, after: str | None, exc: Refusal) -> None:
        """Raise ``exc`` when the learner must not go on past this refused row."""
        if self._skip:
            return
        try:
            named = version_key(row.version)
        except ValueError:
            return  # no version's name: no label names it
        if after is not None and (named[0] != version_key(after)[0] or named <= version_key(after)):
            return  # another lineage's, or one the learner holds already
        mark = fingerprint(row)
        holds = self._holds_labels.get(mark)
        if holds is None:
            engine = self._connect()

            def learned() -> bool:
                with engine.connect() as connection:
                    return labels_name(connection, row.version)

            holds = retry_transient(
                learned,
                patience=self._patience,
                what=f"reading which labels {short(row.version)} learned",
            )
            self._holds_labels[mark] = holds
        if holds:
            raise exc

    def challenger(self, current: str | None) -> ModelArtifact | None:
        """The version that should shadow the champion now (``current`` is kept as it is
        loaded), or None; a :data:`FetchChallenger`."""
        engine = self._connect()

        def fetch() -> tuple[str | None, Any]:
            with engine.connect() as connection:
                active = shadow.challenger(connection)
                if active is None or active[0] == current:
                    return (active[0] if active else None), None
                return active[0], shadow.fetch_any(connection, active[0])

        version, row = retry_transient(
            fetch, patience=self._patience, what="looking for a challenger"
        )
        if version is None:
            return None
        if version != current:
            if row is None:
                raise ModelNotFoundError(
                    f"the challenger {short(version)} is in no table of versions"
                )
            self._shadow = from_row(row, key=self._key, bases=self._root)
        return self._shadow

    def _connect(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self._url, pool_size=1)
        return self._engine

    def _root(self, version: str) -> ModelArtifact:
        """A lineage root an online version refers to, from MySQL; the last two are kept."""
        root = self._roots.get(version)
        if root is None:
            engine = self._connect()

            def fetch() -> Any:
                with engine.connect() as connection:
                    return fetch_version(connection, version)

            row = retry_transient(
                fetch, patience=self._patience, what=f"loading model version {short(version)}"
            )
            if row is None:
                raise ModelNotFoundError(f"model version {short(version)} is not in model_versions")
            root = from_row(row, key=self._key, bases=None)
            while len(self._roots) >= 2:
                self._roots.pop(next(iter(self._roots)))
            self._roots[version] = root
        return root
