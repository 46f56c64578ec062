"""The analysts' command lines hold an account of their own, not the review queue's (review of
issue 20, item 3).

``python -m rules``, ``python -m rules.backtest`` and ``python -m review.explain`` connected as
``PAYSCORE_REVIEW_MYSQL_URL``, the account the review application signs people in with: an
analyst who ran them could revive a logged-out session, lift a lockout, add a verdict in
another analyst's name and read every password hash. Here each command's ``main`` runs as an
analyst runs it (every account's URL configured, on the test's database); the URL it connects
with is kept, and the four attacks are tried with it on the real server, each checked through
the review application: every one must be refused with MySQL's privilege error and change
nothing the application sees.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

import review.explain
import rules.__main__
import rules.backtest
from settings.config import Config
from storage.engine import make_engine
from tests.flowrun import KEY_FILE
from tests.reviewkit import add_users, app_for, payment_row, sign_in, signed_in, store, token

pytestmark = pytest.mark.integration

# MySQL's refusals: a table right (1142), a column right (1143).
DENIED = {1142, 1143}


def urls_the_commands_use(
    database_config: Config, models: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Each analysts' command's ``main`` run with every configured account's URL on the test's
    database: command -> the URL it connected with."""
    for field in Config.__struct_fields__:
        if field.endswith("mysql_url"):
            monkeypatch.setenv(f"PAYSCORE_{field.upper()}", getattr(database_config, field))
    monkeypatch.setenv("PAYSCORE_MODEL_DIR", str(models))
    monkeypatch.setenv("PAYSCORE_MODEL_KEY_FILE", str(KEY_FILE))
    used: dict[str, str] = {}

    def recording(name: str) -> Callable[..., Engine]:
        def connect(url: str, **options: Any) -> Engine:
            used[name] = url
            return make_engine(url, **options)

        return connect

    def backtest_here(url: str, *args: Any, **kwargs: Any) -> Any:
        used["python -m rules.backtest"] = url
        raise ValueError("recorded")  # the command prints it and exits 2: nothing more to run

    monkeypatch.setattr(rules.__main__, "make_engine", recording("python -m rules"))
    monkeypatch.setattr(review.explain, "make_engine", recording("python -m review.explain"))
    monkeypatch.setattr(rules.backtest, "backtest_here", backtest_here)
    assert rules.__main__.main(["show"]) == 0
    assert review.explain.main(["tx-1"]) == 0
    assert rules.backtest.main(["--rule", "big", "decline if amount_eur > 100"]) == 2
    assert len(used) == 3, used
    return used


def attempt(url: str, statement: str) -> int | None:
    """``statement`` run as the account of ``url``: None when it ran, else MySQL's error code."""
    u = make_url(url)
    connection = pymysql.connect(
        host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
        database=u.database, autocommit=True,
    )  # fmt: skip
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            cursor.fetchall()
    except pymysql.MySQLError as exc:
        return exc.args[0]
    finally:
        connection.close()
    return None


def test_the_analysts_command_lines_cannot_revive_sessions_lift_locks_forge_verdicts_or_read_hashes(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    database_config: Config,
    topics: dict[str, str],
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store(engine, [payment_row("tx-1", 0.7)])
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    used = urls_the_commands_use(database_config, models, monkeypatch)
    review_user = make_url(database_config.review_mysql_dsn).username
    problems = [
        f"{command} holds the review queue's account"
        for command, url in sorted(used.items())
        if make_url(url).username == review_user
    ]

    # A cookie saved before logout.
    client = signed_in(app, "alice")
    saved = dict(client.cookies)
    client.post("/logout", data={"csrf_token": token(client.get("/payments/tx-1").text)})
    # A lockout.
    guesser = TestClient(app, follow_redirects=False)
    for _ in range(5):
        sign_in(guesser, "alice", "wrong password!")
    assert sign_in(guesser, "alice", "wrong password!").status_code == 429
    decided_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    attacks = {
        "revive a logged-out session": "UPDATE review_sessions SET ended_at = NULL, "
        "end_reason = NULL, last_seen_at = UTC_TIMESTAMP(6)",
        "lift a lockout": "UPDATE review_login_limits SET failures = 0, locked_until = NULL",
        "add a verdict in alice's name": "INSERT INTO review_verdicts (transaction_id, card_id, "
        "analyst, is_fraud, note, decided_at, model_version, model_decision, model_probability, "
        f"labels_topic) VALUES ('tx-1', '{payment_row('tx-1', 0.7)['card_id']}', 'alice', 0, "
        f"'forged', '{decided_at}', 'v00001', 'review', 0.7, '{topics['labels_topic']}')",
        "read the password hashes": "SELECT name, password_hash FROM review_users",
        "read the sign-in records": "SELECT * FROM review_login_audit",
    }
    for command, url in sorted(used.items()):
        for what, statement in attacks.items():
            code = attempt(url, statement)
            if code not in DENIED:
                problems.append(f"{command}'s account could {what} (got {code})")
    assert not problems, problems

    # And the application saw nothing of it.
    thief = TestClient(app, cookies=saved, follow_redirects=False)
    assert thief.get("/queue").status_code == 303  # still ended
    assert sign_in(guesser, "alice", "wrong password!").status_code == 429  # still locked
    assert "forged" not in signed_in(app, "victor").get("/payments/tx-1").text
    with admin_engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM review_verdicts")).scalar_one() == 0
