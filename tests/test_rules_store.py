"""Rules and lists in the real MySQL: versions, audit, refusals that write nothing, CSV import,
rollback, and the flow's loader keeping the last good version."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, text

from rules import hashes, lists
from rules.loader import RulesWatch
from rules.store import ImportRefusedError, NewEntry, RulesStore
from rules.syntax import RuleSyntaxError
from storage.tables import fraud_rules, rule_list_entries, ruleset_audit, ruleset_versions

pytestmark = pytest.mark.integration


def counts(engine: Engine) -> tuple[int, int, int, int]:
    with engine.connect() as c:
        return tuple(  # type: ignore[return-value]
            c.execute(select(func.count()).select_from(t)).scalar()
            for t in (ruleset_versions, ruleset_audit, fraud_rules, rule_list_entries)
        )


@pytest.fixture
def store(review_engine: Engine) -> RulesStore:
    """The store as analysts use it: the review account's (storage/accounts.py)."""
    return RulesStore(review_engine, patience=5)


def write_unloadable_version(connection, version: int, *, like: int) -> None:
    """Store ruleset ``version`` behind the store's back (only the admin account may), as an
    older or newer payscore might write it: ``like``'s lists with a rule this code cannot run."""
    connection.execute(
        text(
            "INSERT INTO ruleset_versions "
            "(version, created_at, created_by, `change`, rules, lists) "
            "SELECT :version, created_at, 'x', 'broken', JSON_ARRAY(JSON_OBJECT('rule_id', 'r', "
            "'text', 'decline if no_such_feature > 1', 'status', 'active')), lists "
            "FROM ruleset_versions WHERE version = :like"
        ),
        {"version": version, "like": like},
    )


def test_every_change_is_a_version_with_its_audit_and_a_malformed_rule_is_never_stored(
    store, review_engine
):
    engine = review_engine
    assert store.newest_version() == 0
    assert store.create_list("blocked_cards", "card", by="ana") == 1
    v = store.add_rule("blocked", "decline if card_id in @blocked_cards priority 1", by="ana")
    assert v == 2
    before = counts(engine)
    for bad in (
        "decline if card_id in @nope",
        "decline if amount_eur > 'x'",
        "decline if country in @blocked_cards",
        "decline when amount_eur > 1",
    ):
        with pytest.raises(RuleSyntaxError):
            store.add_rule("bad", bad, by="ana")
        with pytest.raises(RuleSyntaxError):
            store.edit_rule("blocked", bad, by="ana")
    with pytest.raises(ValueError, match="rule id"):
        store.add_rule("bad id with spaces", "decline if amount_eur > 1", by="ana")
    with pytest.raises(ValueError, match="status"):
        store.set_status("blocked", "on", by="ana")
    with pytest.raises(ValueError, match="exists already"):
        store.add_rule("blocked", "decline if amount_eur > 1", by="ana")
    with pytest.raises(ValueError, match="who makes a change"):
        store.add_rule("ok", "decline if amount_eur > 1", by="ana; drop table")
    assert counts(engine) == before  # nothing written by any refusal

    assert (
        store.edit_rule("blocked", "decline if card_id in @blocked_cards and amount_eur>0", by="bo")
        == 3
    )
    assert store.set_status("blocked", "active", by="bo") == 4
    [rule] = store.rules()
    assert rule.text == "decline if card_id in @blocked_cards and amount_eur > 0 priority 100"
    assert (rule.status, rule.action, rule.priority, rule.version) == ("active", "decline", 100, 4)
    audit = store.audit()
    assert [(a.version, a.actor, a.action) for a in audit] == [
        (4, "bo", "set_status"),
        (3, "bo", "edit_rule"),
        (2, "ana", "add_rule"),
        (1, "ana", "create_list"),
    ]
    assert (
        audit[1]
        .diff["before"]["text"]
        .startswith("decline if card_id in @blocked_cards priority 1")
    )
    assert audit[0].diff == {
        "rule": "blocked",
        "before": {"text": rule.text, "status": "shadow"},
        "after": {"text": rule.text, "status": "active"},
    }


