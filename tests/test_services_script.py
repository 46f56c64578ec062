"""ops/services.sh checks its arguments before it stops or starts anything: ``restart-mysql 5s``
stopped MariaDB, then ``sleep`` refused "5s" and the script exited, leaving MariaDB down; a word
after a command (``status now``, ``restart-kafka 1 2``) was ignored. Run here against a private
state folder, data folder and ports that nothing listens on, so no shared service is touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def services(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    private = {
        "SERVICES_STATE_DIR": str(state),
        "SERVICES_MYSQL_DATADIR": str(tmp_path / "mysql" / "data"),
        "SERVICES_MYSQL_PORT": "1",
        "SERVICES_KAFKA_PORT": "2",
        "SERVICES_KAFKA_CONTROLLER_PORT": "3",
        "SERVICES_KAFKA_SASL_PORT": "4",
    }
    return subprocess.run(
        ["bash", str(ROOT / "ops" / "services.sh"), *args],
        env=os.environ | private,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (
            ["restart-mysql", "5s"],
            "SECONDS: expected a whole number of seconds from 0 to 3600; got 5s",
        ),
        (
            ["restart-kafka", "-5"],
            "SECONDS: expected a whole number of seconds from 0 to 3600; got -5",
        ),
        (
            ["reset-grants", "1e9"],
            "SECONDS: expected a whole number of seconds from 0 to 3600; got 1e9",
        ),
        (["restart-mysql", "3601"], "from 0 to 3600; got 3601"),
        (["restart-mysql", ""], "from 0 to 3600; got ''"),
        (["restart-mysql", "9" * 5_000], "from 0 to 3600; got " + "9" * 40 + "\n"),
        (["restart-mysql", "1\n; rm -rf /"], "got $'1\\n; rm -rf /'"),
        (["restart-kafka", "1", "2"], "restart-kafka takes at most SECONDS; got 2 arguments"),
        (["status", "now"], "status takes no argument; got 1: now"),
        (["down", "--force"], "down takes no argument; got 1: --force"),
        (["restart-everything"], "expected a command; got restart-everything"),
        ([], "expected a command; got ''"),
    ],
)
def test_an_argument_it_cannot_use_is_refused_with_the_usage_before_anything_runs(
    tmp_path: Path, args: list[str], why: str
) -> None:
    done = services(tmp_path, *args)
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    assert done.stderr.startswith("[services] refused: ")
    assert why in done.stderr
    assert "usage: bash ops/services.sh up|down|status" in done.stderr
    assert len(done.stderr) < 1_000
    assert done.stdout == ""
    assert list((tmp_path / "state").iterdir()) == []  # nothing installed, started or written
    assert not (tmp_path / "mysql").exists()


def test_status_with_no_argument_still_runs(tmp_path: Path) -> None:
    done = services(tmp_path, "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "kafka: stopped\nmariadb: stopped\n"


@pytest.mark.parametrize("script", ["quickstart", "tools", "bootstrap"])
@pytest.mark.parametrize("argument", ["--help", "--dry-run", "x\n; rm -rf /"])
def test_the_scripts_that_take_no_argument_refuse_one_before_anything_runs(
    tmp_path: Path, script: str, argument: str
) -> None:
    """Before: an argument was ignored: ``bash ops/quickstart.sh --help`` started the services,
    produced the samples and ran the flow; ``tools.sh --dry-run`` installed packages. (Only
    bootstrap.sh was run before the fix, to see it fail: the others would have done all that.)"""
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / f"{script}.sh"), argument],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr.startswith(f"[{script}] refused: bash ops/{script}.sh takes no argument")
    assert done.stderr.endswith(f"usage: bash ops/{script}.sh\n")
    assert done.stdout == ""
