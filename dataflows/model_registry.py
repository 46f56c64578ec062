"""Which model version scores: the newest one the learner has published, looked up in MySQL.

Each process has one registry, shared by its worker threads. Scoring asks it for the current
:class:`~model_state.scorer.Scorer`; at most once every ``refresh_seconds`` the registry asks
MySQL whether a newer version than its own is in ``model_versions`` and, if so, loads it (checking
its hash and feature names). The first call asks at once, so a restarted flow scores with the
latest published version, not the pre-trained file it started from.

Loading never holds scoring up: after the first look-up (made in line, at the first call), a
background thread of the process looks every ``refresh_seconds``, whether payments come or not,
while scoring goes on with the version it has; the new scorer replaces it in one assignment
when it is ready. An online version is a delta
of kilobytes on its lineage's root (:mod:`model_state.artifact`); the root, about 1.5 MB, is
fetched once per lineage and kept.

Bound: a version the learner publishes scores every worker's payments at most
``refresh_seconds`` plus one look-up after its row is stored (which happens in the epoch it is
published).
A worker never goes back to an older version: versions only move forward, in the numeric order
of :func:`storage.versions.version_key`. While MySQL is unavailable the look-up fails, is logged,
and scoring goes on with the version it has. A recorded row that cannot be loaded is passed
over (and logged once) by the look-up (:mod:`model_state.stored_versions`).

**Watched.** After every look-up the registry sets ``payscore_model_checked_timestamp_seconds``
and, when the newest recorded row (by lineage and sequence, loadable or not) is newer than the
version it scores with, ``payscore_model_behind_since_timestamp_seconds`` to when it first saw
it so (0 otherwise); the alert ``PayscoreModelNotAdopted`` fires when that lasts.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

from dataflows import metrics
from model_state.artifact import ModelArtifact
from model_state.online_judge import scoring_model
from model_state.scorer import Scorer
from storage.versions import version_key

log = logging.getLogger(__name__)

Fetch = Callable[[str | None], ModelArtifact | None]
# After a look-up: (lineage, sequence) of the newest recorded row after the version asked about.
NewestSeen = Callable[[], tuple[int, int] | None]
# Given the challenger shadowing now (or None): the one that should (the same, another or None).
FetchChallenger = Callable[[str | None], ModelArtifact | None]


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
        watch: bool = False,
        fetch_challenger: FetchChallenger | None = None,
        newest_seen: NewestSeen | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``watch``: after the first look-up, one background thread looks every
        ``refresh_seconds`` of real time, whether payments come or not (the flow); otherwise a
        look-up is started by a call to :meth:`current` when one is due (``clock``, tests).
        ``fetch_challenger``: the version shadowing the champion, if any, looked up with the
        champion (shadow scoring, :mod:`storage.shadow`). ``newest_seen``: what the last
        look-up found newest, for the metric of the module docstring (``wall_clock``)."""
        self._watch = watch
        self._fetch_challenger = fetch_challenger
        self._challenger: Scorer | None = None
        self._refused_challengers: set[str] = set()  # logged once, not tried again
        self._unscorable: set[str] = set()  # loaded, but no scorer takes it: logged once
        self._fetch_newer = fetch_newer
        self._newest_seen = newest_seen
        self._wall_clock = wall_clock
        self._behind_since: float | None = None
        self._refresh_seconds = refresh_seconds
        self._review = review
        self._decline = decline
        self._clock = clock
        self._lock = threading.Lock()
        self._scorer = self._scorer_for(start)
        metrics.scoring_with(start.version, start.metadata.created_at)
        self._next_check = clock()  # ask at the first call
        self._first = True
        self._looking: threading.Thread | None = None

    def current(self) -> Scorer:
        if self._clock() >= self._next_check:
            with self._lock:
                if self._clock() >= self._next_check and not (
                    self._looking is not None and self._looking.is_alive()
                ):
                    self._next_check = self._clock() + self._refresh_seconds
                    if self._first:  # a restarted flow scores with the newest version at once
                        self._first = False
                        self._refresh()
                        if self._watch:
                            self._next_check = float("inf")  # the watcher looks from now on
                            threading.Thread(
                                target=_keep_watching,
                                args=(weakref.ref(self), self._refresh_seconds),
                                name="payscore-model-watch",
                                daemon=True,
                            ).start()
                    else:
                        self._looking = threading.Thread(
                            target=self._refresh, name="payscore-model-registry", daemon=True
                        )
                        self._looking.start()
        return self._scorer

    def challenger(self) -> Scorer | None:
        """The scorer of the version shadowing the champion, or None."""
        return self._challenger

    def _refresh(self) -> None:
        self._refresh_champion()
        if self._fetch_challenger is not None:
            self._refresh_challenger(self._fetch_challenger)

    def _refresh_challenger(self, fetch: FetchChallenger) -> None:
        current = self._challenger.version if self._challenger is not None else None
        try:
            found = fetch(current)
        except Exception as exc:
            log.warning("could not look for a challenger to shadow: %s", exc)
            return
        if found is None:
            if current is not None:
                self._challenger = None
                log.warning(
                    "shadow scoring with %s stopped",
                    current,
                    extra={"event": "shadow_stopped", "version": current},
                )
            return
        if found.version == current:
            return
        if found.version in self._refused_challengers:
            return
        try:
            self._challenger = self._scorer_for(found)
        except Exception as exc:
            self._refused_challengers.add(found.version)
            log.error(
                "cannot shadow with model version %s: %s",
                found.version,
                exc,
                extra={"event": "version_refused", "version": found.version},
            )
            return
        log.warning(
            "shadow scoring with %s beside the champion",
            found.version,
            extra={"event": "shadow_started", "version": found.version},
        )

    def _refresh_champion(self) -> None:
        current = self._scorer.version
        try:
            newer = self._fetch_newer(current)
        except Exception as exc:
            log.warning("could not look for a model version newer than %s: %s", current, exc)
            return
        try:
            self._adopt(current, newer)
        finally:
            self._watch_adoption()

    def _watch_adoption(self) -> None:
        now = self._wall_clock()
        newest = self._newest_seen() if self._newest_seen is not None else None
        if newest is not None and newest > version_key(self._scorer.version):
            if self._behind_since is None:
                self._behind_since = now
        else:
            self._behind_since = None
        metrics.model_checked(now, self._behind_since)

    def _adopt(self, current: str, newer: ModelArtifact | None) -> None:
        if newer is not None and version_key(newer.version) > version_key(current):
            if newer.version in self._unscorable:
                return
            try:
                scorer = self._scorer_for(newer)
            except Exception as exc:  # a version this scorer cannot explain: keep the current one
                self._unscorable.add(newer.version)
                log.error(
                    "cannot score with model version %s: %s",
                    newer.version,
                    exc,
                    extra={"event": "version_refused", "version": newer.version},
                )
                return
            self._scorer = scorer
            metrics.scoring_with(newer.version, newer.metadata.created_at)
            log.warning(
                "scoring with model version %s (was %s)",
                newer.version,
                current,
                extra={"event": "version_adopted", "version": newer.version},
            )

    def _scorer_for(self, artifact: ModelArtifact) -> Scorer:
        return Scorer(
            scoring_model(artifact),  # the root's weights where the online judge said so
            artifact.version,
            review=self._review,
            decline=self._decline,
            positive_weight=artifact.metadata.positive_weight,
            drift_reference=artifact.metadata.drift_reference,
        )


def _keep_watching(registry: weakref.ref[ModelRegistry], seconds: float) -> None:
    """The watcher of a registry made with ``watch``: it looks every ``seconds``, and ends once
    the registry is gone (a flow run in a test's process leaves no thread polling behind it)."""
    while True:
        time.sleep(seconds)
        alive = registry()
        if alive is None:
            return
        alive._refresh()
        del alive
