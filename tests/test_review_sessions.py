"""Sessions of the review queue live in MySQL: a cookie saved before a sign-out, a password or
role change, the user's removal or a time-out reads and posts nothing after it (the attacker
test of issue 20 saved one before logout and kept reading and giving verdicts)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, text
from starlette.testclient import TestClient

from review.sessions import SESSION, SessionPolicy, why_ended
from review.users import add_user
from storage.tables import review_sessions, review_users, review_verdicts
from tests.reviewkit import (
    PASSWORD,
    START,
    add_users,
    app_for,
    payment_row,
    read_topic,
    signed_in,
    store,
    token,
)


def replay(app: object, saved: dict[str, str]) -> TestClient:
    """Another client that sends the cookies saved from a signed-in one."""
    return TestClient(app, cookies=saved, follow_redirects=False)


def age(c: object, column: str, by: timedelta) -> None:
    """Move every session's ``column`` back in time by ``by``."""
    c.execute(  # type: ignore[attr-defined]
        text(
            f"UPDATE review_sessions SET {column} = {column} "
            f"- INTERVAL {int(by.total_seconds())} SECOND"
        )
    )


def ended(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as c:
        rows = c.execute(
            select(review_sessions.c.user_name, review_sessions.c.end_reason).order_by(
                review_sessions.c.created_at
            )
        ).all()
    return [(r.user_name, r.end_reason) for r in rows]


@pytest.mark.integration
def test_a_cookie_saved_before_logout_reads_and_posts_nothing_after(
    engine: Engine,
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
) -> None:
    store(engine, [payment_row("tx-1", 0.7)])
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    client = signed_in(app, "alice")
    page = client.get("/payments/tx-1")
    csrf = token(page.text)
    saved = dict(client.cookies)
    assert replay(app, saved).get("/queue").status_code == 200  # the saved cookie works now

    out = client.post("/logout", data={"csrf_token": csrf})
    assert out.url.path == "/login"

    thief = replay(app, saved)
    assert thief.get("/queue").headers["location"] == "/login"
    assert thief.get("/payments/tx-1").headers["location"] == "/login"
    refused = thief.post("/payments/tx-1/verdict", data={"verdict": "fraud", "csrf_token": csrf})
    assert refused.status_code == 403
    assert "not signed in" in refused.text
    with review_engine.connect() as c:
        assert c.execute(select(review_verdicts)).all() == []
    assert read_topic(topics["labels_topic"], 1, timeout=3) == []
    assert ended(review_engine) == [("alice", "logout")]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("password", "credentials"),
        ("role", "credentials"),
        ("removal", "removed"),
        ("idle", "idle"),
        ("age", "expired"),
    ],
)
def test_a_session_ends_with_a_changed_password_or_role_a_removal_or_a_time_out(
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    models: Path,
    change: str,
    reason: str,
) -> None:
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    client = signed_in(app, "alice")
    saved = dict(client.cookies)
    with admin_engine.begin() as c:  # python -m review.users, or the clock
        if change == "password":
            add_user(c, "alice", "analyst", "another long password")
        elif change == "role":
            add_user(c, "alice", "viewer", PASSWORD)  # the same password: a new hash all the same
        elif change == "removal":
            c.execute(delete(review_users).where(review_users.c.name == "alice"))
        elif change == "idle":
            age(c, "last_seen_at", SESSION.idle)
        else:
            age(c, "created_at", SESSION.absolute)
    assert replay(app, saved).get("/queue").headers["location"] == "/login"
    assert client.get("/queue").url.path == "/login"
    assert ended(review_engine) == [("alice", reason)]


@pytest.mark.integration
def test_every_request_keeps_its_session_alive_and_signing_in_again_ends_the_old_one(
    admin_engine: Engine, review_engine: Engine, topics: dict[str, str], models: Path
) -> None:
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    client = signed_in(app, "alice")
    with admin_engine.begin() as c:  # fourteen minutes idle: still live, and a request renews it
        age(c, "last_seen_at", timedelta(minutes=14))
    assert client.get("/queue").status_code == 200
    with admin_engine.begin() as c:
        age(c, "last_seen_at", timedelta(minutes=14))
    assert client.get("/queue").status_code == 200
    first = dict(client.cookies)
    login = client.get("/login")
    again = client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token(login.text)}
    )
    assert again.status_code == 200
    assert replay(app, first).get("/queue").headers["location"] == "/login"
    assert client.get("/queue").status_code == 200
    assert ended(review_engine) == [("alice", "replaced"), ("alice", None)]


class Row:
    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)


def test_why_a_session_ended_reads_its_row_in_order() -> None:
    from review.sessions import credentials

    policy = SessionPolicy(idle=timedelta(minutes=15), absolute=timedelta(hours=8))
    live = {
        "ended_at": None,
        "end_reason": None,
        "role": "analyst",
        "password_hash": "h",
        "credentials": credentials("analyst", "h"),
        "created_at": START,
        "last_seen_at": START + timedelta(hours=7, minutes=50),
    }
    now = START + timedelta(hours=7, minutes=59)
    assert why_ended(Row(**live), now, policy) is None
    assert why_ended(Row(**live), START + timedelta(hours=8), policy) == "expired"
    assert why_ended(Row(**live | {"last_seen_at": START}), now, policy) == "idle"
    assert why_ended(Row(**live | {"role": "viewer"}), now, policy) == "credentials"
    assert why_ended(Row(**live | {"password_hash": "g"}), now, policy) == "credentials"
    assert why_ended(Row(**live | {"role": None, "password_hash": None}), now, policy) == "removed"
    assert why_ended(Row(**live | {"ended_at": START, "end_reason": "logout"}), now, policy) == (
        "logout"
    )