def test_entries_import_remove_diff_rollback_and_load(store, review_engine):
    engine = review_engine
    store.create_list("blocked_cards", "card", by="ana")
    store.create_list("risky_bins", "bin", by="ana")
    v_rules = store.add_rule(
        "bins", "review if card_id starts with @risky_bins", by="ana", status="active"
    )
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    v1 = store.add_entries(
        "blocked_cards",
        [NewEntry("c-1", None, "chargeback"), NewEntry("c-2", expiry, "stolen")],
        by="ana",
    )
    with pytest.raises(ValueError, match="a card id"):
        store.add_entries("blocked_cards", [NewEntry("bad value")], by="ana")
    with pytest.raises(ValueError, match="there is no list @nope"):
        store.add_entries("nope", [NewEntry("c-1")], by="ana")

    csv_text = (
        "value,expires_at,reason\nc-3,,ok\nbad value,,x\nc-4,2031-01-01,ok\nc-5,tomorrow,x\n"
        "c-3,,again\n"
    )
    before = counts(engine)
    with pytest.raises(ImportRefusedError) as refused:
        store.import_csv("blocked_cards", csv_text, by="ana")
    message = str(refused.value)
    assert "3 bad rows, nothing imported" in message
    assert "line 3: expected a card id" in message
    assert "line 5: expected an expiry" in message
    assert "line 6: 'c-3' is already on line 2" in message
    assert counts(engine) == before
    result = store.import_csv("blocked_cards", csv_text, by="ana", skip_bad=True)
    assert (result.imported, result.bad_count) == (2, 3)
    v2 = result.version
    assert [e.value for e in store.entries("blocked_cards")] == ["c-1", "c-2", "c-3", "c-4"]
    assert store.entries("blocked_cards", after="c-3")[0].expires_at == datetime(2031, 1, 1)

    v3 = store.remove_entries("blocked_cards", ["c-1"], by="bo")
    with pytest.raises(ValueError, match="not on @blocked_cards: 'c-9'"):
        store.remove_entries("blocked_cards", ["c-9"], by="bo")
    v4 = store.add_entries(
        "blocked_cards", [NewEntry("c-2", None, "for good")], by="bo"
    )  # replaces
    v5 = store.add_rule("cards", "decline if card_id in @blocked_cards", by="bo")
    assert [e.value for e in store.entries("blocked_cards")] == ["c-2", "c-3", "c-4"]

    snap, lists = store.load()
    assert snap.version == v5
    cards = lists["blocked_cards"]
    assert cards.size == 3
    assert cards.contains("c-2", 2e9) and not cards.contains("c-1", 0.0)  # c-2 replaced: no expiry
    assert cards.contains("c-4", 1.9e9) and not cards.contains("c-4", 1.93e9)

    diff = store.diff(v1, v5)
    assert diff.lists["blocked_cards"] == {
        "added": 2,
        "removed": 1,
        "replaced": 1,
        "examples": ["c-2", "c-3", "c-4"],
    }
    assert [r.rule_id for r in diff.rules_added] == ["cards"]
    assert any("+ rule cards" in line for line in diff.lines())
    # Backwards, the lists' counts were wrong ("+0 -0 ~0" for entries added and removed):
    with pytest.raises(ValueError, match=f"older version to a newer one; got from {v5} to {v1}"):
        store.diff(v5, v1)

    v6 = store.rollback(v1, by="carl")
    assert v6 == v5 + 1
    assert [e.value for e in store.entries("blocked_cards")] == ["c-1", "c-2"]
    assert [r.rule_id for r in store.rules()] == ["bins"]
    snap, lists = store.load()
    assert lists["blocked_cards"].contains("c-1", 0.0)
    assert lists["blocked_cards"].contains("c-2", 1.8e9) and not lists["blocked_cards"].contains(
        "c-2", 1.9e9
    )
    assert store.audit(1)[0].diff["rules_removed"] == ["cards"]
    # a rollback of the rollback: back to v5's state, as a new version again
    store.rollback(v5, by="carl")
    assert [e.value for e in store.entries("blocked_cards")] == ["c-2", "c-3", "c-4"]
    assert [r.rule_id for r in store.rules()] == ["bins", "cards"]
    assert v_rules < v1 < v2 < v3 < v4


def test_concurrent_changes_get_distinct_versions(store):
    errors = []

    def add(i: int) -> None:
        try:
            store.add_rule(f"r{i}", f"review if amount_eur > {i}", by="ana")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [v.version for v in store.versions()] == [6, 5, 4, 3, 2, 1]
    assert len(store.rules()) == 6


