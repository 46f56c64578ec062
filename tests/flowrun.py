"""Running the scoring flow as a user would: ``ops/run_flow.sh`` with PAYSCORE_* settings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Producer
from sqlalchemy.engine import make_url

from features.contract import FraudLabel, Payment
from model_state.signing import read_key
from settings.config import Config
from test_data.ports import free_ports
from test_data.produce import from_samples, from_simulation, send
from test_data.samples import SampleMessage

ROOT = Path(__file__).resolve().parent.parent
# The key that signs the versions integration tests train, and that their flows trust.
KEY_FILE = ROOT / ".services" / "test-model.key"
# The broker the tests use: PAYSCORE_KAFKA_BROKERS (the shared one by default; a private one for
# the drills that restart it).
BROKERS = Config.from_env(os.environ).kafka_brokers


def key_for_tests() -> bytes:
    return read_key(KEY_FILE, create=True)


def logged(log: Path, pattern: str) -> list[re.Match[str]]:
    """Every match of the regular expression ``pattern`` in ``log``, a flow's output (the lines
    of all its processes in one file): what a test waits for when the flow's state shows nowhere
    else, such as which model version or ruleset each process has taken up. Whole lines only:
    the last one may be read while a process is still writing it, and its part so far can
    match what the whole line would not (``version 1`` of ``version 12``)."""
    if not log.exists():
        return []
    text = log.read_text(errors="replace")
    return list(re.finditer(pattern, text[: text.rfind("\n") + 1]))


def flow_env(
    topics: dict[str, str], mysql_url: str, model_dir: Path, **extra: str
) -> dict[str, str]:
    """The settings of a flow (and of the tools: review queue, model tools) on these topics (of
    the configured broker) and the database of ``mysql_url`` (the flow's account; the others' as
    configured), serving no metrics unless ``metrics_port`` is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    env.update({f"PAYSCORE_{k.upper()}": v for k, v in topics.items()})
    database = make_url(mysql_url).database
    assert database, mysql_url
    on_it = Config.from_env(os.environ).on_database(database)
    env.update(
        PAYSCORE_KAFKA_BROKERS=on_it.kafka_brokers,
        PAYSCORE_MYSQL_URL=mysql_url,
        PAYSCORE_REVIEW_MYSQL_URL=on_it.review_mysql_dsn,
        PAYSCORE_MODELS_MYSQL_URL=on_it.models_mysql_dsn,
        PAYSCORE_ANALYST_MYSQL_URL=on_it.analyst_mysql_dsn,
        PAYSCORE_MYSQL_ADMIN_URL=on_it.mysql_admin_dsn,
        PAYSCORE_MODEL_DIR=str(model_dir),
        PAYSCORE_MODEL_KEY_FILE=str(KEY_FILE),
        PAYSCORE_TAIL="false",
        PAYSCORE_METRICS_PORT="0",
    )
    env.update({f"PAYSCORE_{k.upper()}": v for k, v in extra.items()})
    return env


def run_flow(
    env: dict[str, str],
    processes: int = 2,
    workers: int = 2,
    extra: list[str] | None = None,
    logs: list[str] | None = None,
) -> float:
    """Runs the flow to its end (it must exit 0); its log lines (stderr) are added to ``logs``
    if given. Returns the seconds it took."""
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), str(processes), str(workers), *(extra or [])],
        env=env | {"FLOW_BASE_PORT": str(free_ports(processes))},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"flow failed ({done.returncode}):\n{done.stderr[-4000:]}"
    if logs is not None:
        logs.extend(done.stderr.splitlines())
    return time.perf_counter() - started


def produce(topics: dict[str, str], events: Iterable[Payment | FraudLabel | SampleMessage]) -> None:
    """Send events (or sample-file messages, byte for byte) to the flow's topics; all must land."""
    events = list(events)
    to = (topics["payments_topic"], topics["labels_topic"])
    records = (
        from_samples(events, *to)  # type: ignore[arg-type]
        if events and isinstance(events[0], SampleMessage)
        else from_simulation(events, *to)  # type: ignore[arg-type]
    )
    producer = Producer({"bootstrap.servers": BROKERS, "linger.ms": 5})
    report = send(records, producer, progress=False)
    assert report.ok, report.errors


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group of ``process`` (started with ``start_new_session``), as a
    supervisor stops a flow; SIGKILL if it has not ended within 60 s, and reaped then too, so
    that nothing of it runs into the next test (its database dropped under it, its ports and
    CPU still taken). The caller checks ``process.returncode``."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
