"""Secrets stay out of logs, on the real broker and server.

The flow connects as a user of its own whose password comes from ``PAYSCORE_MYSQL_PASSWORD_FILE``;
a run with payments, a bad message and labels, and a run that cannot reach MySQL at all, must
print nothing that contains the password.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import msgspec
import pytest
from sqlalchemy.engine import make_url

from test_data.hostile import valid_payment
from tests.flowrun import ROOT, flow_env

pytestmark = pytest.mark.integration


def root_sql(statement: str) -> None:
    """As ``ops/services.sh`` does: the server's root account over its local socket."""
    subprocess.run(
        ["mariadb", "--protocol=socket", "-uroot", "-e", statement], check=True, timeout=30
    )


def run_flow_logs(env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1"],
        env=env | {"FLOW_BASE_PORT": "2790"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_no_log_line_holds_the_mysql_password(
    topics: dict[str, str], mysql_url: str, models: Path, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    database = make_url(mysql_url).database
    user = f"psk_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    root_sql(
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.* TO '{user}'@'127.0.0.1'"
    )
    try:
        secret = tmp_path / "mysql.password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        producer = Producer({"bootstrap.servers": "127.0.0.1:9092"})
        for value in (
            msgspec.json.encode(valid_payment(transaction_id="secret-test-1")),
            b"{not json",
        ):
            producer.produce(topics["payments_topic"], value=value, key=b"c")
        producer.produce(
            topics["labels_topic"],
            value=b'{"transaction_id": "unknown-1", "card_id": "c", "is_fraud": true, '
            b'"reported_at": "2026-03-09T02:00:00Z"}',
            key=b"c",
        )
        assert producer.flush(30) == 0
        own = make_url(mysql_url)._replace(username=user, password=None)
        env = flow_env(
            topics,
            own.render_as_string(hide_password=False),
            models,
            mysql_password_file=str(secret),
            label_wait_seconds="2",
            label_retry_seconds="1",
        )
        status, logs = run_flow_logs(env)
        assert status == 0, logs[-3000:]
        assert "rejected" in logs  # the run logged something about its data
        unreachable = own.set(port=1).render_as_string(hide_password=False)
        status, failing = run_flow_logs(
            env | {"PAYSCORE_MYSQL_URL": unreachable, "PAYSCORE_MYSQL_OUTAGE_SECONDS": "2"}
        )
        assert status != 0 and "MySQL unavailable" in failing, failing[-3000:]
        for text in (logs, failing):
            assert password not in text, "the MySQL password is in a log line"
    finally:
        root_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
