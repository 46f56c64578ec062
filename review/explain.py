"""Why a payment scored as it did: each feature's contribution, recomputed with the very model
version that scored it.

The version is loaded from ``PAYSCORE_MODEL_DIR`` and, if it is not there, from
``model_versions`` in MySQL; its signature is checked first (:mod:`model_state.artifact`). The
contributions come from the explainer the scorer uses (:func:`model_state.scorer.explainer_for`),
so they add up to the stored probability. A few versions are kept loaded. When the version
cannot be loaded, :func:`explain` says why and the page shows the stored features and reason
codes only.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Engine

from model_state import artifact
from model_state.artifact import ModelArtifact
from model_state.scorer import explainer_for
from model_state.stored_versions import from_row
from storage.versions import fetch_version

log = logging.getLogger(__name__)
KEEP = 4


class Explanation(msgspec.Struct, frozen=True):
    contributions: list[tuple[str, float, float]]  # feature, value, contribution; largest first
    offset: float  # the log-odds of the average training payment, prior-corrected
    probability: float  # recomputed from the contributions


class Unexplained(msgspec.Struct, frozen=True):
    why: str


class Explainers:
    """Loads model versions on demand (disk first, then MySQL) and explains payments."""

    def __init__(self, model_dir: Path, key: bytes, engine: Engine) -> None:
        self._model_dir = model_dir
        self._key = key
        self._engine = engine
        self._loaded: OrderedDict[str, ModelArtifact] = OrderedDict()
        self._lock = threading.Lock()

    def explain(self, version: str, features: dict[str, float]) -> Explanation | Unexplained:
        try:
            model = self._version(version)
            split = explainer_for(model.model)
            contributions, offset = split(features)
        except Exception as exc:  # any reason the version cannot explain: say it on the page
            log.warning("cannot explain with model version %s: %s", version, exc)
            return Unexplained(f"model version {version} could not be loaded here: {exc}")
        offset -= math.log(model.metadata.positive_weight)
        log_odds = sum(contributions.values()) + offset
        ranked = sorted(contributions.items(), key=lambda kv: kv[1], reverse=True)
        return Explanation(
            [(name, float(features.get(name, math.nan)), c) for name, c in ranked],
            offset,
            1.0 / (1.0 + math.exp(-max(min(log_odds, 700.0), -700.0))),
        )

    def _version(self, version: str) -> ModelArtifact:
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
        try:
            loaded = artifact.load(self._model_dir, version, key=self._key)
        except artifact.ModelNotFoundError:
            loaded = self._from_mysql(version)
        with self._lock:
            self._loaded[version] = loaded
            while len(self._loaded) > KEEP:
                self._loaded.popitem(last=False)
        return loaded

    def _from_mysql(self, version: str) -> ModelArtifact:
        with self._engine.connect() as connection:
            row = fetch_version(connection, version)
        if row is None:
            raise artifact.ModelNotFoundError(
                f"model version {version} is neither under {self._model_dir} nor in model_versions"
            )
        bases: Callable[[str], ModelArtifact] = self._version
        return from_row(row, key=self._key, bases=bases)


def feature_values(features: dict[str, Any]) -> list[tuple[str, float]]:
    """The stored features in name order (when contributions cannot be recomputed)."""
    return sorted((name, float(value)) for name, value in features.items())
