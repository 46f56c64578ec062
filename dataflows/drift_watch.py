"""Drift of what a flow process scores, as ``payscore_psi{subject}``: the population stability
index of the fraud probability and of the watched features (:data:`model_state.drift.
DRIFT_FEATURES`) over the last payments this process scored, against the training distribution
recorded with the scoring version (:mod:`model_state.drift`).

One watch per process, shared by its workers. When the scoring version's reference changes (a
retrained lineage), the window starts again: its old payments were measured against another
reference. A version that records no reference (trained before drift was watched) shows no PSI.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from dataflows.metrics import PSI
from features.catalog import FEATURE_NAMES
from model_state.drift import DriftMonitor
from model_state.scorer import Scorer

_values = itemgetter(*FEATURE_NAMES)


class DriftWatch:
    def __init__(self, window: int = 10_000) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._monitor: DriftMonitor | None = None
        self._reference: object = None

    def observe(
        self, scorer: Scorer, features: Sequence[dict[str, float]], probabilities: Sequence[float]
    ) -> None:
        """Add a batch scored by ``scorer`` and set the gauges."""
        reference = scorer.drift_reference
        if not reference or not features:
            return
        x = np.array([_values(f) for f in features], dtype=np.float64)
        with self._lock:
            if reference is not self._reference:
                self._reference = reference
                self._monitor = DriftMonitor(reference, self._window)
                PSI.clear()
            assert self._monitor is not None
            self._monitor.observe(x, np.asarray(probabilities, dtype=np.float64))
            for subject, value in self._monitor.values().items():
                PSI.labels(subject).set(value)
