"""The loader's logic with a fake store: first load in line, retries at start, refusals kept
apart, never going back to an older version. (Against MySQL: tests/test_rules_store.py.)"""

from __future__ import annotations

import gc
import threading

import pytest

from rules.lists import ListIndex
from rules.loader import RulesUnavailableError, RulesWatch
from rules.ruleset import RuleSpec
from rules.store import ListRef, Snapshot


class FakeStore:
    def __init__(self) -> None:
        self.versions: dict[int, Snapshot] = {}
        self.failures = 0
        self.load_failures = 0
        self.loads: list[int] = []

    def newest(self) -> int:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("MySQL is away")
        return max(self.versions, default=0)

    def load(self, version: int, cache: dict) -> tuple[Snapshot, dict[str, ListIndex]]:
        self.loads.append(version)
        if self.load_failures:
            self.load_failures -= 1
            raise ConnectionResetError("MySQL went away while the version loaded")
        snap = self.versions[version]
        lists = {}
        for name, ref in snap.lists.items():
            key = (name, ref.blob)
            cache.setdefault(key, ListIndex.build(name, ref.kind, {"c-1": None}))
            lists[name] = cache[key]
        return snap, lists

    def add(self, version: int, *rules: tuple[str, str]) -> None:
        self.versions[version] = Snapshot(
            version,
            tuple(RuleSpec(i, t, "active") for i, t in rules),
            {"blocked_cards": ListRef("card", 1, 1)},
        )


def watch(store: FakeStore) -> RulesWatch:
    return RulesWatch(store.newest, store.load, refresh_seconds=3600)


def test_start_retries_while_mysql_is_away_then_applies_the_newest(monkeypatch):
    monkeypatch.setattr("rules.loader.time.sleep", lambda _: None)
    store = FakeStore()
    store.add(1, ("a", "decline if card_id in @blocked_cards"))
    store.add(2, ("a", "decline if card_id in @blocked_cards"), ("b", "review if amount_eur > 1"))
    store.failures = 3
    w = watch(store).start(patience=60)
    assert w.current().version == 2 and store.loads == [2]
    w.stop()


def test_start_gives_up_when_mysql_stays_away(monkeypatch):
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr("rules.loader.time.monotonic", lambda: float(next(clock)))
    monkeypatch.setattr("rules.loader.time.sleep", lambda _: None)
    store = FakeStore()
    store.failures = 10**6
    with pytest.raises(
        RulesUnavailableError, match="could not look up the ruleset for 30 s: MySQL is away"
    ):
        watch(store).start(patience=30)


def test_a_refused_version_is_tried_once_and_the_next_one_applies():
    store = FakeStore()
    store.add(1, ("a", "decline if amount_eur > 1"))
    w = watch(store)
    assert w.refresh() is True
    store.add(2, ("a", "decline if amount_eur >"))
    assert w.refresh() is False and w.refresh() is False
    assert store.loads == [1, 2] and w.current().version == 1
    store.add(3, ("a", "decline if amount_eur > 2"))
    assert w.refresh() is True and w.current().version == 3
    assert w.refresh() is False


def test_no_version_yet_is_the_empty_ruleset_and_no_error():
    w = watch(FakeStore()).start()
    assert w.current().version == 0 and w.current().rules == ()
    w.stop()


def test_mysql_away_while_a_version_loads_refuses_nothing(monkeypatch, caplog):
    """Review of issue 21: MySQL lost between the look-up of the newest version and its load made
    that version refused for good (at start: the flow decided without its rules, version 0)."""
    monkeypatch.setattr("rules.loader.time.sleep", lambda _: None)
    store = FakeStore()
    store.add(1, ("a", "decline if card_id in @blocked_cards"))
    store.load_failures = 2
    w = watch(store).start(patience=60)
    assert w.current().version == 1 and store.loads == [1, 1, 1]
    store.add(2, ("a", "decline if card_id in @blocked_cards"), ("b", "review if amount_eur > 1"))
    store.load_failures = 1
    assert w.refresh() is False and w.current().version == 1
    assert w.refresh() is True and w.current().version == 2
    assert not [r for r in caplog.records if getattr(r, "event", "") == "ruleset_refused"]
    w.stop()


def test_start_gives_up_when_versions_cannot_be_loaded(monkeypatch):
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr("rules.loader.time.monotonic", lambda: float(next(clock)))
    monkeypatch.setattr("rules.loader.time.sleep", lambda _: None)
    store = FakeStore()
    store.add(1, ("a", "decline if card_id in @blocked_cards"))
    store.load_failures = 10**6
    with pytest.raises(RulesUnavailableError, match="went away while the version loaded"):
        watch(store).start(patience=30)


def test_at_start_a_refused_newest_version_falls_back_on_the_newest_that_loads(caplog):
    """Review of issue 21: a running process keeps its last good version when a newer one is
    refused; a restarted one had none and decided with no rule at all (version 0)."""
    store = FakeStore()
    store.add(1, ("a", "decline if card_id in @blocked_cards"))
    store.add(2, ("a", "decline if card_id in @blocked_cards"), ("b", "review if amount_eur > 1"))
    store.add(3, ("a", "decline if amount_eur >"))
    store.add(4, ("a", "decline if no_such_feature > 1"))  # two refused in a row: 4, then 3
    w = watch(store).start()
    assert w.current().version == 2 and [r.rule_id for r in w.current().rules] == ["a", "b"]
    assert store.loads == [4, 3, 2]
    fell = [r for r in caplog.records if getattr(r, "event", "") == "ruleset_fell_back"]
    assert len(fell) == 1 and "version 4 refused at start" in fell[0].getMessage()
    assert w.refresh() is False and w.current().version == 2  # 4 stays refused, tried once
    store.add(5, ("a", "decline if amount_eur > 2"))
    assert w.refresh() is True and w.current().version == 5
    w.stop()


def test_at_start_with_no_version_that_loads_it_says_so():
    store = FakeStore()
    store.add(1, ("a", "decline if amount_eur >"))
    w = watch(store).start()
    assert w.current().version == 0 and store.loads == [1]
    w.stop()


def test_the_watch_thread_ends_once_the_watch_is_gone() -> None:
    """A flow run inside a test's process must not leave a thread polling a dropped database."""
    store = FakeStore()
    store.add(1, ("r", "decline if card_id in @blocked_cards priority 1"))
    before = set(threading.enumerate())
    started = RulesWatch(store.newest, store.load, refresh_seconds=0.02).start()
    (thread,) = [t for t in set(threading.enumerate()) - before if t.name == "payscore-rules-watch"]
    del started
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
