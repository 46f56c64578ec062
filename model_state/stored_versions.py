"""Signed model versions read from MySQL's ``model_versions`` (and the shadowing challenger
from ``model_candidates``): what the scoring registry (:mod:`dataflows.model_registry`), the
learner and the retrain command load, each version's signature checked before it is unpickled.

**A row is what its signed metadata says, or nothing.** The signature covers a version's
metadata; the row's other columns (its name, ``lineage`` and ``sequence``, which order the
versions, and the rest) are copied from that metadata when the row is written. A row whose
columns say something else — named ``v00001.000008`` while holding a validly signed copy of
``v00001.000005``, or with a sequence that sorts it above every version — is refused
(:func:`identity_problems`), as is a row whose signature, artifact or root does not check out.

**A refused row hides nothing and stops nothing.** A look-up walks the versions recorded after
the one asked about, newest first, and returns the first it can load: a refused row is passed
over wherever it sorts, above, between or below the valid ones, by the scoring registry and the
learner alike (a refused row is no state anyone can go on from; labels it is said to hold are
in no version that loads, and are learned again on the version that does). Each refused row is
logged once per process (event ``version_refused``, counted in
``payscore_model_versions_refused_total``), with its own name and table as stored (every quoted
value bounded), and remembered by its name, place and content hash (:func:`mark`), so it is not
verified again while it stays as it is; a row rewritten in another place or with other content
is tried afresh. A version whose root is missing is tried again at each look-up (the root may
come), but logged once too.

**A look-up's work is bounded.** Rows are read in light pages (name, place and content hash:
no metadata, no artifact); only a row not yet known is verified, its metadata fetched and
checked first, and its artifact only when the metadata is a version the key vouches for. The
first look-up of a loader (at start) walks every row; each later one reads at most
``scan_budget`` rows and verifies at most ``verify_budget``, and when either runs out it stops
there and the next look-up goes on from that place (down to the version asked about, then from
the top again). So however many rows are forged, a look-up costs at most a few light queries and
a bounded number of verifications; a forged flood delays the adoption of a newer version by at
most a few look-ups, and never stops it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
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
from storage.versions import fetch_version, light_rows, version_key

log = logging.getLogger(__name__)

PAGE = 1_024  # light rows read at a time while walking down past refused ones
SCAN_BUDGET = 65_536  # light rows a look-up reads at most (after a loader's first)
VERIFY_BUDGET = 64  # rows a look-up verifies at most (after a loader's first)
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


def vouched(row: Any, *, key: bytes, table: str = "model_versions") -> ModelMetadata:
    """The signed metadata of a stored row (of ``table``), after checking its signature under
    ``key`` and that its columns are what that metadata says (:func:`identity_problems`); its
    artifact is not needed (nor read)."""
    where = f"{table}[{short(row.version)}]"
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
    return metadata


def from_row(
    row: Any, *, key: bytes, bases: Bases | None, table: str = "model_versions"
) -> ModelArtifact:
    """The version a stored row holds, after :func:`vouched` and checking that its artifact
    fits it and this code; a delta's root is looked up through ``bases``."""
    metadata = vouched(row, key=key, table=table)
    where = f"{table}[{short(row.version)}]"
    return from_bytes(row.artifact, metadata, where=where, key=key, bases=bases)


def row_fault(row: Any, *, key: bytes) -> str | None:
    """Why a stored row is not a version ``key`` vouches for (unreadable or unsigned metadata,
    another key's signature, columns that differ from its signed metadata, an artifact other
    than the signed one), or None; nothing is unpickled."""
    try:
        metadata = vouched(row, key=key)
    except (ModelMismatchError, UntrustedModelError) as exc:
        return short(str(exc), REASON_CHARS)
    if hashlib.sha256(row.artifact).hexdigest() != metadata.content_hash:
        return "its artifact is not the one its signed metadata names"
    return None


Mark = tuple[str, str, int, int, str]


def mark(row: Any, table: str = "model_versions") -> Mark:
    """What a refused row is remembered by: its table, name, place (lineage and sequence; a
    candidate has none) and content hash, all read with a light page
    (:func:`storage.versions.light_rows`)."""
    return (
        table,
        row.version,
        getattr(row, "lineage", -1),
        getattr(row, "sequence", -1),
        row.content_hash,
    )


def reason_class(exc: BaseException) -> str:
    """A short class of why a row was refused: ``identity``, ``signature``, ``missing`` or
    ``mismatch``."""
    if isinstance(exc, UntrustedModelError):
        return "signature"
    if isinstance(exc, ModelNotFoundError):
        return "missing"
    return "identity" if isinstance(exc, NotWhatItSaysError) else "mismatch"


class RefusedRows:
    """The refused rows of a process, by :func:`mark`: each logged once (event
    ``version_refused``) and not verified again by any of its loaders, which share one.
    ``on_refused`` is told each one too (its name and :func:`reason_class`), for a metric. A
    version whose root is missing is logged once but not remembered (the root may come)."""

    def __init__(self, on_refused: Callable[[str, str], None] | None = None) -> None:
        self._on_refused = on_refused
        self._logged: set[Mark] = set()
        self._refused: set[Mark] = set()
        self._lock = threading.Lock()

    def __contains__(self, marked: Mark) -> bool:
        return marked in self._refused

    def note(self, row: Any, exc: Refusal, table: str = "model_versions") -> None:
        marked = mark(row, table)
        with self._lock:
            if not isinstance(exc, ModelNotFoundError):
                self._refused.add(marked)
            if marked in self._logged:
                return
            self._logged.add(marked)
        name = short(row.version)
        log.error(
            "%s row %s refused, passed over: %s",
            table,
            name,
            short(str(exc), REASON_CHARS),
            extra={"event": "version_refused", "version": name},
        )
        if self._on_refused is not None:
            self._on_refused(name, reason_class(exc))