def test_the_loader_applies_the_newest_version_and_keeps_the_last_good_one(
    store, engine, admin_engine, caplog
):
    # The flow's loader reads as the flow's account: the newest version and its packed lists.
    watch = RulesWatch.from_store(RulesStore(engine, patience=5), refresh_seconds=60)
    watch.start()
    assert watch.current().version == 0
    store.create_list("blocked_cards", "card", by="ana")
    store.add_rule("cards", "decline if card_id in @blocked_cards", by="ana", status="active")
    store.add_entries("blocked_cards", [NewEntry("c-1")], by="ana")
    assert watch.refresh() is True
    good = watch.current()
    assert good.version == 3 and [r.rule_id for r in good.rules] == ["cards"]
    assert good.lists["blocked_cards"].contains("c-1", 0.0)
    assert watch.refresh() is False  # nothing new: one look-up

    # A version this code cannot run (written behind the store's back, as an older or newer
    # payscore might; only the admin account may): refused, logged once, the last good one stays.
    with admin_engine.begin() as c:
        write_unloadable_version(c, 4, like=3)
    with caplog.at_level(logging.ERROR, logger="rules.loader"):
        assert watch.refresh() is False
        assert watch.refresh() is False
    refused = [r for r in caplog.records if getattr(r, "event", "") == "ruleset_refused"]
    assert len(refused) == 1
    assert "ruleset version 4 refused, still deciding with version 3" in refused[0].getMessage()
    assert "no_such_feature" in refused[0].getMessage()
    assert len(refused[0].getMessage()) < 700
    assert watch.current() is good
    store.rollback(3, by="ana")  # version 5: version 3 again, good
    assert watch.refresh() is True
    assert watch.current().version == 5
    watch.stop()


def test_the_command_line(database_config, review_engine, tmp_path):
    """python -m rules, as the analysts' account (PAYSCORE_ANALYST_MYSQL_URL); every change
    recorded as the name given and the OS user who ran it."""
    import os
    import subprocess
    import sys

    from rules.__main__ import os_user

    env = {**os.environ, "PAYSCORE_ANALYST_MYSQL_URL": database_config.analyst_mysql_dsn}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rules", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert (
        cli("list-create", "high_risk_countries", "country", "--by", "ana").stdout == "version 1\n"
    )
    bad = cli(
        "add", "geo", "review if country in @high_risk_countries and amount_eur >", "--by", "ana"
    )
    assert bad.returncode == 2
    assert "refused: line 1, column 59: expected a number, a string, a name or `(`" in bad.stderr
    file = tmp_path / "countries.csv"
    file.write_text("value,reason\nNG,fraud ring\nXX,typo\nRU,\n")
    refused = cli("import", "high_risk_countries", str(file), "--by", "ana")
    assert refused.returncode == 2
    assert "line 3: expected an ISO 3166-1 alpha-2 country code; got 'XX'" in refused.stderr
    done = cli("import", "high_risk_countries", str(file), "--by", "ana", "--skip-bad")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 2 entries as version 2\n1 bad rows skipped:\nline 3:")
    ok = cli(
        "add", "geo", "review if country in @high_risk_countries and amount_eur>500", "--by", "ana"
    )
    assert ok.stdout == "version 3\n", ok.stderr
    assert cli("status", "geo", "active", "--by", "bo").stdout == "version 4\n"
    shown = cli("show").stdout
    assert shown.startswith(
        "geo\tactive\tv4\treview if country in @high_risk_countries and amount_eur > 500"
    )
    assert "~ rule geo:\n    status shadow -> active" in cli("diff", "3", "4").stdout
    assert cli("rollback", "2", "--by", "carl").stdout == "version 5\n"
    assert cli("show").stdout == ""
    me = os_user()
    assert cli("versions").stdout.splitlines()[0].endswith(f"carl@os:{me}\trollback to version 2")
    # Without --by, the OS user alone; a --by that would pass for another OS user is refused.
    assert cli("list-add", "high_risk_countries", "FR").stdout == "version 6\n"
    forged = cli("list-add", "high_risk_countries", "DE", "--by", "carl@os:carl")
    assert forged.returncode == 2 and "--by: expected 1 to 40 characters" in forged.stderr
    with review_engine.connect() as c:
        actors = c.execute(text("SELECT actor FROM ruleset_audit ORDER BY id")).scalars().all()
    assert actors == [f"ana@os:{me}"] * 3 + [f"bo@os:{me}", f"carl@os:{me}", f"os:{me}"]
    assert counts(review_engine)[0] == 6


