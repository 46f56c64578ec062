"""Signed model versions read from MySQL's ``model_versions`` (and the shadowing challenger
from ``model_candidates``): what the scoring registry (:mod:`dataflows.model_registry`), the
learner and the retrain command load, each version's signature checked before it is unpickled.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Engine

from model_state.artifact import (
    ModelArtifact,
    ModelMetadata,
    ModelMismatchError,
    ModelNotFoundError,
    from_bytes,
)
from model_state.signing import UntrustedModelError
from storage import shadow
from storage.engine import make_engine, retry_transient
from storage.versions import fetch_version, newest_after


class NewerVersionsInMySQL:
    """Fetches the newest version recorded after a given one (any, for None) from
    ``model_versions``, refusing one not signed with ``key``; connects lazily, and rides out an
    outage for up to ``patience`` seconds (0: one try).

    With ``skip_unloadable`` (the scoring registry), a version that cannot be trusted or loaded
    is raised once (and logged by the registry) and then passed over, so that one bad row does
    not hide every version after it. The learner does not skip: a version of its own lineage it
    cannot load holds labels it would otherwise learn twice (:class:`dataflows.learning.Lineages`).
    """

    def __init__(
        self,
        url: str,
        engine: Engine | None = None,
        *,
        key: bytes,
        patience: float = 0.0,
        skip_unloadable: bool = False,
    ) -> None:
        self._url = url
        self._engine = engine
        self._key = key
        self._patience = patience
        self._roots: dict[str, ModelArtifact] = {}
        self._skip = skip_unloadable
        self._unloadable: set[str] = set()
        self._shadow: ModelArtifact | None = None

    def __call__(self, after: str | None) -> ModelArtifact | None:
        if self._engine is None:
            self._engine = make_engine(self._url, pool_size=1)
        engine = self._engine

        def fetch() -> object:
            with engine.connect() as connection:
                return newest_after(connection, after, exclude=self._unloadable)

        row = retry_transient(
            fetch, patience=self._patience, what=f"looking for a model version after {after}"
        )
        if row is None:
            return None
        try:
            return self._load(row)
        except (UntrustedModelError, ModelMismatchError, ModelNotFoundError):
            if self._skip:
                self._unloadable.add(str(row.version))  # type: ignore[attr-defined]
            raise

    def challenger(self, current: str | None) -> ModelArtifact | None:
        """The version that should shadow the champion now (``current`` is kept as it is
        loaded), or None; a :data:`FetchChallenger`."""
        if self._engine is None:
            self._engine = make_engine(self._url, pool_size=1)
        engine = self._engine

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
                raise ModelNotFoundError(f"the challenger {version} is in no table of versions")
            self._shadow = self._load(row)
        return self._shadow

    def _load(self, row: Any) -> ModelArtifact:
        metadata = msgspec.convert(row.metadata, ModelMetadata, strict=False)
        return from_bytes(
            row.artifact,
            metadata,
            where=f"model_versions[{metadata.version}]",
            key=self._key,
            bases=self._root,
        )

    def _root(self, version: str) -> ModelArtifact:
        """A lineage root an online version refers to, from MySQL; the last two are kept."""
        root = self._roots.get(version)
        if root is None:
            engine = self._engine
            assert engine is not None  # a root is looked up while loading a fetched version

            def fetch() -> object:
                with engine.connect() as connection:
                    return fetch_version(connection, version)

            row = retry_transient(
                fetch, patience=self._patience, what=f"loading model version {version}"
            )
            if row is None:
                raise ModelNotFoundError(f"model version {version} is not in model_versions")
            root = self._load(row)
            while len(self._roots) >= 2:
                self._roots.pop(next(iter(self._roots)))
            self._roots[version] = root
        return root
