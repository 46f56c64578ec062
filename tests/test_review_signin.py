"""Sign-ins of the review queue are limited per account, client address and trusted device, in
MySQL, and audited (the attacker test of issue 20 sent 40 wrong passwords in 2 s, all got 401,
and the right one then worked)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select, text
from starlette.testclient import TestClient

from review.security import DEVICE_COOKIE
from review.throttle import POLICY
from review.users import main as users_main
from settings.config import Config
from storage.tables import review_login_audit, review_login_limits, review_sessions
from tests.flowrun import ROOT, flow_env
from tests.reviewkit import PASSWORD, add_users, app_for, free_port, review_server, sign_in

pytestmark = pytest.mark.integration
WRONG = "not the password"


def audit(engine: Engine) -> list[tuple[str, str, str, str | None]]:
    la = review_login_audit
    with engine.connect() as c:
        rows = c.execute(
            select(la.c.outcome, la.c.name, la.c.client_address, la.c.detail).order_by(la.c.id)
        ).all()
    return [tuple(r) for r in rows]


def outcomes(engine: Engine) -> Counter[str]:
    return Counter(row[0] for row in audit(engine))


def browser(app: object, address: str = "198.51.100.1") -> TestClient:
    return TestClient(app, client=(address, 50000))


def test_five_wrong_passwords_lock_the_name_for_thirty_minutes_and_every_attempt_is_audited(
    admin_engine: Engine, review_engine: Engine, topics: dict[str, str], models: Path
) -> None:
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    guesser = browser(app)
    for _ in range(POLICY.account.threshold):
        assert sign_in(guesser, "alice", WRONG).status_code == 401
    refused = sign_in(guesser, "alice", PASSWORD)  # the right password, too late
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.text
    assert 1700 < int(refused.headers["Retry-After"]) <= 1800
    # A name that does not exist locks the same way: nothing tells the two apart.
    for _ in range(POLICY.account.threshold):
        assert sign_in(guesser, "nobody", WRONG).status_code == 401
    assert sign_in(guesser, "nobody", WRONG).status_code == 429

    rows = audit(review_engine)
    assert [r[0] for r in rows] == (
        ["failure"] * 5 + ["lockout", "refused"] + ["failure"] * 5 + ["lockout", "refused"]
    )
    assert {r[2] for r in rows} == {"198.51.100.1"}
    assert rows[0][3] == "wrong password"
    assert rows[7][3] == "unknown name"
    assert rows[5][3].startswith("account alice locked until ")
    assert "after 5 failed sign-ins, each within 0:15:00 of the last" in rows[5][3]
    assert rows[6][3].startswith("account alice locked until ")
    with review_engine.connect() as c:
        assert c.execute(select(review_sessions)).all() == []

    # The lock ends by itself: thirty minutes later the right password signs in.
    with admin_engine.begin() as c:
        c.execute(
            text("UPDATE review_login_limits SET locked_until = locked_until - INTERVAL 30 MINUTE")
        )
    assert sign_in(guesser, "alice", PASSWORD).status_code == 200
    assert audit(review_engine)[-1][0] == "success"


def test_an_address_that_fails_at_many_names_is_throttled_but_not_the_others(
    admin_engine: Engine, review_engine: Engine, topics: dict[str, str], models: Path
) -> None:
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    sprayer = browser(app, "203.0.113.9")
    for i in range(POLICY.address.threshold):  # one guess at each of twenty names
        assert sign_in(sprayer, f"user-{i}", WRONG).status_code == 401
    assert sign_in(sprayer, "alice", PASSWORD).status_code == 429
    assert sign_in(browser(app, "203.0.113.10"), "alice", PASSWORD).status_code == 200
    counted = outcomes(review_engine)
    assert counted == Counter(failure=20, lockout=1, refused=1, success=1)
    lockout = next(r for r in audit(review_engine) if r[0] == "lockout")
    assert lockout[3].startswith("address 203.0.113.9 locked until ")
    # a name tried while the address was locked gets no row at all
    with review_engine.connect() as c:
        subjects = set(c.execute(select(review_login_limits.c.subject)).scalars())
    assert "user-0" in subjects


def test_the_analysts_own_browser_signs_in_while_an_attacker_keeps_the_name_locked(
    admin_engine: Engine, review_engine: Engine, topics: dict[str, str], models: Path
) -> None:
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    analyst = browser(app, "192.0.2.5")
    assert sign_in(analyst, "alice").status_code == 200
    assert DEVICE_COOKIE in analyst.cookies
    out = analyst.post("/logout", data={"csrf_token": _csrf(analyst)})
    assert out.status_code == 200

    attacker = browser(app, "198.51.100.66")
    for name in ("alice", "victor"):
        for _ in range(POLICY.account.threshold):
            sign_in(attacker, name, WRONG)
    assert sign_in(attacker, "alice", PASSWORD).status_code == 429  # locked for him
    # Same address as the attacker, but her device cookie: she is not locked out.
    same_network = browser(app, "198.51.100.66")
    same_network.cookies.set(DEVICE_COOKIE, analyst.cookies[DEVICE_COOKIE])
    assert sign_in(same_network, "alice").status_code == 200
    # A device cookie is alice's only: as victor it is no device at all, and victor is locked.
    assert sign_in(same_network, "victor").status_code == 429
    # And a stolen device cookie gets five guesses, not more.
    thief = browser(app, "198.51.100.67")
    thief.cookies.set(DEVICE_COOKIE, analyst.cookies[DEVICE_COOKIE])
    for _ in range(POLICY.device.threshold):
        assert sign_in(thief, "alice", WRONG).status_code == 401
    assert sign_in(thief, "alice", PASSWORD).status_code == 429
    assert sign_in(analyst, "alice").status_code == 429  # the device is locked, as it should be
    devices = [r for r in audit(review_engine) if r[0] == "lockout" and r[3].startswith("device ")]
    assert len(devices) == 1


def test_an_administrator_unlocks_a_name_and_it_is_audited(
    admin_engine: Engine,
    review_engine: Engine,
    database_config: Config,
    topics: dict[str, str],
    models: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    guesser = browser(app)
    for _ in range(POLICY.account.threshold):
        sign_in(guesser, "alice", WRONG)
    assert sign_in(browser(app, "192.0.2.1"), "alice").status_code == 429
    # python -m review.users unlock: the admin account's tool
    monkeypatch.setenv("PAYSCORE_MYSQL_ADMIN_URL", database_config.mysql_admin_dsn)
    monkeypatch.delenv("PAYSCORE_MYSQL_ADMIN_PASSWORD_FILE", raising=False)
    assert users_main(["unlock", "alice"]) == 0
    assert "account alice: unlocked" in capsys.readouterr().out
    assert users_main(["unlock", "alice"]) == 0
    assert "account alice: was not locked" in capsys.readouterr().out
    assert sign_in(browser(app, "192.0.2.1"), "alice").status_code == 200
    unlocks = [r for r in audit(review_engine) if r[0] == "unlock"]
    assert len(unlocks) == 1
    assert unlocks[0][1] == "alice"
    assert "unlocked by " in unlocks[0][3]


def test_a_name_no_account_can_have_counts_for_the_address_only_and_is_stored_bounded(
    review_engine: Engine, topics: dict[str, str], models: Path
) -> None:
    app = app_for(review_engine, topics["labels_topic"], models)
    client = browser(app)
    typed = "ü" * 300 + "\n'; DROP TABLE review_users; --"
    assert sign_in(client, typed, WRONG).status_code == 401
    ((outcome, name, _, detail),) = audit(review_engine)
    assert (outcome, detail) == ("failure", "not a user name")
    assert name == "ü" * 64
    with review_engine.connect() as c:
        kinds = set(c.execute(select(review_login_limits.c.kind)).scalars())
    assert kinds == {"address"}
    assert sign_in(client, "", "").status_code == 401  # an empty form is an attempt too
    assert audit(review_engine)[-1][:2] == ("failure", "")


def _csrf(client: TestClient) -> str:
    from tests.reviewkit import token

    return token(client.get("/queue").text)


def test_forty_wrong_passwords_at_once_on_two_processes_give_five_guesses_then_a_lock(
    admin_engine: Engine,
    review_engine: Engine,
    topics: dict[str, str],
    mysql_url: str,
    models: Path,
    tmp_path: Path,
) -> None:
    """The attacker test of issue 20 on two ``python -m review`` processes behind a proxy (the
    client address comes from X-Forwarded-For): the state they share is MySQL's."""
    add_users(admin_engine)
    env = flow_env(topics, mysql_url, models) | {
        "PAYSCORE_REVIEW_SESSION_KEY_FILE": str(tmp_path / "session.key"),
        "PAYSCORE_REVIEW_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    attacker = {"X-Forwarded-For": "203.0.113.50"}
    with (
        review_server(env, tmp_path / "one.log") as one,
        review_server(env, tmp_path / "two.log") as two,
    ):

        def guess(i: int) -> int:
            with httpx.Client(base_url=(one, two)[i % 2], timeout=60) as client:
                return sign_in(client, "alice", f"{WRONG} {i}", **attacker).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=40) as pool:
            answered = Counter(pool.map(guess, range(40)))
        took = time.monotonic() - started
        with httpx.Client(base_url=one, timeout=60) as client:
            right = sign_in(client, "alice", PASSWORD, **attacker)
        with httpx.Client(base_url=two, timeout=60) as client:  # her own address: locked too
            elsewhere = sign_in(client, "alice", PASSWORD, **{"X-Forwarded-For": "192.0.2.8"})
    assert answered == Counter({401: 5, 429: 35}), (answered, took)
    assert right.status_code == 429
    assert elsewhere.status_code == 429  # the account lock holds for every address...
    counted = outcomes(review_engine)
    assert counted == Counter(failure=5, lockout=1, refused=37)
    assert {r[2] for r in audit(review_engine)} == {"203.0.113.50", "192.0.2.8"}