@dataclass
class Work:
    """What one look-up did: light rows read, rows verified (their metadata fetched)."""

    scanned: int = 0
    verified: int = 0


class NewerVersionsInMySQL:
    """Fetches the newest loadable version recorded after a given one (any, for None) from
    ``model_versions``, passing over refused rows as the module docstring says; connects lazily,
    and rides out an outage for up to ``patience`` seconds (0: one try).

    ``refused``: where refused rows are logged once and remembered (the loaders of a process
    share one). ``scan_budget`` and ``verify_budget``: the work of a look-up after the first
    (None: unbounded, for one-shot commands)."""

    def __init__(
        self,
        url: str,
        engine: Engine | None = None,
        *,
        key: bytes,
        patience: float = 0.0,
        refused: RefusedRows | None = None,
        scan_budget: int | None = SCAN_BUDGET,
        verify_budget: int | None = VERIFY_BUDGET,
    ) -> None:
        self._url = url
        self._engine = engine
        self._key = key
        self._patience = patience
        self._roots: dict[str, ModelArtifact] = {}
        self._refused = refused or RefusedRows()
        self._scan_budget = scan_budget
        self._verify_budget = verify_budget
        self._newest: tuple[int, int] | None = None
        self._shadow: ModelArtifact | None = None
        self._cursor: tuple[int, int] | None = None  # where the next look-up goes on, exclusive
        self._looked = False
        self.work = Work()  # of the last look-up

    def newest_seen(self) -> tuple[int, int] | None:
        """``(lineage, sequence)`` of the newest row the last look-up that started from the top
        found after the version it was asked about, loadable or not; None when there was
        none."""
        return self._newest

    def __call__(self, after: str | None) -> ModelArtifact | None:
        engine = self._connect()
        bounded = self._looked
        self._looked = True
        scan = self._scan_budget if bounded else None
        verify_left = self._verify_budget if bounded else None
        work = self.work = Work()
        since = version_key(after) if after is not None else None
        below = self._cursor
        if below is not None and since is not None and below <= since:
            below = None
        from_top = below is None
        while True:
            limit = PAGE if scan is None else max(1, min(PAGE, scan - work.scanned))

            def page(below: tuple[int, int] | None = below, limit: int = limit) -> list[Any]:
                with engine.connect() as connection:
                    return light_rows(connection, since, below=below, limit=limit)

            rows = retry_transient(
                page, patience=self._patience, what=f"looking for a model version after {after}"
            )
            if from_top:
                self._newest = (rows[0].lineage, rows[0].sequence) if rows else None
                from_top = False
            for light in rows:
                work.scanned += 1
                if mark(light) in self._refused:
                    continue
                if verify_left is not None and work.verified >= verify_left:
                    self._cursor = (light.lineage, light.sequence + 1)  # goes on from this row
                    return None
                work.verified += 1
                found = self._try(light.version)
                if found is not None:
                    self._cursor = None
                    return found
            if len(rows) < limit:
                self._cursor = None  # down to the version asked about: next, from the top
                return None
            below = (rows[-1].lineage, rows[-1].sequence)
            if scan is not None and work.scanned >= scan:
                self._cursor = below
                return None

    def _try(self, version: str) -> ModelArtifact | None:
        """The version of the row named ``version`` if it loads; None if it is refused (and
        logged, remembered) or gone. Its artifact is fetched only if its metadata is vouched
        for."""
        engine = self._connect()

        def fetch(artifact: bool) -> Any:
            with engine.connect() as connection:
                return fetch_version(connection, version, artifact=artifact)

        what = f"loading model version {short(version)}"
        head = retry_transient(lambda: fetch(False), patience=self._patience, what=what)
        if head is None:
            return None
        try:
            vouched(head, key=self._key)
            row = retry_transient(lambda: fetch(True), patience=self._patience, what=what)
            if row is None:
                return None
            return from_row(row, key=self._key, bases=self._root)
        except REFUSALS as exc:
            self._refused.note(head, exc)
            return None

    def challenger(self, current: str | None) -> ModelArtifact | None:
        """The version that should shadow the champion now (``current`` is kept as it is
        loaded), or None; a :data:`FetchChallenger`. A challenger that is refused is logged
        once (as a refused row is) and shadows nothing; it is not verified again while it
        stays as it is."""
        engine = self._connect()

        def fetch() -> tuple[str | None, Any, str]:
            with engine.connect() as connection:
                active = shadow.challenger(connection)
                if active is None or active[0] == current:
                    return (active[0] if active else None), None, ""
                return active[0], *shadow.fetch_any_of(connection, active[0])

        version, row, table = retry_transient(
            fetch, patience=self._patience, what="looking for a challenger"
        )
        if version is None:
            return None
        if version != current:
            if row is None:
                raise ModelNotFoundError(
                    f"the challenger {short(version)} is in no table of versions"
                )
            if mark(row, table) in self._refused:
                return None
            try:
                self._shadow = from_row(row, key=self._key, bases=self._root, table=table)
            except REFUSALS as exc:
                self._refused.note(row, exc, table)
                return None
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