def test_a_list_loads_one_part_at_a_time_into_its_compact_form(store, monkeypatch):
    monkeypatch.setattr(lists, "PART_BYTES", 256)  # several parts, values cut across them
    monkeypatch.setattr(hashes, "COMPACT_FROM", 100)  # the form of a million-entry list
    store.create_list("blocked_cards", "card", by="ana")
    values = [f"c-{i:05d}" for i in range(500)]
    expiry = datetime(2030, 1, 1, tzinfo=UTC)  # 1.893e9
    store.add_entries(
        "blocked_cards",
        [NewEntry(v, expiry if i % 7 == 0 else None, "feed") for i, v in enumerate(values)],
        by="ana",
    )
    snap, loaded = store.load()
    with store.engine.connect() as c:
        parts = list(store.stream_parts(c, "blocked_cards", snap.lists["blocked_cards"].blob))
        with pytest.raises(ValueError, match="no packed form stored for version 999"):
            store.stream_parts(c, "blocked_cards", 999)
    assert len(parts) > 3
    cards = loaded["blocked_cards"]
    assert isinstance(cards.hashes, hashes.SortedHashes) and cards.size == len(values)
    for i, v in enumerate(values):
        assert cards.contains(v, 1.8e9)
        assert cards.contains(v, 1.9e9) is (i % 7 != 0)
    assert not any(cards.contains(f"c-{i:05d}", 0.0) for i in range(500, 700))


def test_a_rule_too_long_once_canonical_is_never_stored_and_the_flow_keeps_loading(
    store, review_engine, engine
):
    """Review of issue 21: a rule within 4,000 characters as typed but longer in its canonical
    text (what is stored) was stored, then refused by every flow process at load, and so was
    every later version: no change applied any more. It is refused at once, storing nothing."""
    watch = RulesWatch.from_store(RulesStore(engine, patience=5), refresh_seconds=60)
    store.add_rule("big", "decline if amount_eur > 5000", by="ana", status="active")
    text = "review if amount_eur in (" + ",".join(["1e15"] * 790) + ")"
    assert len(text) <= 4000
    before = counts(review_engine)
    with pytest.raises(RuleSyntaxError, match="as stored"):
        store.add_rule("long", text, by="ana", status="active")
    with pytest.raises(RuleSyntaxError, match="as stored"):
        store.edit_rule("big", text, by="ana")
    assert counts(review_engine) == before
    store.set_status("big", "shadow", by="ana")
    assert watch.refresh() is True and watch.current().version == 2


def test_mysql_unreachable_while_a_version_loads_refuses_nothing(store, engine, caplog):
    """Review of issue 21: the newest version looked up, then MySQL unreachable while it loads (a
    real driver error: nothing listens on the port). That version was refused for good, and a
    flow starting then decided with no rule and no block list. Now it is tried again."""
    from storage.engine import make_engine

    store.create_list("blocked_cards", "card", by="ana")
    store.add_rule("cards", "decline if card_id in @blocked_cards", by="ana", status="active")
    store.add_entries("blocked_cards", [NewEntry("c-1")], by="ana")  # version 3
    flows = RulesStore(engine, patience=5)
    nowhere = make_engine("mysql+pymysql://payscore:x@127.0.0.1:1/payscore")
    unreachable = RulesStore(nowhere, patience=1)
    outages = [1]

    def load(version, cache):
        if outages[0]:
            outages[0] -= 1
            return unreachable.load(version, cache)
        return flows.load(version, cache)

    watch = RulesWatch(flows.newest_version, load, refresh_seconds=60)
    with caplog.at_level(logging.WARNING, logger="rules.loader"):
        watch.start(patience=20)
        assert watch.current().version == 3
        assert watch.current().lists["blocked_cards"].contains("c-1", 0.0)
        store.add_entries("blocked_cards", [NewEntry("c-2")], by="ana")  # version 4
        outages[0] = 1
        assert watch.refresh() is False and watch.current().version == 3
        assert watch.refresh() is True and watch.current().version == 4
    events = [getattr(r, "event", "") for r in caplog.records]
    assert "ruleset_refused" not in events and events.count("ruleset_load_failed") == 2
    watch.stop()
    nowhere.dispose()


