"""The step that owns the model: it learns from labelled payments and publishes versions.

A labelled payment comes as one of three kinds (:class:`~model_state.label_kinds.LabelKind`,
``LabelledPayment.kind``): a label message (``explicit``), an implicit negative
(:mod:`dataflows.implicit_negatives`) or a fraud correcting one (``correction``), each with the
sampling weight negative downsampling gave it (``LabelledPayment.weight``); it is learned as
that kind with that weight, and counted in ``payscore_labels_learned_total{kind=...}``.

All labelled payments are keyed to one key, so one worker holds the one
:class:`~model_state.learner.OnlineLearner`. A version is published every ``publish_every``
labels, at the latest ``publish_seconds`` (wall clock) after the first label it has not
published yet, and at the end of the input. Its first output is the version it started from, so
that ``model_versions`` records every version that scored payments.

**Exactly once.** A published version is recorded in MySQL together with the labels it learned
(:func:`storage.versions.record_version`), and it holds the learner's whole state. When the
learner is built (new, or resumed from a Bytewax snapshot) it goes on from the newest version
recorded after its own, if any: a crash can lose the epochs after the last snapshot, but not the
versions already recorded in them, and each of those holds everything its learner had learned.
A label replayed after the crash is then skipped if that version learned it
(:meth:`~model_state.learner.OnlineLearner.knows`), and learned otherwise. So every label
claimed is learned once, and a version's parent is always the state it was learned from.

A version is recorded under the name the learner gave it, or, when a row the key does not vouch
for stands there, under the next free name of its lineage (:mod:`model_state.checkpoints`), and
its labels are marked as learned by the name it was recorded under. A forged row never stops the
learner: when it is built, the look-up passes over every refused row.

When a retrain (:mod:`model_state.offline.retrain`) has recorded a version of a newer lineage, the
learner goes on from it at its next batch of labels (it asks at most every
``refresh_seconds``): ``v00002`` is followed by ``v00002.000001``. Labels learned but not yet
published in the old lineage are left behind with it.

Its snapshot is the pickled learner (the model and a few counters).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from dataflows.metrics import LEARNED, LEARNER_BACKLOG, OUTDATED, SKIPPED, snapshot_timer
from dataflows.model_registry import Fetch
from features.catalog import FEATURE_NAMES
from model_state.artifact import (
    ModelArtifact,
    ModelMismatchError,
    ModelNotFoundError,
    VersionRecord,
)
from model_state.learner import OnlineLearner
from model_state.signing import UntrustedModelError
from storage.labels import LabelledPayment
from storage.versions import version_key

log = logging.getLogger(__name__)

LEARNER_KEY = "model"
_CATALOGUE = frozenset(FEATURE_NAMES)
_TIMED = snapshot_timer("learn")


class Lineages:
    """Asks, at most every ``refresh_seconds`` (or now, when forced), for the newest version
    recorded after a given one. A failed look-up (MySQL unavailable) is logged and retried at the
    next check; learning goes on meanwhile."""

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
        self._held: set[str] = set()  # versions that held the learner up, logged once

    def newer_than(self, version: str, *, now: bool = False) -> ModelArtifact | None:
        """The newest version after ``version`` that loads, or None. The look-up passes over
        every row it refuses (:mod:`model_state.stored_versions`): a forged row may hold the
        learner up, never stop it. A look-up that raises a refusal anyway (a loader of another
        kind) stops the learner when ``now`` (when it is built); later it is logged once as an
        error and learning goes on from ``version``."""
        if not now and self._clock() < self._next_check:
            return None
        self._next_check = self._clock() + self._refresh_seconds
        try:
            return self._fetch_newer(version)
        except (UntrustedModelError, ModelMismatchError, ModelNotFoundError) as exc:
            if now:
                raise
            if exc_version(exc) not in self._held:
                self._held.add(exc_version(exc))
                log.error(
                    "not going on from model version %s: %s",
                    exc_version(exc),
                    exc,
                    extra={"event": "version_refused", "version": exc_version(exc)},
                )
            return None
        except Exception as exc:
            if now:
                raise
            log.warning("could not look for a model version newer than %s: %s", version, exc)
            return None


def exc_version(exc: BaseException) -> str:
    """The version a refusal names (its row's name), or ``?``."""
    return str(getattr(exc, "version", "") or "?")


class LearnStep(StatefulBatchLogic[LabelledPayment, VersionRecord, bytes]):
    def __init__(
        self,
        learner: OnlineLearner,
        last_publish: float,
        publish_seconds: float,
        announce: VersionRecord | tuple[VersionRecord, ...] | None,
        lineages: Lineages | None = None,
    ) -> None:
        """``announce``: versions to record with the first batch (the start version, after its
        lineage root when it is a delta); a snapshot taken before roots were announced holds one
        record or None."""
        self._learner = learner
        self._last_publish = last_publish
        self._publish_seconds = publish_seconds
        if isinstance(announce, VersionRecord):
            announce = (announce,)
        self._announce: tuple[VersionRecord, ...] = announce or ()
        self._lineages = lineages
        self._adopt_newer(now=True)

    def on_batch(self, values: list[LabelledPayment]) -> tuple[list[VersionRecord], bool]:
        out = list(self._announce)
        self._announce = ()
        self._adopt_newer()
        learner = self._learner
        # The frozen expansion of every complete example, walked at once (see OnlineLearner).
        complete = [example.features.keys() >= _CATALOGUE for example in values]
        full = [example for example, whole in zip(values, complete, strict=True) if whole]
        prepared = iter(learner.prepare(full) or [None] * len(full))
        for example, whole in zip(values, complete, strict=True):
            columns = next(prepared) if whole else None
            if learner.knows(example):
                SKIPPED.inc()
                continue
            if not whole:  # scored before a catalogue upgrade
                missing = [n for n in FEATURE_NAMES if n not in example.features]
                OUTDATED.inc()
                log.warning(
                    "label of transaction %s not learned: its payment was scored with another "
                    "feature catalogue (missing %d features, e.g. %s); it stays claimed, with "
                    "no learned_version",
                    example.transaction_id,
                    len(missing),
                    missing[0],
                )
                continue
            learner.learn(example, columns, kind=example.kind, weight=example.weight)
            LEARNED.labels(example.kind.value).inc()
            if learner.due:
                out.append(self._publish())
        LEARNER_BACKLOG.set(learner.pending)
        return out, self.RETAIN

    def on_notify(self) -> tuple[list[VersionRecord], bool]:
        out = [self._publish()] if self._learner.pending else []
        LEARNER_BACKLOG.set(self._learner.pending)
        return out, self.RETAIN

    def on_eof(self) -> tuple[list[VersionRecord], bool]:
        return self.on_notify()

    def notify_at(self) -> datetime | None:
        if not self._learner.pending:
            return None
        return datetime.fromtimestamp(self._last_publish + self._publish_seconds, UTC)

    def snapshot(self) -> bytes:
        started = time.perf_counter()
        state = pickle.dumps(
            (self._learner, self._last_publish, self._announce), protocol=pickle.HIGHEST_PROTOCOL
        )
        _TIMED(time.perf_counter() - started)
        return state

    def _adopt_newer(self, *, now: bool = False) -> None:
        if self._lineages is None:
            return
        current = self._learner.version
        newer = self._lineages.newer_than(current, now=now)
        if newer is None or version_key(newer.version) <= version_key(current):
            return
        if not now and version_key(newer.version)[0] == version_key(current)[0]:
            # Once built, the learner is the only writer of its lineage: a newer version of it
            # is one of its own, recorded under the next free name (model_state.checkpoints),
            # and holds nothing the learner lacks; going on from it would drop what is pending.
            # Its next versions are named after it.
            self._learner.recorded_as(newer.version)
            log.warning(
                "learner's versions go on after %s, the name its last one was recorded under",
                newer.version,
                extra={"event": "version_renamed", "version": newer.version},
            )
            return
        log.warning(
            "learner goes on from version %s (was at %s with %d labels unpublished)",
            newer.version,
            current,
            self._learner.pending,
            extra={"event": "version_adopted", "version": newer.version},
        )
        # A judge whose evidence spans lineages goes on with it (model_state.window_judge).
        self._learner = OnlineLearner(newer, self._learner.publish_every, previous=self._learner)

    def _publish(self) -> VersionRecord:
        self._last_publish = time.time()
        return self._learner.publish(datetime.now(UTC))


def learn_step(
    start: ModelArtifact,
    *,
    publish_every: int,
    publish_seconds: float,
    lineages: Lineages | None = None,
    root: ModelArtifact | None = None,
) -> Callable[[bytes | None], LearnStep]:
    """The builder for the learner's key: a new learner from ``start``, or the resumed one; either
    goes on from a newer recorded version if there is one. A new learner records ``start`` (and
    ``root``, the lineage root a delta ``start`` refers to, first) with its first batch, so that
    every process can load it from MySQL."""
    first = (start.record,) if root is None else (root.record, start.record)

    def build(resume: bytes | None) -> LearnStep:
        if resume is None:
            learner = OnlineLearner(start, publish_every)
            return LearnStep(learner, time.time(), publish_seconds, first, lineages)
        learner, last_publish, announce = pickle.loads(resume)
        log.info(
            "learner resumed from a recovery snapshot at version %s (%d labels unpublished)",
            learner.version,
            learner.pending,
            extra={"event": "resumed", "version": learner.version},
        )
        return LearnStep(learner, last_publish, publish_seconds, announce, lineages)

    return build
