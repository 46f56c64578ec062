"""Which model version scores: the newest one the learner has published, looked up in MySQL.

Each process has one registry, shared by its worker threads. Scoring asks it for the current
:class:`~model_state.scorer.Scorer`; at most once every ``refresh_seconds`` the registry asks
MySQL whether a newer version than its own is in ``model_versions`` and, if so, loads it (checking
its hash and feature names). The first call asks at once, so a restarted flow scores with the
latest published version, not the pre-trained file it started from.

Bound: a version the learner publishes scores every worker's payments at most
``refresh_seconds`` after its row is stored (which happens in the epoch it is published).
A worker never goes back to an older version: versions only move forward.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import msgspec
from sqlalchemy import Engine, select

from model_state.artifact import ModelArtifact, ModelMetadata, from_bytes
from model_state.scorer import Scorer
from storage.engine import make_engine
from storage.tables import model_versions

Fetch = Callable[[str], ModelArtifact | None]


class ModelRegistry:
    def __init__(
        self,
        start: ModelArtifact,
        fetch_newer: Fetch,
        *,
        refresh_seconds: float,
        review: float,
        decline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_newer = fetch_newer
        self._refresh_seconds = refresh_seconds
        self._review = review
        self._decline = decline
        self._clock = clock
        self._lock = threading.Lock()
        self._scorer = self._scorer_for(start)
        self._next_check = clock()  # ask at the first call

    def current(self) -> Scorer:
        if self._clock() >= self._next_check:
            with self._lock:
                if self._clock() >= self._next_check:
                    newer = self._fetch_newer(self._scorer.version)
                    if newer is not None and newer.version > self._scorer.version:
                        self._scorer = self._scorer_for(newer)
                    self._next_check = self._clock() + self._refresh_seconds
        return self._scorer

    def _scorer_for(self, artifact: ModelArtifact) -> Scorer:
        return Scorer(
            artifact.model,
            artifact.version,
            review=self._review,
            decline=self._decline,
            positive_weight=artifact.metadata.positive_weight,
        )


class NewerVersionsInMySQL:
    """Fetches the newest version after a given one from ``model_versions``; connects lazily."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self._url = url
        self._engine = engine

    def __call__(self, after: str) -> ModelArtifact | None:
        if self._engine is None:
            self._engine = make_engine(self._url, pool_size=1)
        mv = model_versions
        with self._engine.connect() as connection:
            row = connection.execute(
                select(mv.c.metadata, mv.c.artifact)
                .where(mv.c.version > after)
                .order_by(mv.c.version.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        metadata = msgspec.convert(row.metadata, ModelMetadata, strict=False)
        return from_bytes(row.artifact, metadata, where=f"model_versions[{metadata.version}]")
