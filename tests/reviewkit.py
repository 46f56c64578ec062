"""Helpers of the review queue's tests: stored payments, users, a signed-in client, and reading
the labels topic back."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Message
from sqlalchemy import Engine, insert
from starlette.testclient import TestClient

from features.catalog import FEATURE_NAMES, NO_HISTORY
from review.app import create_app
from review.explain import Explainers
from review.publish import KafkaLabels
from review.users import add_user
from storage.tables import scored_payments
from test_data.ports import free_ports
from test_data.topic_end import read_to_end
from tests.flowrun import BROKERS, ROOT, key_for_tests, stop

PASSWORD = "a long enough password"
START = datetime(2026, 3, 2, 9, 0)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def features(amount_eur: float) -> dict[str, float]:
    values = dict(NO_HISTORY) | {
        "amount_eur": amount_eur,
        "hour_of_day": 9.0,
        "is_night": 0.0,
        "is_weekend": 0.0,
    }
    return {name: values[name] for name in FEATURE_NAMES}


def payment_row(
    txn: str,
    probability: float,
    decision: str = "review",
    *,
    card: str = "card-1",
    merchant: str = "m-1",
    minutes: int = 0,
    version: str = "v00001",
) -> dict[str, Any]:
    return {
        "transaction_id": txn,
        "card_id": card,
        "merchant_id": merchant,
        "terminal_id": "t-1",
        "amount_minor": 12_345,
        "currency": "EUR",
        "event_time": START + timedelta(minutes=minutes),
        "utc_offset_minutes": 60,
        "fraud_probability": probability,
        "decision": decision,
        "reason_codes": [] if decision == "approve" else ["amount_eur"],  # as the flow stores
        "model_version": version,
        "features": features(123.45),
        "kafka_partition": 0,
        "kafka_offset": minutes,
        "scored_at": datetime.now(UTC).replace(tzinfo=None),
    }


def store(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as c:
        c.execute(insert(scored_payments), rows)


def add_users(engine: Engine) -> None:
    """alice (analyst) and victor (viewer), as ``python -m review.users`` adds them: ``engine``
    is the admin account's (no job account may add a user)."""
    with engine.begin() as c:
        add_user(c, "alice", "analyst", PASSWORD)
        add_user(c, "victor", "viewer", PASSWORD)


def app_for(engine: Engine, labels_topic: str, models: Path) -> Any:
    """The review application on ``engine``, the review account's (``review_engine``)."""
    return create_app(
        engine,
        KafkaLabels({"bootstrap.servers": BROKERS}, labels_topic),
        Explainers(models, key_for_tests(), engine),
        session_key="k" * 48,
    )


def token(page: str) -> str:
    found = CSRF.search(page)
    assert found is not None, f"no CSRF token in the page: {page[:300]}"
    return found[1]


def sign_in(client: Any, name: str, password: str = PASSWORD, **headers: str) -> Any:
    """One sign-in attempt as a browser makes it: the form (for its CSRF token), then the POST."""
    form = client.get("/login", headers=headers)
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token(form.text)},
        headers=headers,
    )


def signed_in(app: Any, name: str, **options: Any) -> TestClient:
    """A client signed in as ``name`` (``options`` go to the ``TestClient``)."""
    client = TestClient(app, **options)
    response = sign_in(client, name)
    assert response.status_code == 200, response.text
    assert f'<span id="user">{name}</span>' in response.text
    return client


def read_topic(
    topic: str, expected: int, *, settle: float = 2.0, timeout: float = 90.0
) -> list[Message]:
    """Every message on ``topic`` from its start, each partition read to its end as it stands
    (:func:`test_data.topic_end.read_to_end`: assigned, no consumer group to join): read again
    until there are at least ``expected`` (for up to ``timeout`` seconds), then once more
    ``settle`` seconds later, so that a message sent after the expected ones is among them.

    With ``expected=0`` it says what a refused request left on the topic: the review queue
    publishes before it answers, so a message it sent is below the ends read afterwards. (It
    subscribed before, and gave up after ``timeout``: a group's join, assignment and first
    fetch can take longer than the 3 s such a check gave it on a loaded machine, and it then
    read nothing whatever the topic held.)"""
    client = {"bootstrap.servers": BROKERS, "group.id": f"review-test-{uuid.uuid4().hex[:8]}"}

    def everything() -> list[Message]:  # up to the ends as they stand: a bounded read
        return list(read_to_end(client, topic, seconds=60))

    deadline = time.monotonic() + timeout
    messages = everything()
    while len(messages) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        messages = everything()
    if len(messages) >= expected:
        time.sleep(settle)  # no condition to wait for: a message that should not come
        messages = everything()
    return messages


def wait_for(what: str, check: Callable[[], object], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def free_port() -> int:
    """A port for a server of the test's own (:func:`tests.flowrun.free_ports`): not one the
    kernel hands out to outgoing connections, as a port bound to 0 is, which a client's
    connection can take before the server binds it."""
    return free_ports(1)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


@contextmanager
def review_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """``python -m review`` in a subprocess with ``env`` on a free port: its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/python"), "-m", "review"],
        cwd=ROOT,
        env=env | {"PAYSCORE_REVIEW_PORT": str(port)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "the review application to answer",
            lambda: answers(f"{base}/login") or process.poll() is not None,
            120,  # importing the application takes seconds on a loaded machine
        )
        assert process.poll() is None, log.read_text()[-3000:]
        yield base
    finally:
        stop(process)
