"""The step that owns the model: it learns from labelled payments and publishes versions.

All labelled payments are keyed to one key, so one worker holds the one
:class:`~model_state.learner.OnlineLearner`. A version is published every ``publish_every``
labels, at the latest ``publish_seconds`` (wall clock) after the first label it has not
published yet, and at the end of the input. Its first output is the version it started from, so
that ``model_versions`` records every version that scored payments.

Its snapshot is the pickled learner (a few KB): after a restart with Bytewax recovery the flow
goes on learning from where the last snapshot left it, not from the pre-trained file.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from model_state.artifact import ModelArtifact, VersionRecord
from model_state.learner import OnlineLearner
from storage.labels import LabelledPayment

LEARNER_KEY = "model"


class LearnStep(StatefulBatchLogic[LabelledPayment, VersionRecord, bytes]):
    def __init__(
        self,
        learner: OnlineLearner,
        last_publish: float,
        publish_seconds: float,
        announce: VersionRecord | None,
    ) -> None:
        self._learner = learner
        self._last_publish = last_publish
        self._publish_seconds = publish_seconds
        self._announce = announce

    def on_batch(self, values: list[LabelledPayment]) -> tuple[list[VersionRecord], bool]:
        out = [self._announce] if self._announce is not None else []
        self._announce = None
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

    def _publish(self) -> VersionRecord:
        self._last_publish = time.time()
        return self._learner.publish(datetime.now(UTC))


def learn_step(
    start: ModelArtifact, *, publish_every: int, publish_seconds: float
) -> Callable[[bytes | None], LearnStep]:
    """The builder for the learner's key: a new learner from ``start``, or the resumed one."""

    def build(resume: bytes | None) -> LearnStep:
        if resume is None:
            learner = OnlineLearner(start, publish_every)
            return LearnStep(learner, time.time(), publish_seconds, start.record)
        learner, last_publish, announce = pickle.loads(resume)
        return LearnStep(learner, last_publish, publish_seconds, announce)

    return build
