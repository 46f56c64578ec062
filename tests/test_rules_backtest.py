"""The backtest's figures against a brute-force count in SQL on the real server, and its
vectorised precedence against rules.decisions.decide."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, text, update

from features.catalog import FEATURE_NAMES
from features.replay import replay
from rules.backtest import (
    EARLIEST,
    LATEST,
    BacktestReport,
    _in_a_new_interpreter,
    _stream,
    backtest,
    final_codes,
)
from rules.decisions import Fired, decide
from rules.ruleset import RuleSpec
from rules.store import NewEntry, RulesStore
from storage.rows import scored_payment_row
from storage.tables import scored_payments
from test_data.generator import simulate
from test_data.spec import SimulationSpec

CODES = ("approve", "review", "decline")


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.lists(st.sampled_from(["allow", "decline", "review"]), max_size=4)
        ),
        min_size=1,
        max_size=30,
    )
)
def test_the_vectorised_precedence_is_decide(cases):
    model = np.array([m for m, _ in cases], dtype=np.int8)
    actions = ["allow", "decline", "review"]
    masks = [(a, np.array([a in fired for _, fired in cases])) for a in actions]
    got = final_codes(model, masks)
    for i, (m, fired) in enumerate(cases):
        expected = decide(
            CODES[m], 0.5, [Fired(f"r{j}", a, 1, "active") for j, a in enumerate(fired)]
        )
        assert CODES[got[i]] == expected.decision


def stored_rows(count_days: int = 3):
    sim = simulate(SimulationSpec(seed=11, days=count_days, cards=400, merchants=80))
    rng = random.Random(4)
    rows = []
    for i, (payment, features) in enumerate(replay(sim.stream)):
        p = rng.random() ** 4
        decision = "decline" if p >= 0.9 else "review" if p >= 0.5 else "approve"
        row = scored_payment_row(
            payment, partition=0, offset=i, features=features, probability=p, decision=decision,
            reasons=(), model_version="v00001", scored_at=datetime.now(UTC),
        )  # fmt: skip
        row["label_is_fraud"] = rng.choice([None, None, False, False, False, True])
        rows.append(row)
    return rows


@pytest.mark.integration
def test_figures_equal_a_brute_force_count_in_sql(database_config, engine, analyst_engine):
    """As analysts run it: the analysts' account's URL and store. (In this test process numba is
    loaded, so backtest() runs in a new interpreter: see rules.backtest.)"""
    url = database_config.analyst_mysql_dsn
    rows = stored_rows()
    # ten rows as stored before the payment's other fields were kept
    for row in rows[:10]:
        for name in ("mcc", "channel", "country", "device_id", "latitude", "longitude"):
            row[name] = None
    # rows stored before the flow packed the features (read from the JSON), and rows packed
    # under another catalogue, with values that would change the figures if they were read
    foreign = struct.pack("<B3xI", 1, 12345) + struct.pack(f"<{len(FEATURE_NAMES)}d", *[1e6] * 42)
    for i, row in enumerate(rows):
        if i % 3 == 1:
            row["feature_vector"] = None
        elif i % 7 == 2:
            row["feature_vector"] = foreign
    with engine.begin() as c:
        c.execute(insert(scored_payments), rows)
    store = RulesStore(analyst_engine, patience=5)
    countries = sorted({r["country"] for r in rows if r["country"]})[:2]
    cards = sorted({r["card_id"] for r in rows})[::7]
    store.create_list("high_risk_countries", "country", by="t")
    store.add_entries("high_risk_countries", [NewEntry(c) for c in countries], by="t")
    store.create_list("blocked_cards", "card", by="t")
    # one entry expires in the middle of the stream: it applies to payments before that only
    middle = rows[len(rows) // 2]["event_time"].replace(tzinfo=UTC)
    store.add_entries(
        "blocked_cards",
        [NewEntry(c) for c in cards[1:]] + [NewEntry(cards[0], middle, "until then")],
        by="t",
    )
    store.add_rule("live-velocity", "decline if card_count_24h >= 4", by="t", status="active")
    store.add_rule("live-shadow", "review if amount_eur > 10", by="t", status="shadow")
    draft = [
        RuleSpec("velocity", "decline if card_count_1h >= 2 and amount_eur > 20 priority 5"),
        RuleSpec("geo", "review if country in @high_risk_countries and channel == 'contactless'"),
        RuleSpec("cards", "decline if card_id in @blocked_cards"),
        RuleSpec("model", "review if fraud_probability > 0.3 and card_amount_to_mean_30d > 1.5"),
        RuleSpec("vip", "allow if amount_minor < 500 and card_count_24h >= 4"),
    ]
    times = sorted(r["event_time"] for r in rows)
    since, until = times[len(times) // 5], times[-len(times) // 5]
    report = backtest(url, draft, since=since, until=until, store=store)

    def f(name: str) -> str:
        return f"CAST(JSON_VALUE(features, '$.{name}') AS DOUBLE)"

    quoted_countries = ", ".join(f"'{c}'" for c in countries)
    quoted_cards = ", ".join(f"'{c}'" for c in cards[1:])
    sql_rules = {
        "velocity": f"{f('card_count_1h')} >= 2 AND {f('amount_eur')} > 20",
        "geo": f"country IN ({quoted_countries}) AND channel = 'contactless'",
        "cards": (
            f"(card_id IN ({quoted_cards}) OR (card_id = '{cards[0]}' AND event_time < :middle))"
        ),
        "model": f"fraud_probability > 0.3 AND {f('card_amount_to_mean_30d')} > 1.5",
        "vip": f"amount_minor < 500 AND {f('card_count_24h')} >= 4",
        "live-velocity": f"{f('card_count_24h')} >= 4",
        "live-shadow": f"{f('amount_eur')} > 10",
    }
    where = "event_time >= :since AND event_time < :until AND country IS NOT NULL"
    params = {"since": since, "until": until, "middle": middle.replace(tzinfo=None)}
    with engine.connect() as c:
        total, frauds, legit, skipped = (
            int(x)
            for x in c.execute(
                text(
                    f"SELECT SUM({where}), SUM({where} AND label_is_fraud = 1), "
                    f"SUM({where} AND label_is_fraud = 0), "
                    "SUM(event_time >= :since AND event_time < :until AND country IS NULL) "
                    "FROM scored_payments"
                ),
                params,
            ).one()
        )
        assert (report.payments, report.labelled_frauds, report.labelled_legit) == (
            total,
            frauds,
            legit,
        )
        assert report.skipped == skipped
        by_id = {r.rule_id: r for r in report.rules}
        assert set(by_id) == {
            "velocity",
            "geo",
            "cards",
            "model",
            "vip",
            "live-velocity",
            "live-shadow",
        }
        for rule_id, condition in sql_rules.items():
            hits, caught, legit_hit, amount, approved = (
                float(x)
                for x in c.execute(
                    text(
                        f"SELECT COUNT(*), COALESCE(SUM(label_is_fraud = 1), 0), "
                        "COALESCE(SUM(label_is_fraud = 0), 0), "
                        f"COALESCE(SUM({f('amount_eur')}), 0), "
                        f"COALESCE(SUM(label_is_fraud = 1 AND decision = 'approve'), 0) "
                        f"FROM scored_payments WHERE {where} AND {condition}"
                    ),
                    params,
                ).one()
            )
            got = by_id[rule_id]
            assert (got.hits, got.frauds_caught, got.legit_hit, got.frauds_model_approved) == (
                hits, caught, legit_hit, approved,
            ), rule_id  # fmt: skip
            assert got.amount_eur_hit == pytest.approx(float(amount), rel=1e-9, abs=1e-6)
            assert got.precision == (caught / (caught + legit_hit) if caught + legit_hit else None)
            assert got.recall == (caught / frauds if frauds else None)
        assert sum(r.hits for r in report.rules) > 50  # the figures are not all zero

        def final(active: dict[str, str]) -> str:
            allow = (
                " OR ".join(f"({sql_rules[r]})" for r, a in active.items() if a == "allow")
                or "FALSE"
            )
            decline = (
                " OR ".join(f"({sql_rules[r]})" for r, a in active.items() if a == "decline")
                or "FALSE"
            )
            review = (
                " OR ".join(f"({sql_rules[r]})" for r, a in active.items() if a == "review")
                or "FALSE"
            )
            return (
                f"CASE WHEN {allow} THEN 'approve' WHEN {decline} THEN 'decline' "
                f"WHEN ({review}) AND decision <> 'decline' THEN 'review' ELSE decision END"
            )

        live = final({"live-velocity": "decline"})
        proposed = final(
            {"velocity": "decline", "geo": "review", "cards": "decline", "model": "review",
             "vip": "allow", "live-velocity": "decline"}
        )  # fmt: skip
        changes = dict(
            c.execute(
                text(
                    "SELECT CONCAT(b, ' -> ', a), COUNT(*) "
                    f"FROM (SELECT {live} AS b, {proposed} AS a "
                    f"FROM scored_payments WHERE {where}) t WHERE a <> b GROUP BY b, a"
                ),
                params,
            ).all()
        )
        assert report.changes == {k: int(v) for k, v in changes.items()}
        assert report.changed == sum(changes.values()) > 0
    days = {d.day: d for d in report.daily}
    assert sum(d.payments for d in days.values()) == report.payments
    assert sum(d.hits["velocity"] for d in days.values()) == by_id["velocity"].hits
    assert len(report.changed_examples) == min(report.changed, 50)
    assert msgspec.json.decode(msgspec.json.encode(report), type=BacktestReport) == report
    # two processes, each reading a span of the range, count the same
    parallel = backtest(url, draft, since=since, until=until, store=store, jobs=2)

    def same_but_order(r: BacktestReport) -> dict:
        out = msgspec.to_builtins(r)
        out["seconds"], out["stages"], out["stages_cpu"] = 0, {}, {}  # times
        out["changed_examples"] = sorted(out["changed_examples"])  # rows come in another order
        for rule in out["rules"]:  # sums of floats in another order
            rule["amount_eur_hit"] = round(rule["amount_eur_hit"], 6)
            rule["amount_eur_frauds_caught"] = round(rule["amount_eur_frauds_caught"], 6)
        return out

    assert same_but_order(parallel) == same_but_order(report)
    # every row's features from the JSON: the same figures
    with engine.begin() as c:
        c.execute(update(scored_payments).values(feature_vector=None))
    from_json = backtest(url, draft, since=since, until=until, store=store)
    assert same_but_order(from_json) == same_but_order(report)
    # The same in a new interpreter, as backtest() runs where the C extension cannot load.
    fresh = _in_a_new_interpreter(url, draft, since, until, replace=False, jobs=1)
    assert same_but_order(fresh) == same_but_order(report)
    assert report.table()[0]["rule_id"] == report.rules[0].rule_id


def test_the_review_queue_s_process_cannot_load_the_readers_c_extension() -> None:
    """Why backtest() may run in a new interpreter: once numba is loaded (the review queue
    imports the scorer), glibc has no static TLS left for the libstdc++ of mysql-connector's C
    extension; ``python -m rules.backtest`` loads it first."""
    probe = "from rules.backtest import c_extension_loads as c; print(c())"
    for first, expected in (("import review.app", "False"), ("pass", "True")):
        done = subprocess.run(
            [sys.executable, "-c", f"{first}; {probe}"], capture_output=True, text=True,
            timeout=120, check=True,
        )  # fmt: skip
        assert done.stdout.strip() == expected, (first, done.stdout, done.stderr[-2000:])


@pytest.mark.integration
def test_a_refused_draft_is_a_value_error_in_a_new_interpreter_too(database_config) -> None:
    with pytest.raises(ValueError, match=r"rule 'big' does not compile: line 1, column 25"):
        _in_a_new_interpreter(
            database_config.review_mysql_dsn,
            [RuleSpec("big", "decline if amount_eur > 'x'")],
            datetime(2026, 1, 1),
            datetime(2026, 2, 1),
            replace=False,
            jobs=1,
        )


@pytest.mark.integration
def test_the_command_prints_the_figures_and_refuses_a_bad_draft(database_config, engine):
    rows = stored_rows(1)
    with engine.begin() as c:
        c.execute(insert(scored_payments), rows)
    env_url = {"PAYSCORE_ANALYST_MYSQL_URL": database_config.analyst_mysql_dsn}
    import os

    env = {**os.environ, **env_url}
    run = subprocess.run(
        [sys.executable, "-m", "rules.backtest", "--rule", "big", "decline if amount_eur > 100"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"backtest of {len(rows):,} payments" in run.stdout
    assert "big" in run.stdout and "final decision changes" in run.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "rules.backtest", "--rule", "big", "decline if amount_eur > 'x'"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "rule 'big' does not compile: line 1, column 25" in bad.stderr
    since = (rows[0]["event_time"] + timedelta(days=2)).isoformat()
    empty = subprocess.run(
        [sys.executable, "-m", "rules.backtest", "--rule", "big", "decline if amount_eur > 1",
         "--since", since, "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert msgspec.json.decode(empty.stdout)["payments"] == 0


# Review of issue 21: the command's errors. Each of these was a Python traceback.
@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--since", "0001-01-01T00:00:00+01:00"], "within the years 1 to 9999"),
        (["--until", "9999-12-31T23:00:00-05:00"], "within the years 1 to 9999"),
    ],
)
def test_a_time_with_no_year_in_utc_is_a_usage_error(argv, said, capsys):
    from rules.backtest import main

    with pytest.raises(SystemExit) as done:
        main(["--rule", "x", "decline if amount_eur > 1", *argv])
    assert done.value.code == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ('{"rule_id": "x", "text": "decline if amount_eur > 1"}', "Expected `array`, got `object`"),
        ("[1, 2]", "Expected `object`, got `int` - at `$[0]`"),
        ('[{"rule_id": "x"}]', "missing required field `text` - at `$[0]`"),
        ('[{"rule_id": "x", "text": "decline if amount_eur > 1", "rank": 1}]', "unknown field"),
    ],
)
def test_a_draft_file_of_the_wrong_shape_is_refused_with_where(content, said, tmp_path, capsys):
    from rules.backtest import main

    file = tmp_path / "draft.json"
    file.write_text(content)
    assert main(["--file", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"refused: --file {file}: expected a JSON list of"), err
    assert said in err and len(err) < 800


def test_a_draft_file_that_never_ends_is_read_no_further_than_its_bound(monkeypatch, capsys):
    """``--file /dev/zero`` was read until memory ran out (not run before the fix, which would
    have done that): a draft past rules.backtest.MAX_DRAFT_BYTES (1 KiB here) is refused."""
    from rules import backtest

    monkeypatch.setattr(backtest, "MAX_DRAFT_BYTES", 1024)
    assert backtest.main(["--file", "/dev/zero"]) == 2
    assert capsys.readouterr().err == (
        "refused: --file /dev/zero: more than 1,024 bytes; expected a JSON list of rules of at "
        "most 1,024 bytes\n"
    )


# What the backtest's reader says for a URL and a query, in a fresh interpreter, where the C
# extension of mysql-connector loads (as in `python -m rules.backtest`).
READER_PROBE = """
import sys
from rules.backtest import c_extension_loads, connect
assert c_extension_loads()
try:
    connection = connect(sys.argv[1])
    cursor = connection.cursor()
    cursor.execute(sys.argv[2])
    value = cursor.fetchone()[-1]
    connection.close()
    print(value.decode() if isinstance(value, (bytes, bytearray)) else value)
