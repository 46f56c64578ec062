"""MySQL over the local unix socket (``PAYSCORE_MYSQL_SOCKET``): URLs of this host go through
it without TLS, URLs of other hosts keep TCP and their TLS, and a socket of another server than
the URL's port names is refused. The integration tests run on the real server: the flow's own
account connects over the socket, and a whole flow run stores through it."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from settings.config import LOCAL_HOSTS, Config, over_socket
from storage.engine import SocketMismatchError, is_transient, make_engine
from test_data.hostile import valid_payment
from test_data.ports import free_ports
from tests.flowrun import ROOT, flow_env

SOCKET = "/run/mysqld/mysqld.sock"  # where ops/services.sh's MariaDB listens (the default)

names = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=12)


@given(
    host=st.sampled_from(sorted(LOCAL_HOSTS)),
    user=names,
    password=names,
    database=names,
    port=st.integers(1, 65535),
)
def test_a_url_of_this_host_goes_through_the_socket_without_tls_and_keeps_the_rest(
    host: str, user: str, password: str, database: str, port: int
) -> None:
    url = make_url(
        f"mysql+pymysql://{user}:{password}@{'[::1]' if host == '::1' else host}:{port}/{database}"
    )
    moved = make_url(over_socket(url.render_as_string(hide_password=False), SOCKET))
    assert (moved.username, moved.password, moved.host, moved.port, moved.database) == (
        user, password, host, port, database,
    )  # fmt: skip
    assert dict(moved.query) == {"unix_socket": SOCKET, "ssl_disabled": "true"}


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://u:p@db.internal:3306/payscore",
        "mysql+pymysql://u:p@10.0.0.5:3306/payscore?ssl_ca=/etc/ca.pem",
        "mysql+pymysql://u:p@127.0.0.2:3306/payscore",
    ],
)
def test_a_url_of_another_host_is_used_as_it_is(url: str) -> None:
    assert over_socket(url, SOCKET) == url


def test_a_local_url_that_asks_for_tls_keeps_it_over_the_socket() -> None:
    url = "mysql+pymysql://u:p@127.0.0.1:3306/payscore?ssl_ca=/etc/ca.pem"
    moved = make_url(over_socket(url, SOCKET))
    assert dict(moved.query) == {"ssl_ca": "/etc/ca.pem", "unix_socket": SOCKET}


def test_a_url_naming_its_own_socket_keeps_it() -> None:
    url = "mysql+pymysql://u:p@localhost/payscore?unix_socket=%2Ftmp%2Fother.sock"
    assert over_socket(url, SOCKET) == url


def test_the_setting_moves_every_account_and_is_off_by_default() -> None:
    assert Config.from_env({}).mysql_dsn == Config.from_env({}).mysql_url  # TCP, as the URL says
    config = Config.from_env(
        {
            "PAYSCORE_MYSQL_SOCKET": SOCKET,
            "PAYSCORE_REVIEW_MYSQL_URL": "mysql+pymysql://r:r@db.internal:3306/payscore",
        }
    ).on_database("payscore_test_x")
    for dsn in (config.mysql_dsn, config.models_mysql_dsn, config.mysql_admin_dsn):
        assert make_url(dsn).query["unix_socket"] == SOCKET
        assert make_url(dsn).database == "payscore_test_x"
    assert "unix_socket" not in make_url(config.review_mysql_dsn).query  # another host


def connection_host(engine: Engine) -> tuple[str, str]:
    """How the server sees this connection: its host (``localhost`` over the socket,
    ``host:port`` over TCP) and its TLS cipher (empty without TLS)."""
    with engine.connect() as c:
        host = c.execute(
            text("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
        ).scalar_one()
        cipher = c.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()[1]
    return host, cipher


@pytest.mark.integration
def test_the_flow_account_connects_over_the_socket_and_writes(database_config: Config) -> None:
    over = msgspec.structs.replace(database_config, mysql_socket=SOCKET)
    tcp = make_engine(database_config.mysql_dsn)
    local = make_engine(over.mysql_dsn)
    try:
        assert connection_host(tcp)[0].partition(":")[2], "the TCP connection has no port"
        assert connection_host(local) == ("localhost", "")  # the socket, no TLS
        with local.begin() as c:
            assert (
                c.execute(text("SELECT CURRENT_USER()"))
                .scalar_one()
                .startswith(make_url(database_config.mysql_url).username + "@")
            )
            c.execute(text("SELECT COUNT(*) FROM scored_payments")).scalar_one()
    finally:
        tcp.dispose()
        local.dispose()


@pytest.mark.integration
def test_a_url_that_asks_for_tls_gets_verified_tls_over_the_socket(
    database_config: Config,
) -> None:
    """``ops/services.sh`` gives the server a throwaway CA's certificate for 127.0.0.1; the URL's
    ``ssl_ca`` is kept over the socket, and the server is verified under the URL's host."""
    ca = Path("/etc/mysql/payscore-tls/ca.pem")
    asked = make_url(database_config.mysql_dsn).update_query_dict({"ssl_ca": str(ca)})
    config = msgspec.structs.replace(
        database_config, mysql_url=asked.render_as_string(hide_password=False),
        mysql_socket=SOCKET,
    )  # fmt: skip
    engine = make_engine(config.mysql_dsn)
    try:
        host, cipher = connection_host(engine)
    finally:
        engine.dispose()
    assert host == "localhost" and cipher, (host, cipher)