def test_a_form_past_its_size_is_refused_before_it_is_read(
    admin_engine: Engine, review_engine: Engine, topics: dict[str, str], models: Path
) -> None:
    """Before: ``POST /login``, open to anyone, read a body of any size into memory (a password
    of 5 MB was read whole, then hashed and audited as a wrong one); a verdict's form too.
    Now a form past its size, or one that does not state it, is refused unread (413, 411),
    as the rules pages' forms were."""
    add_users(admin_engine)
    app = app_for(review_engine, topics["labels_topic"], models)
    client = browser(app)
    page = client.get("/login")
    from tests.reviewkit import token

    csrf = token(page.text)
    huge = client.post(
        "/login", data={"name": "alice", "password": "p" * 5_000_000, "csrf_token": csrf}
    )
    assert huge.status_code == 413, huge.text[:300]
    assert "the form has 5,000,0" in huge.text and "expected at most 16,384" in huge.text
    chunked = client.post(
        "/login",
        content=iter([b"name=alice&password=x&csrf_token=" + csrf.encode()]),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 411, chunked.text[:300]
    assert audit(review_engine) == []  # neither was an attempt: nothing read, nothing counted
    assert sign_in(client, "alice").status_code == 200  # a form of its size still signs in
    queue = client.get("/queue")
    big_note = client.post("/logout", data={"csrf_token": token(queue.text), "x": "y" * 100_000})
    assert big_note.status_code == 413


@pytest.mark.parametrize(
    ("properties", "said"),
    [
        ("no.such.property=1\n", "No such configuration property"),
        ("security.protocol=NOPE\n", 'Invalid value "NOPE"'),
    ],
)
def test_kafka_settings_the_client_refuses_stop_the_start_in_one_line(
    topics: dict[str, str],
    mysql_url: str,
    models: Path,
    tmp_path: Path,
    properties: str,
    said: str,
) -> None:
    """Before: the review queue started and served its pages, and every verdict failed (502,
    "label not sent"): the Kafka producer was made at the first verdict."""
    settings = tmp_path / "kafka.properties"
    settings.write_text(properties)
    env = flow_env(topics, mysql_url, models) | {
        "PAYSCORE_REVIEW_SESSION_KEY_FILE": str(tmp_path / "session.key"),
        "PAYSCORE_KAFKA_CONFIG_FILE": str(settings),
        "PAYSCORE_REVIEW_PORT": str(free_port()),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "review"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the review queue started with Kafka settings its client refuses")
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("review: cannot start")]
    assert said in line and "PAYSCORE_KAFKA_CONFIG_FILE" in line and str(settings) in line
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("host", "taken", "said"),
    [
        ("no-such-host.invalid", False, "PAYSCORE_REVIEW_HOST='no-such-host.invalid'"),
        ("127.0.0.1", True, "PAYSCORE_REVIEW_PORT="),
    ],
)
def test_an_address_it_cannot_listen_on_stops_the_start_naming_the_settings(
    topics: dict[str, str],
    mysql_url: str,
    models: Path,
    tmp_path: Path,
    host: str,
    taken: bool,
    said: str,
) -> None:
    """Before: uvicorn's ``ERROR: [Errno -2] Name or service not known`` or ``[Errno 98] ...
    address already in use``, status 3 or 1, naming neither setting."""
    port = free_port()
    env = flow_env(topics, mysql_url, models) | {
        "PAYSCORE_REVIEW_SESSION_KEY_FILE": str(tmp_path / "session.key"),
        "PAYSCORE_REVIEW_HOST": host,
        "PAYSCORE_REVIEW_PORT": str(port),
    }
    with socket.socket() as holder:
        if taken:
            holder.bind(("127.0.0.1", port))
            holder.listen()
        done = subprocess.run(
            [sys.executable, "-m", "review"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("review: cannot start")]
    assert said in line and "PAYSCORE_REVIEW_PORT" in line