def test_the_command_line_imports_a_hostile_csv_file_row_by_row(
    database_config, store, tmp_path, monkeypatch, capsys
):
    """Review of issue 21, ``python -m rules`` as the analysts' account on the real server: a
    spreadsheet's "CSV UTF-8" file (byte-order mark, CRLF) was refused whole; an expiry with no
    year in UTC was a traceback; a field past csv's size limit silently dropped every row after
    it under --skip-bad."""
    from rules.__main__ import main

    monkeypatch.setenv("PAYSCORE_ANALYST_MYSQL_URL", database_config.analyst_mysql_dsn)
    assert main(["list-create", "blocked_cards", "card", "--by", "ana"]) == 0
    file = tmp_path / "feed.csv"
    rows = [
        "\ufeffvalue,expires_at,reason",
        "c-1,,first",
        "c-2,9999-12-31T23:00:00-05:00,no year in UTC",
        "c-3,," + "x" * 200_000,
        "c-4,2027-01-01,last",
    ]
    file.write_bytes("\r\n".join(rows).encode("utf-8") + b"\r\n")
    capsys.readouterr()
    assert main(["import", "blocked_cards", str(file), "--by", "ana", "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("imported 2 entries as version 2\n2 bad rows skipped:\n"), out[:300]
    assert "line 3: expected an expiry within the years 1 to 9999" in out
    assert "line 4: not CSV: field larger than field limit" in out
    entries = {e.value: e.expires_at for e in store.entries("blocked_cards")}
    assert entries == {"c-1": None, "c-4": datetime(2027, 1, 1)}
    code = main(["list-add", "blocked_cards", "c-9", "--expires", "0001-01-01T00:00:00+01:00"])
    assert code == 2
    assert "refused: expected an expiry within the years 1 to 9999" in capsys.readouterr().err
    assert store.newest_version() == 2


@pytest.mark.parametrize("rule_id", ["model", ".", ".."])
def test_a_rule_may_not_take_a_reserved_id(store, review_engine, rule_id):
    """Review of issue 21: a rule named ``model`` that declined stored ``decided_by = 'model'``
    (and published it on the decisions topic): the payment read as the model's decision. A rule
    named ``..`` had a page no browser reaches (``/rules/..`` is ``/``)."""
    before = counts(review_engine)
    with pytest.raises(ValueError, match=f"a rule id may not be {rule_id!r}"):
        store.add_rule(rule_id, "decline if amount_eur > 1", by="ana", status="active")
    assert counts(review_engine) == before
    assert store.add_rule("model-1", "decline if amount_eur > 1", by="ana") == 1


def test_a_rule_stored_before_the_literal_check_still_loads_and_rolls_back(
    store, engine, admin_engine
):
    """The parser now refuses a literal its field can never hold (``country == "fr"``) in new
    text only: a version stored before that check (as an older payscore wrote it) still loads in
    the flow, where refusing it would leave a restarted flow with no rule at all, and a rollback
    to it works."""
    store.add_rule("fr", "review if amount_eur > 1", by="ana", status="active")  # version 1
    with admin_engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO ruleset_versions (version, created_at, created_by, `change`, rules, "
                "lists) SELECT 2, created_at, 'old', 'older payscore', JSON_ARRAY(JSON_OBJECT("
                "'rule_id', 'fr', 'text', 'review if country == \"fr\" priority 100', 'status', "
                "'active')), lists FROM ruleset_versions WHERE version = 1"
            )
        )
    with pytest.raises(RuleSyntaxError, match="a value `country` can hold"):
        store.edit_rule("fr", 'review if country == "fr"', by="ana")
    watch = RulesWatch.from_store(RulesStore(engine, patience=5), refresh_seconds=60)
    watch.start()
    assert watch.current().version == 2 and [r.rule_id for r in watch.current().rules] == ["fr"]
    assert store.set_status("fr", "shadow", by="ana") == 3
    assert store.rollback(2, by="ana") == 4
    assert store.snapshot().rules[0].text == 'review if country == "fr" priority 100'
    assert watch.refresh() is True and watch.current().version == 4
    watch.stop()


def test_a_flow_starting_when_the_newest_version_is_refused_applies_the_last_good_one(
    store, engine, admin_engine, caplog
):
    """Review of issue 21: a running flow keeps its last good version when a newer one cannot
    be compiled; a flow (re)started then had none in memory and decided with no rule and no
    block list at all. It now starts with the newest version before it that loads."""
    store.create_list("blocked_cards", "card", by="ana")
    store.add_rule("cards", "decline if card_id in @blocked_cards", by="ana", status="active")
    store.add_entries("blocked_cards", [NewEntry("c-1")], by="ana")  # version 3
    with admin_engine.begin() as c:  # as an older or newer payscore might write it
        write_unloadable_version(c, 4, like=3)
    with caplog.at_level(logging.WARNING, logger="rules.loader"):
        watch = RulesWatch.from_store(RulesStore(engine, patience=5), refresh_seconds=60)
        watch.start()
    assert watch.current().version == 3
    assert watch.current().lists["blocked_cards"].contains("c-1", 0.0)
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events.count("ruleset_refused") == 1 and events.count("ruleset_fell_back") == 1
    watch.stop()


@pytest.mark.parametrize(
    ("encoded", "byte"),
    [("latin-1", "0xe9"), ("utf-16", "0xff")],
)
def test_the_command_line_refuses_a_csv_file_not_in_utf8_naming_it(
    database_config, store, tmp_path, monkeypatch, capsys, encoded, byte
):
    """Before: ``refused: 'utf-8' codec can't decode byte 0xe9 in position 13: invalid
    continuation byte``, naming neither the file nor what was expected."""
    from rules.__main__ import main

    monkeypatch.setenv("PAYSCORE_ANALYST_MYSQL_URL", database_config.analyst_mysql_dsn)
    assert main(["list-create", "blocked_cards", "card", "--by", "ana"]) == 0
    file = tmp_path / "feed.csv"
    file.write_bytes("value,reason\nc-1,café\n".encode(encoded))
    capsys.readouterr()
    assert main(["import", "blocked_cards", str(file), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert f"refused: {file}: not UTF-8 text (byte {byte} at offset" in err
    assert "expected a CSV file in UTF-8" in err
    assert store.newest_version() == 1


@pytest.mark.parametrize(
    "expires", ["2001-01-01", "2020-06-30T12:00:00+14:00", "0001-01-01T00:00:00+00:00"]
)
def test_the_command_line_refuses_an_expiry_that_has_passed(
    database_config, store, monkeypatch, capsys, expires
):
    """Before: ``list-add --expires 2001-01-01`` stored an entry that had expired already, for no
    payment from now on, and said ``version 2`` as if it blocked something."""
    from rules.__main__ import main

    monkeypatch.setenv("PAYSCORE_ANALYST_MYSQL_URL", database_config.analyst_mysql_dsn)
    assert main(["list-create", "blocked_cards", "card", "--by", "ana"]) == 0
    capsys.readouterr()
    assert main(["list-add", "blocked_cards", "c-1", "--expires", expires, "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert "refused: --expires: expected a time after now (" in err
    assert f"got {expires!r}, which has passed" in err
    assert store.newest_version() == 1
    assert main(["list-add", "blocked_cards", "c-1", "--expires", "9999-12-31", "--by", "ana"]) == 0
    assert [e.value for e in store.entries("blocked_cards")] == ["c-1"]


def test_the_command_line_refuses_to_show_a_list_that_does_not_exist(
    database_config, store, monkeypatch, capsys
):
    """Before: ``list-show`` of a list nobody made (a typo: @blocked_card) printed nothing and
    exited 0, as if the list were empty."""
    from rules.__main__ import main

    monkeypatch.setenv("PAYSCORE_ANALYST_MYSQL_URL", database_config.analyst_mysql_dsn)
    assert main(["list-create", "blocked_cards", "card", "--by", "ana"]) == 0
    capsys.readouterr()
    assert main(["list-show", "blocked_card"]) == 2
    assert capsys.readouterr().err == (
        "refused: there is no list @blocked_card; known: @blocked_cards\n"
    )
    assert main(["list-show", "x" * 100_000]) == 2
    assert len(capsys.readouterr().err) < 200
    assert main(["list-show", "blocked_cards"]) == 0  # empty, and it exists
    assert capsys.readouterr() == ("", "")
