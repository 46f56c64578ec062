"""A broker whose every listener takes SASL logins only (``SERVICES_KAFKA_AUTH_ONLY=1``), and the
flow, the producer tool and the topic tool against it (issue 20, item 9).

The shared broker of ``ops/services.sh`` keeps its PLAINTEXT listener (other developers use it),
so this starts a second broker of the same jars and configuration generator, with a state folder,
ports and a small heap of its own (``bash ops/services.sh kafka-up`` with ``SERVICES_*``
settings), and stops it afterwards. A client without credentials must be refused on every
listener it offers: librdkafka gets nothing, and a Kafka request sent by hand gets the connection
closed with no answer, where a PLAINTEXT listener answers anyone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from sqlalchemy import Engine, func, select

from settings.config import read_properties
from storage.tables import dead_letters, fraud_labels, scored_payments
from test_data.ports import free_ports
from test_data.samples import load_samples
from tests.flowrun import ROOT, flow_env, run_flow

pytestmark = [pytest.mark.integration, pytest.mark.restarts_services]

SAMPLES = ROOT / "test_data" / "samples"
SERVICES = ROOT / "ops" / "services.sh"


@dataclass(frozen=True)
class Broker:
    state: Path
    plaintext_port: int  # the default configuration's PLAINTEXT port: not opened here
    client_port: int
    controller_port: int
    admin: dict[str, str]  # librdkafka settings of the broker's admin login

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def listeners(self) -> dict[str, int]:
        """What the broker offers, from the configuration it runs with: name -> port."""
        settings = read_properties(str(self.state / "kafka" / "server.properties"), "test")
        found = {}
        for listener in settings["listeners"].split(","):
            name, _, address = listener.partition("://")
            found[name] = int(address.rpartition(":")[2])
        return found


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    state = Path(tempfile.mkdtemp(prefix="payscore-kafka-"))
    # Free ports below the ephemeral range: one bound to 0 is an ephemeral port, which a
    # client's connection can take in the seconds before the broker (a JVM) binds it.
    first = free_ports(3)
    plain, controller, sasl = first, first + 1, first + 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICES_")} | {
        "SERVICES_STATE_DIR": str(state),
        "SERVICES_KAFKA_PORT": str(plain),
        "SERVICES_KAFKA_CONTROLLER_PORT": str(controller),
        "SERVICES_KAFKA_SASL_PORT": str(sasl),
        "SERVICES_KAFKA_HEAP": "256m",
        "SERVICES_KAFKA_AUTH_ONLY": "1",
        # The jars of this checkout's broker (resolved once by Maven if missing).
        "SERVICES_KAFKA_LIB": os.environ.get(
            "SERVICES_KAFKA_LIB", str(ROOT / ".services" / "kafka" / "lib")
        ),
    }

    def services(command: str) -> None:
        done = subprocess.run(
            ["bash", str(SERVICES), command], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"services.sh {command}:\n{done.stdout}{done.stderr}"

    try:
        services("kafka-up")
        admin = read_properties(str(state / "kafka" / "admin.properties"), "admin.properties")
        yield Broker(state, plain, sasl, controller, admin)
    finally:
        services("kafka-down")
        shutil.rmtree(state, ignore_errors=True)


def by_hand(port: int, api_key: int, version: int, body: bytes, *, flexible: bool) -> bytes | None:
    """One Kafka request without logging in; its answer, or None when the broker closed the
    connection without one."""
    header = struct.pack(">hhih", api_key, version, 7, 5) + b"probe" + (b"\0" if flexible else b"")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(header + body)) + header + body)
        answer = b""
        try:
            while len(answer) < 4 or len(answer) < 4 + struct.unpack(">i", answer[:4])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                answer += chunk
        except ConnectionResetError:
            return None
    return answer[4:]


METADATA = (3, 0, struct.pack(">i", 0), False)  # every topic
DESCRIBE_QUORUM = (55, 0, b"\x01\x00", True)  # what a controller listener answers


def test_a_client_without_credentials_is_refused_on_every_listener(broker: Broker) -> None:
    offered = broker.listeners()
    assert set(offered) == {"SASL_PLAINTEXT", "CONTROLLER"}, offered
    protocols = read_properties(str(broker.state / "kafka" / "server.properties"), "test")[
        "listener.security.protocol.map"
    ]
    assert "PLAINTEXT" not in {p.partition(":")[2] for p in protocols.split(",")}, protocols
    for name, port in offered.items():
        anonymous = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        with pytest.raises(KafkaException):
            anonymous.list_topics(timeout=5)
        for api_key, version, body, flexible in (METADATA, DESCRIBE_QUORUM):
            assert by_hand(port, api_key, version, body, flexible=flexible) is None, (name, api_key)
        # Alive, and asking for a login: it names its SASL mechanisms.
        handshake = by_hand(port, 17, 1, struct.pack(">h", 5) + b"PLAIN", flexible=False)
        assert handshake is not None and b"PLAIN" in handshake, (name, handshake)
    # The PLAINTEXT port of the default configuration is not opened at all.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", broker.plaintext_port)) != 0
    logged_in = AdminClient({"bootstrap.servers": broker.bootstrap, **broker.admin})
    assert logged_in.list_topics(timeout=10).brokers


def test_the_flow_and_the_tools_work_against_it_with_a_settings_file(
    broker: Broker, mysql_url: str, engine: Engine, models: Path, tmp_path: Path
) -> None:
    user, password = f"flow-{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **broker.admin})
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    settings = tmp_path / "kafka.properties"
    settings.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
        f"sasl.username={user}\nsasl.password={password}\n"
    )
    settings.chmod(0o600)
    stem = f"auth-{secrets.token_hex(4)}"
    topics = {
        "payments_topic": f"{stem}-payments",
        "labels_topic": f"{stem}-labels",
        "dead_letters_topic": f"{stem}-dead-letters",
    }
    env = flow_env(
        topics,
        mysql_url,
        models,
        kafka_brokers=broker.bootstrap,
        kafka_config_file=str(settings),
        label_wait_seconds="10",
        label_retry_seconds="1",
    )

    def tool(*args: str) -> str:
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert password not in done.stdout + done.stderr
        return done.stdout + done.stderr

    assert "created" in tool("ops/create_topics.py")
    tool(
        "-m", "test_data.produce", "--no-progress",
        "--file", str(SAMPLES / "payments.jsonl"), "--file", str(SAMPLES / "labels.jsonl"),
    )  # fmt: skip
    run_flow(env, processes=2, workers=1)

    samples = load_samples(SAMPLES / "payments.jsonl")
    valid = {msgspec.json.decode(m.value)["transaction_id"] for m in samples if m.kind == "valid"}
    malformed = [m for m in samples if m.kind == "malformed"]
    labels = load_samples(SAMPLES / "labels.jsonl")
    with engine.connect() as c:
        stored = set(c.execute(select(scored_payments.c.transaction_id)).scalars())
        letters = c.execute(select(func.count()).select_from(dead_letters)).scalar_one()
        read = c.execute(select(func.count()).select_from(fraud_labels)).scalar_one()
    assert stored == valid
    assert letters == len(malformed)
    assert read == len([m for m in labels if m.kind == "valid"])
    # The flow's dead-letter producer logged in too: every letter is on the topic.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": stem, **broker.admin})
    try:
        partitions = (
            consumer.list_topics(topics["dead_letters_topic"], timeout=10)
            .topics[topics["dead_letters_topic"]]
            .partitions
        )
        ends = [
            consumer.get_watermark_offsets(TopicPartition(topics["dead_letters_topic"], p))[1]
            for p in partitions
        ]
    finally:
        consumer.close()
    assert sum(ends) == len(malformed)
