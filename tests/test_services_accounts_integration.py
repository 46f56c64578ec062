"""``ops/services.sh`` on a server an earlier payscore set up: the accounts converge.

The earlier script made two accounts: ``payscore``, with every row right on the payscore
databases, shared by the flow and the review queue, and ``payscore_admin``. Run again, the script
makes one account per job, drops the shared one, takes away what a job account should not have,
and the schema command gives each exactly its rights per table (storage/accounts.py); a third
run changes nothing. On a MariaDB of the test's own (its own folder, port and socket): the
shared server's accounts are other developers' too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage.accounts import GRANTS, ROLES, Accounts, held_rights, rights
from storage.engine import make_engine
from storage.tables import metadata
from test_data.ports import free_ports
from tests.flowrun import ROOT

pytestmark = pytest.mark.integration

# What ops/services.sh made before issue 20 (commit 592ebb5, mysql_up).
EARLIER = """
CREATE DATABASE IF NOT EXISTS `payscore` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'payscore_admin'@'127.0.0.1' IDENTIFIED BY 'payscore_admin';
CREATE USER IF NOT EXISTS 'payscore_admin'@'localhost' IDENTIFIED BY 'payscore_admin';
GRANT ALL PRIVILEGES ON `payscore`.* TO 'payscore_admin'@'127.0.0.1', 'payscore_admin'@'localhost';
GRANT ALL PRIVILEGES ON `payscore\\_%`.* TO 'payscore_admin'@'127.0.0.1', 'payscore_admin'@'localhost';
CREATE USER IF NOT EXISTS 'payscore'@'127.0.0.1' IDENTIFIED BY 'payscore';
CREATE USER IF NOT EXISTS 'payscore'@'localhost' IDENTIFIED BY 'payscore';
GRANT SELECT, INSERT, UPDATE, DELETE ON `payscore`.* TO 'payscore'@'127.0.0.1', 'payscore'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE ON `payscore\\_%`.* TO 'payscore'@'127.0.0.1', 'payscore'@'localhost';
"""  # noqa: E501


def as_root(command: list[str]) -> list[str]:
    return command if os.geteuid() == 0 else ["sudo", "-n", *command]


@pytest.fixture(scope="module")
def mariadb() -> Iterator[tuple[int, str]]:
    """A MariaDB of its own: (port, root's socket); stopped and removed afterwards."""
    install, server = shutil.which("mariadb-install-db"), "/usr/sbin/mariadbd"
    if install is None or not os.path.exists(server):
        pytest.skip("MariaDB is not installed (bash ops/services.sh up installs it)")
    folder = Path(tempfile.mkdtemp(prefix="payscore-mariadb-", dir="/tmp"))
    data, sock, port = folder / "data", folder / "mysqld.sock", free_ports(1)
    subprocess.run(as_root(["chown", "mysql:mysql", str(folder)]), check=True)
    subprocess.run(
        as_root([install, "--no-defaults", f"--datadir={data}", "--user=mysql",
                 "--auth-root-authentication-method=socket", "--skip-test-db"]),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    process = subprocess.Popen(
        as_root([server, "--no-defaults", f"--datadir={data}", "--user=mysql",
                 f"--socket={sock}", f"--port={port}", "--bind-address=127.0.0.1",
                 "--skip-log-bin", "--innodb-buffer-pool-size=32M", f"--pid-file={folder}/pid"]),
        stdout=subprocess.DEVNULL, stderr=(folder / "log").open("wb"), start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180  # a fresh data folder on a loaded machine
        while subprocess.run(root(sock, "SELECT 1"), capture_output=True).returncode != 0:
            assert process.poll() is None, (folder / "log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the test's MariaDB did not start in 180 s"
            time.sleep(0.3)
        yield port, str(sock)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        subprocess.run(as_root(["rm", "-rf", str(folder)]), check=False)


def root(sock: str, statement: str) -> list[str]:
    return as_root(["mariadb", "--protocol=socket", f"--socket={sock}", "-uroot", "-N", "-r", "-e",
                    statement])  # fmt: skip


def query(sock: str, statement: str) -> list[list[str]]:
    done = subprocess.run(root(sock, statement), capture_output=True, text=True, check=True)
    return [line.split("\t") for line in done.stdout.splitlines()]


def services(port: int, sock: str, *command: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYSCORE_", "SERVICES_"))}
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "services.sh"), *command],
        env=env | {"SERVICES_MYSQL_PORT": str(port), "SERVICES_MYSQL_SOCKET": sock},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_accounts_of_an_earlier_install_converge_to_one_per_job(
    mariadb: tuple[int, str],
) -> None:
    port, sock = mariadb
    subprocess.run(root(sock, EARLIER), check=True)
    # The earlier install's tables, made by the earlier schema command (no table rights).
    earlier = create_engine(
        f"mysql+pymysql://payscore_admin:payscore_admin@127.0.0.1:{port}/payscore"
    )
    metadata.create_all(earlier)
    earlier.dispose()
    # A job account someone gave a right on the whole database by hand.
    subprocess.run(root(sock, "CREATE USER 'payscore_flow'@'localhost' IDENTIFIED BY 'x'; "
                              "GRANT SELECT ON payscore.* TO 'payscore_flow'@'localhost'"),
                   check=True)  # fmt: skip

    services(port, sock, "mysql-up")  # running already: only the accounts
    said = services(port, sock, "tables")

    users = {tuple(row) for row in query(sock, "SELECT User, Host FROM mysql.user")}
    assert not {u for u in users if u[0] == "payscore"}, "the shared account is still there"
    jobs = ("payscore_flow", "payscore_review", "payscore_models", "payscore_analyst")
    for user in (*jobs, "payscore_admin"):
        assert {(user, "127.0.0.1"), (user, "localhost")} <= users
    wide = query(sock, "SELECT User, Host, Db, Grant_priv FROM mysql.db")
    assert {(u, d) for u, _, d, _ in wide} == {
        ("payscore_admin", "payscore"),
        ("payscore_admin", "payscore\\_%"),
    }, wide
    assert all(g == "Y" for *_, g in wide), "the admin grants the job accounts' rights"
    assert "grant statements to match storage/accounts.py" in said

    admin = make_engine(f"mysql+pymysql://payscore_admin:payscore_admin@127.0.0.1:{port}/payscore")
    accounts = Accounts(dict(zip(ROLES, jobs, strict=True)), "payscore_admin",
                        ("127.0.0.1", "localhost"))  # fmt: skip
    with admin.connect() as c:
        held = held_rights(c, "payscore", accounts.job_users)
    admin.dispose()
    for role, user in zip(ROLES, jobs, strict=True):
        for host in accounts.hosts:
            for table in GRANTS:
                want = rights(table, role)
                have = [
                    h for (a, t), h in held.items() if (a.user, a.host, t) == (user, host, table)
                ]
                got = (have[0].table, have[0].updatable()) if have else (frozenset(), frozenset())
                assert got == (want.table_privileges, want.update_columns), (user, host, table)

    flow = make_engine(f"mysql+pymysql://payscore_flow:payscore_flow@127.0.0.1:{port}/payscore")
    with flow.connect() as c:
        c.execute(text("SELECT COUNT(*) FROM scored_payments"))
        with pytest.raises(Exception, match="1142"):
            c.execute(text("SELECT COUNT(*) FROM review_users"))
    flow.dispose()

    # Run again: nothing to change.
    services(port, sock, "mysql-up")
    assert "; 0 grant statements" in services(port, sock, "tables")
