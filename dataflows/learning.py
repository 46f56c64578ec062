"""The step that owns the model: it learns from labelled payments and publishes versions.

All labelled payments are keyed to one key, so one worker holds the one
:class:`~model_state.learner.OnlineLearner`. A version is published every ``publish_every``
labels, at the latest ``publish_seconds`` (wall clock) after the first label it has not
published yet, and at the end of the input. Its first output is the version it started from, so
that ``model_versions`` records every version that scored payments.

When a retrain (:mod:`model_state.retrain`) has recorded a version of a newer lineage in
``model_versions``, the learner goes on from that version at its next batch of labels (it asks
at most every ``refresh_seconds``): ``v00002`` is followed by ``v00002.000001``. Labels learned
but not yet published in the old lineage are left behind with it.

Its snapshot is the pickled learner (the model and a few counters): after a restart with Bytewax
recovery the flow goes on learning from where the last snapshot left it, not from the
pre-trained file.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from dataflows.model_registry import Fetch
from model_state.artifact import ModelArtifact, VersionRecord
from model_state.learner import OnlineLearner
from storage.labels import LabelledPayment

LEARNER_KEY = "model"


class Lineages:
    """Asks, at most every ``refresh_seconds``, for a version of a newer lineage than one."""

    def __init__(
        self,
        fetch_newer: Fetch,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_newer = fetch_newer
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._next_check = clock()

    def newer_than(self, version: str) -> ModelArtifact | None:
        if self._clock() < self._next_check:
            return None
        self._next_check = self._clock() + self._refresh_seconds
        lineage = version.partition(".")[0]
        # "~" sorts after every digit: anything after "v00001.~" is of lineage v00002 or later.
        return self._fetch_newer(f"{lineage}.~")


class LearnStep(StatefulBatchLogic[LabelledPayment, VersionRecord, bytes]):
    def __init__(
        self,
        learner: OnlineLearner,
        last_publish: float,
        publish_seconds: float,
        announce: VersionRecord | None,
        lineages: Lineages | None = None,
    ) -> None:
        self._learner = learner
        self._last_publish = last_publish
        self._publish_seconds = publish_seconds
        self._announce = announce
        self._lineages = lineages

    def on_batch(self, values: list[LabelledPayment]) -> tuple[list[VersionRecord], bool]:
        out = [self._announce] if self._announce is not None else []
        self._announce = None
        self._adopt_retrained()
        for example in values:
            self._learner.learn(example)
            if self._learner.due:
                out.append(self._publish())
        return out, self.RETAIN

    def on_notify(self) -> tuple[list[VersionRecord], bool]:
        return ([self._publish()] if self._learner.pending else []), self.RETAIN

    def on_eof(self) -> tuple[list[VersionRecord], bool]:
        return self.on_notify()

    def notify_at(self) -> datetime | None:
        if not self._learner.pending:
            return None
        return datetime.fromtimestamp(self._last_publish + self._publish_seconds, UTC)

    def snapshot(self) -> bytes:
        return pickle.dumps(
            (self._learner, self._last_publish, self._announce), protocol=pickle.HIGHEST_PROTOCOL
        )

    def _adopt_retrained(self) -> None:
        newer = self._lineages.newer_than(self._learner.version) if self._lineages else None
        if newer is not None:
            self._learner = OnlineLearner(newer, self._learner.publish_every)

    def _publish(self) -> VersionRecord:
        self._last_publish = time.time()
        return self._learner.publish(datetime.now(UTC))


def learn_step(
    start: ModelArtifact,
    *,
    publish_every: int,
    publish_seconds: float,
    lineages: Lineages | None = None,
) -> Callable[[bytes | None], LearnStep]:
    """The builder for the learner's key: a new learner from ``start``, or the resumed one."""

    def build(resume: bytes | None) -> LearnStep:
        if resume is None:
            learner = OnlineLearner(start, publish_every)
            return LearnStep(learner, time.time(), publish_seconds, start.record, lineages)
        learner, last_publish, announce = pickle.loads(resume)
        return LearnStep(learner, last_publish, publish_seconds, announce, lineages)

    return build