except Exception as exc:
    print("ERROR", type(exc).__name__, exc)
"""


# The same through the C-level reader the payments are streamed with (rules.backtest.c_reader).
C_READER_PROBE = """
import sys
from rules.backtest import c_reader
try:
    reader = c_reader(sys.argv[1])
    reader.query(sys.argv[2])
    value = reader.fetch_row()[-1]
    reader.free_result()
    reader.close()
    print(value.decode() if isinstance(value, (bytes, bytearray)) else value)
except Exception as exc:
    print("ERROR", type(exc).__name__, exc)
"""


@pytest.mark.integration
def test_the_backtests_reader_keeps_the_urls_tls_and_socket(database_config):
    """Review of issue 21: the backtest reads payments with mysql-connector, built from the
    account's URL, and dropped its options: a URL's ``ssl_ca`` (the README: the server's
    certificate and name verified) connected with TLS unverified, or none, sending the account's
    password to whoever answered; ``unix_socket`` (``PAYSCORE_MYSQL_SOCKET``) went over TCP.
    Checked in this process (the pure-Python driver once numba is loaded) and in a fresh
    interpreter (the C extension, as ``python -m rules.backtest`` reads)."""
    from sqlalchemy.engine import make_url

    from rules.backtest import connect

    url = make_url(database_config.analyst_mysql_dsn)
    assert "unix_socket" not in url.query and "ssl_ca" not in url.query

    def render(**query: str) -> str:
        return url.update_query_dict(query).render_as_string(hide_password=False)

    def here(url_: str, sql: str) -> str:
        try:
            connection = connect(url_)
            cursor = connection.cursor()
            cursor.execute(sql)
            value = cursor.fetchone()[-1]
            connection.close()
        except Exception as exc:
            return f"ERROR {type(exc).__name__} {exc}"
        return value.decode() if isinstance(value, bytes | bytearray) else str(value)

    def fresh(url_: str, sql: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", READER_PROBE, url_, sql],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def rows_in_c(url_: str, sql: str) -> str:  # the reader the payments are streamed with
        done = subprocess.run(
            [sys.executable, "-c", C_READER_PROBE, url_, sql],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    cipher = "SHOW SESSION STATUS LIKE 'Ssl_cipher'"
    for ask in (here, fresh, rows_in_c):
        # A CA that did not sign the server's certificate: refused, as PyMySQL refuses it.
        said = ask(render(ssl_ca="/etc/ssl/certs/ca-certificates.crt"), cipher)
        assert said.startswith("ERROR") and "certificate verify failed" in said.lower(), said
        # The CA that did: an encrypted connection.
        said = ask(render(ssl_ca="/etc/mysql/payscore-tls/ca.pem"), cipher)
        assert said and not said.startswith("ERROR"), said
        # Through the socket: the account is the one of 'localhost', not of '127.0.0.1'.
        over = render(unix_socket="/run/mysqld/mysqld.sock", ssl_disabled="true")
        said = ask(over, "SELECT CURRENT_USER()")
        assert said.endswith("@localhost"), said
    from rules.backtest import connection_options

    with pytest.raises(ValueError, match="TLS option 'ssl_capath'"):
        connection_options(render(ssl_capath="/etc/ssl/certs"))


@pytest.mark.parametrize("jobs", ["0", "-5", "10000", "two"])
def test_the_number_of_processes_is_bounded(jobs, capsys, monkeypatch):
    """Review of issue 21: ``--jobs 10000`` forked ten thousand processes (each a MySQL
    connection); 0 or -5 ran as one, silently. (MySQL is unreachable here: nothing may run.)"""
    from rules.backtest import MAX_JOBS, backtest_here, main

    monkeypatch.setenv("PAYSCORE_ANALYST_MYSQL_URL", "mysql+pymysql://u:p@127.0.0.1:1/none")
    with pytest.raises(SystemExit) as done:
        main(["--rule", "x", "decline if amount_eur > 1", "--jobs", jobs])
    assert done.value.code == 2
    assert f"expected a whole number of processes from 1 to {MAX_JOBS}" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"jobs: expected 1 to {MAX_JOBS} processes"):
        backtest_here("mysql+pymysql://u:p@127.0.0.1:1/none", [], jobs=MAX_JOBS + 1)


@pytest.mark.integration
def test_only_the_columns_the_rules_name_are_read(database_config, engine) -> None:
    """A ruleset that names no feature reads neither the packed vector nor the JSON; one that
    does gets the vector of a packed row and the JSON of a row without one, never both."""
    rows = stored_rows(1)[:20]
    rows[0]["feature_vector"] = None
    with engine.begin() as c:
        c.execute(insert(scored_payments), rows)
    url = database_config.analyst_mysql_dsn
    bare = [r for chunk in _stream(url, EARLIEST, LATEST, ["country"], []) for r in chunk]
    assert len(bare) == 20 and {len(r) for r in bare} == {6}  # five of every payment, country
    full = {
        r[0]: r for chunk in _stream(url, EARLIEST, LATEST, ["country"], ["amount_eur"])
        for r in chunk
    }  # fmt: skip
    assert {len(r) for r in full.values()} == {8}
    old = full.pop(rows[0]["transaction_id"])
    assert old[6] is None and msgspec.json.decode(old[7]) == rows[0]["features"]
    assert all(len(r[6]) == 344 and r[7] is None for r in full.values())
