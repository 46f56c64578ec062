"""What an evaluation produces: one online run's record and one seed's evaluation, as the
command (:mod:`model_state.offline.evaluate`) makes them and the report
(:mod:`model_state.offline.eval_report`) shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_state.offline.eval_stream import Replayed


@dataclass
class OnlineRun:
    """What the online model did over a stream."""

    scores: np.ndarray
    learned_before: np.ndarray  # labels the learner had learned when each payment was scored
    labels_learned: int = 0
    learn_seconds: float = 0.0
    versions_published: int = 0
    retrained: int = 0
    refused: int = 0  # retrains whose challenger ranked below the champion
    learner_bytes: int = 0
    versions: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)  # labels learned by kind
    sampled_out: int = 0  # legitimate labels negative downsampling left out
    duplicates: int = 0  # legitimate labels of payments learned as implicit negatives already
    learned_after_last_payment: int = 0  # learned after the last payment was scored
    versions_adopted: int = 0  # online versions the judge let score with their own weights
    judge_switches: int = 0  # versions whose scoring weights (own or root's) differ from the last
    adopted_at: list[float] = field(default_factory=list)  # report times scoring took own weights
    # report times a lineage's learned weights first led its root's by the judge's evidence
    # (model_state.online_judge.adopted), matured or not: what the maturity rule waits past
    evidence_at: list[float] = field(default_factory=list)
    rolled_back: int = 0  # retrains rolled back to the champion they replaced (--rollback)
    rollbacks_superseded: int = 0  # watched retrains a later retrain replaced before a verdict
    rollbacks: list[dict[str, Any]] = field(default_factory=list)  # each verdict, with its time
    retrains_held: int = 0  # due times a retrain waited for a verdict (--rollback-hold)
    held_retrains_fitted: int = 0  # held retrains fitted once the verdict came
    held_at_end: bool = False  # a retrain still held when the stream ended (no verdict)

    @property
    def labels_per_second(self) -> float:
        return self.labels_learned / self.learn_seconds if self.learn_seconds else float("nan")


@dataclass
class Evaluation:
    """One seed's evaluation: what the report shows."""

    settings: dict[str, Any]
    replayed: Replayed
    test: np.ndarray  # rows scored from go-live on
    scores: dict[str, np.ndarray]
    table: dict[str, dict[str, float]]
    runs: dict[str, OnlineRun]
    seconds: dict[str, float]
    weekly: dict[str, list[float]] = field(default_factory=dict)  # AP per test week
    drift: dict[str, Any] = field(default_factory=dict)  # per model: the new pattern's figures
    gates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # each retrain's verdict