@pytest.mark.integration
def test_a_socket_of_another_server_than_the_url_names_is_refused(
    database_config: Config,
) -> None:
    wrong_port = make_url(database_config.mysql_dsn).set(port=3399)
    config = msgspec.structs.replace(
        database_config, mysql_url=wrong_port.render_as_string(hide_password=False),
        mysql_socket=SOCKET,
    )  # fmt: skip
    engine = make_engine(config.mysql_dsn)
    try:
        with pytest.raises(
            SocketMismatchError, match="port 3306, but the URL names port 3399"
        ) as e:
            engine.connect().close()
        assert not is_transient(e.value, let_in=True)  # a wrong setting, not an outage
    finally:
        engine.dispose()


def flow_hosts(database: str, seen: set[str], stop: threading.Event) -> None:
    """The hosts of the flow account's connections to ``database`` (root over its socket, as
    ``ops/services.sh`` connects), until ``stop``."""
    query = (
        "SELECT HOST FROM information_schema.PROCESSLIST "
        f"WHERE USER = 'payscore_flow' AND DB = '{database}'"
    )
    while not stop.is_set():
        done = subprocess.run(
            ["mariadb", "--protocol=socket", "-uroot", "-N", "-e", query],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        seen.update(line for line in done.stdout.splitlines() if line)
        time.sleep(0.1)


@pytest.mark.integration
def test_a_flow_run_stores_through_the_socket_only(
    topics: dict[str, str], mysql_url: str, models: Path, engine: Engine
) -> None:
    from confluent_kafka import Producer

    database = make_url(mysql_url).database
    assert database
    producer = Producer(Config.from_env(os.environ).kafka_client())
    producer.produce(
        topics["payments_topic"],
        value=msgspec.json.encode(valid_payment(transaction_id="over-socket-1")),
        key=b"c",
    )
    assert producer.flush(30) == 0
    env = flow_env(topics, mysql_url, models, mysql_socket=SOCKET)
    seen: set[str] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=flow_hosts, args=(database, seen, stop), daemon=True)
    watcher.start()
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1"],
            env=env | {"FLOW_BASE_PORT": str(free_ports(1))},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        stop.set()
        watcher.join(60)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    with engine.connect() as c:
        stored = c.execute(text("SELECT transaction_id FROM scored_payments")).scalars().all()
    assert stored == ["over-socket-1"]
    assert seen == {"localhost"}, f"the flow's connections came from {sorted(seen)}"
