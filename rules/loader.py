"""The flow's view of the rules: the newest ruleset version, compiled, with its lists.

One :class:`RulesWatch` per process, shared by its worker threads. :meth:`RulesWatch.start` loads
the newest version in line (so a restarted flow applies the newest version, never a stale one;
if MySQL cannot be asked for ``patience`` seconds it raises rather than decide without rules),
then a daemon thread looks every ``refresh_seconds``: first one primary-key look-up of the newest
version number; only when it moved, the version's rules and the packed form of each list that
changed (lists that did not change are kept). The new :class:`~rules.ruleset.Ruleset` is compiled
beside the current one and replaces it in one assignment, so scoring never waits for a load.

A version that fails to load or compile (a rule this code cannot run, a list missing) is logged
once, at ERROR, with a bounded message, and skipped: the last good version stays until a newer one
loads; at start, when the newest version is refused, the newest before it that loads applies
(:meth:`RulesWatch._fall_back`). A failed look-up or load because MySQL could not be asked (a
driver error, a socket error: :data:`UNREACHABLE`) refuses nothing: it is logged and tried again at
the next tick (at start, every second for ``patience`` seconds), so an outage while a version loads
never makes a process skip that version, nor start deciding without it.

>>> watch = RulesWatch(lambda: 0, lambda version, cache: None, refresh_seconds=5)
>>> watch.current().version, len(watch.current().rules)
(0, 0)
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

from rules.lists import ListIndex
from rules.ruleset import Ruleset, compile_ruleset
from rules.store import RulesStore, Snapshot

log = logging.getLogger(__name__)

NewestVersion = Callable[[], int]
Load = Callable[
    [int, dict[tuple[str, int], ListIndex]], tuple[Snapshot, dict[str, ListIndex]] | None
]
MAX_LOGGED_CHARS = 500
# Failures that say MySQL could not be asked, not that the version is bad: tried again, never
# refused.
UNREACHABLE: tuple[type[BaseException], ...] = (DBAPIError, OSError)
FALL_BACK_VERSIONS = 50  # versions tried before a refused one, at start


class RulesUnavailableError(RuntimeError):
    """The rules could not be looked up at start."""


class RulesWatch:
    def __init__(self, newest: NewestVersion, load: Load, *, refresh_seconds: float) -> None:
        if refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds must be > 0; got {refresh_seconds}")
        self._newest = newest
        self._load = load
        self._refresh_seconds = refresh_seconds
        self._ruleset = Ruleset(0, (), {})
        self._cache: dict[tuple[str, int], ListIndex] = {}
        self._refused: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_failure = ""

    @classmethod
    def from_store(cls, store: RulesStore, *, refresh_seconds: float) -> RulesWatch:
        return cls(
            store.newest_version,
            lambda v, cache: store.load(v, cache),
            refresh_seconds=refresh_seconds,
        )

    def current(self) -> Ruleset:
        """The ruleset to decide with now (never blocks)."""
        return self._ruleset

    def start(self, patience: float = 30.0) -> RulesWatch:
        """Load the newest version now, then keep looking on a daemon thread. While MySQL cannot
        be asked, the first look-up is tried again every second for ``patience`` seconds, then
        :class:`RulesUnavailableError`: a flow must not start deciding without its block lists."""
        deadline = time.monotonic() + patience
        while not self._look_up_once():
            if time.monotonic() >= deadline:
                raise RulesUnavailableError(
                    f"MySQL unavailable: could not look up the ruleset for {patience:.0f} s: "
                    f"{self._last_failure[:MAX_LOGGED_CHARS]}"
                )
            time.sleep(1.0)
        self._fall_back()
        if self._thread is None:
            self._thread = threading.Thread(
                target=_watch,
                args=(weakref.ref(self), self._stop, self._refresh_seconds),
                name="payscore-rules-watch",
                daemon=True,
            )
            self._thread.start()
        return self

    def _fall_back(self) -> None:
        """At start, when the newest version was refused: the newest of the
        :data:`FALL_BACK_VERSIONS` before it that loads, as a running process keeps its last good
        version (a restarted one has none in memory and would decide with no rule at all)."""
        with self._lock:
            if self._ruleset.version != 0 or not self._refused:
                return
            refused = max(self._refused)
            for version in range(refused - 1, max(0, refused - 1 - FALL_BACK_VERSIONS), -1):
                try:
                    loaded = self._load(version, self._cache)
                    if loaded is None:
                        continue
                    snapshot, lists = loaded
                    ruleset = compile_ruleset(snapshot.rules, lists, version=snapshot.version)
                except UNREACHABLE as exc:  # MySQL gone again: the watch goes on from here
                    log.warning(
                        "could not load ruleset version %d to fall back on: %s",
                        version,
                        str(exc)[:MAX_LOGGED_CHARS],
                        extra={"event": "ruleset_load_failed", "version": version},
                    )
                    return
                except Exception:
                    continue
                self._ruleset = ruleset
                log.error(
                    "ruleset version %d refused at start: deciding with version %d, the newest "
                    "before it that loads, until a newer one does",
                    refused,
                    version,
                    extra={"event": "ruleset_fell_back", "version": version},
                )
                return
            log.error(
                "ruleset version %d refused at start and none of the %d before it loads: "
                "deciding with no rule until a newer version loads",
                refused,
                min(FALL_BACK_VERSIONS, refused - 1),
                extra={"event": "ruleset_fell_back", "version": 0},
            )

    def stop(self) -> None:
        self._stop.set()

    def _look_up_once(self) -> bool:
        """One look; False only when MySQL could not be asked (for the newest version number or
        for the version itself)."""
        self._last_failure = ""
        self.refresh()
        return not self._last_failure

    def refresh(self) -> bool:
        """One look: True when a newer version was adopted."""
        with self._lock:
            current = self._ruleset.version
            try:
                newest = self._newest()
            except Exception as exc:
                self._last_failure = str(exc) or type(exc).__name__
                log.warning(
                    "could not look for a ruleset version newer than %d: %s",
                    current,
                    str(exc)[:MAX_LOGGED_CHARS],
                    extra={"event": "ruleset_lookup_failed"},
                )
                return False
            if newest <= current or newest in self._refused:
                return False
            try:
                loaded = self._load(newest, self._cache)
                if loaded is None:
                    return False
                snapshot, lists = loaded
                ruleset = compile_ruleset(snapshot.rules, lists, version=snapshot.version)
            except UNREACHABLE as exc:
                self._last_failure = str(exc) or type(exc).__name__
                log.warning(
                    "could not load ruleset version %d (MySQL unavailable), still deciding with "
                    "version %d, trying again: %s",
                    newest,
                    current,
                    str(exc)[:MAX_LOGGED_CHARS],
                    extra={"event": "ruleset_load_failed", "version": newest},
                )
                return False
            except Exception as exc:
                self._refused.add(newest)
                log.error(
                    "ruleset version %d refused, still deciding with version %d: %s",
                    newest,
                    current,
                    str(exc)[:MAX_LOGGED_CHARS],
                    extra={"event": "ruleset_refused", "version": newest},
                )
                return False
            self._ruleset = ruleset
            keep = {(name, ref.blob) for name, ref in snapshot.lists.items()}
            self._cache = {k: v for k, v in self._cache.items() if k in keep}
            log.warning(
                "deciding with ruleset version %d (was %d): %d rules, %d lists",
                ruleset.version,
                current,
                len(ruleset.rules),
                len(lists),
                extra={"event": "ruleset_adopted", "version": ruleset.version},
            )
            return True


def _watch(watch: weakref.ref[RulesWatch], stop: threading.Event, seconds: float) -> None:
    """The thread :meth:`RulesWatch.start` starts: it refreshes every ``seconds`` until stopped
    or until the watch is gone (a flow run inside a test's process leaves no thread behind)."""
    while not stop.wait(seconds):
        alive = watch()
        if alive is None:
            return
        alive.refresh()
        del alive
