"""Secrets stay out of logs, and MySQL is reached over verified TLS, on the real broker and server.

The flow connects as a user of its own whose password comes from ``PAYSCORE_MYSQL_PASSWORD_FILE``;
a run with payments, a bad message and labels, and a run that cannot reach MySQL at all, must
print nothing that contains the password.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from storage.accounts import Account, grant_as
from storage.engine import make_engine
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


def logs_in(user: str, password: str) -> bool:
    """Whether ``user`` logs in on the broker's SASL/SCRAM listener (9094) now."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    client = AdminClient(
        {
            "bootstrap.servers": "127.0.0.1:9094",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": password,
        }
    )
    try:
        client.list_topics(timeout=5)
    except KafkaException:
        return False
    return True


def flow_account(admin_engine: Engine, database: str, user: str) -> None:
    """``user`` gets the flow's rights on the test's database, as the schema command gives the
    configured flow account its own (storage/accounts.py)."""
    with admin_engine.begin() as c:
        grant_as(c, database, "flow", Account(user, "127.0.0.1"))


def test_no_log_line_holds_the_mysql_password(
    topics: dict[str, str], mysql_url: str, admin_engine: Engine, models: Path, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    database = make_url(mysql_url).database
    assert database
    user = f"psk_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    root_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
    try:
        flow_account(admin_engine, database, user)
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


def test_the_flow_talks_to_a_mysql_that_requires_tls_and_checks_its_certificate(
    topics: dict[str, str], mysql_url: str, models: Path, engine: Engine, admin_engine: Engine
) -> None:
    """``ops/services.sh`` starts MariaDB with a throwaway CA's certificate for 127.0.0.1; an
    account that requires TLS is reached with the URL's ``ssl_ca`` (server verified), refused
    without TLS, and a server whose certificate another CA signed is refused by the client."""
    import pymysql
    from confluent_kafka import Producer

    ca = Path("/etc/mysql/payscore-tls/ca.pem")  # as ops/services.sh installs it
    database = make_url(mysql_url).database
    assert database
    user = f"pst_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    root_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}' REQUIRE SSL")
    try:
        flow_account(admin_engine, database, user)
        plain = make_url(mysql_url)._replace(username=user, password=password)
        tls = plain.update_query_dict({"ssl_ca": str(ca)})
        with pytest.raises(pymysql.err.OperationalError, match="1045"):  # no TLS: refused
            pymysql.connect(
                host="127.0.0.1", user=user, password=password, ssl_disabled=True
            ).close()
        stranger = plain.update_query_dict({"ssl_ca": "/etc/ssl/certs/ca-certificates.crt"})
        with pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
            make_engine(stranger.render_as_string(hide_password=False)).connect().close()
        checked = make_engine(tls.render_as_string(hide_password=False))
        with checked.connect() as c:
            cipher = c.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()[1]
        checked.dispose()
        assert cipher, "the connection is not encrypted"
        producer = Producer({"bootstrap.servers": "127.0.0.1:9092"})
        producer.produce(
            topics["payments_topic"],
            value=msgspec.json.encode(valid_payment(transaction_id="over-tls-1")),
            key=b"c",
        )
        assert producer.flush(30) == 0
        env = flow_env(topics, tls.render_as_string(hide_password=False), models)
        status, logs = run_flow_logs(env)
        assert status == 0, logs[-3000:]
        with engine.connect() as c:
            stored = c.execute(text("SELECT transaction_id FROM scored_payments")).scalars().all()
        assert stored == ["over-tls-1"]
    finally:
        root_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_every_kafka_client_of_the_flow_logs_in_with_sasl_scram(
    topics: dict[str, str], mysql_url: str, models: Path, engine: Engine, tmp_path: Path
) -> None:
    """The local broker's 9094 listener takes SASL/SCRAM-SHA-256 logins only. With the settings
    file the flow's sources and dead-letter producer log in there; with a wrong password the
    flow fails, and no log line holds the password."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    user, password = f"flow-{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    try:
        # The controller answers once it has committed the credential; the broker takes it up
        # a moment later, and a login before is refused: the flow below must not be the first.
        deadline = time.monotonic() + 60
        while not logs_in(user, password):
            assert time.monotonic() < deadline, f"{user} could not log in on 9094 within 60 s"
            time.sleep(0.5)
        producer = Producer({"bootstrap.servers": "127.0.0.1:9092"})
        for value in (msgspec.json.encode(valid_payment(transaction_id="over-sasl-1")), b"{bad"):
            producer.produce(topics["payments_topic"], value=value, key=b"c")
        assert producer.flush(30) == 0
        settings = tmp_path / "kafka.properties"
        settings.write_text(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
            f"sasl.username={user}\nsasl.password={password}\n"
        )
        settings.chmod(0o600)
        env = flow_env(topics, mysql_url, models, kafka_config_file=str(settings)) | {
            "PAYSCORE_KAFKA_BROKERS": "127.0.0.1:9094"
        }
        status, logs = run_flow_logs(env)
        assert status == 0, logs[-3000:]
        with engine.connect() as c:
            stored = c.execute(text("SELECT transaction_id FROM scored_payments")).scalars().all()
            letters = c.execute(text("SELECT COUNT(*) FROM dead_letters")).scalar_one()
        assert (stored, letters) == (["over-sasl-1"], 1)
        settings.write_text(settings.read_text().replace(password, "wrong-" + password[:6]))
        status, failing = run_flow_logs(env)
        assert status != 0, failing[-3000:]
        for text_ in (logs, failing):
            assert password not in text_, "the Kafka password is in a log line"
    finally:
        deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)
        for future in admin.alter_user_scram_credentials([deletion]).values():
            future.result(timeout=30)
