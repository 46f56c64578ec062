"""The flow's Prometheus metrics, scraped from every process during a real run, add up to what
landed in MySQL: payments by decision, labels by outcome, dead letters; the model in use and the
consumer lag are there; the health probe says ready. They are served on 127.0.0.1 only unless
PAYSCORE_METRICS_HOST says otherwise, and the flow writes no file for them (issue 20, item 7)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from storage.labels import SAMPLED_OUT
from storage.tables import dead_letters, fraud_labels, scored_payments
from test_data.generator import simulate
from test_data.hostile import valid_payment
from test_data.ports import free_ports
from test_data.spec import SimulationSpec
from tests.flowrun import BROKERS, ROOT, flow_env, produce, stop

pytestmark = pytest.mark.integration

PROCESSES = 2


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def total(samples: list[dict], name: str, **labels: str) -> float:
    return sum(
        v
        for scraped in samples
        for (n, ls), v in scraped.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


# claimed labels that negative downsampling left out of learning (their ledger row says so)
SAMPLED_OUT_CLAIMS = (
    select(func.count())
    .select_from(fraud_labels)
    .where(fraud_labels.c.status == "claimed", fraud_labels.c.reason.startswith(SAMPLED_OUT))
)


def caught_up(samples: list[dict], engine: Engine) -> bool:
    """The scraped counters count every payment, claimed label and dead letter in MySQL, and the
    learner every claimed label that negative downsampling did not leave out (a ledger row whose
    reason says sampled_out): with the default rate of 0.1 the learner never learns them all."""
    with engine.connect() as c:
        payments = c.execute(select(func.count()).select_from(scored_payments)).scalar_one()
        claimed = c.execute(
            select(func.count()).select_from(fraud_labels).where(fraud_labels.c.status == "claimed")
        ).scalar_one()
        sampled_out = c.execute(SAMPLED_OUT_CLAIMS).scalar_one()
        letters = c.execute(select(func.count()).select_from(dead_letters)).scalar_one()
    return (
        total(samples, "payscore_payments_scored_total") == payments
        and total(samples, "payscore_append_to_commit_seconds_count") == payments
        and total(samples, "payscore_labels_total", outcome="claimed") == claimed
        and total(samples, "payscore_labels_learned_total") == claimed - sampled_out
        and total(samples, "payscore_dead_letters_total", source="payments") == letters
    )


def test_metrics_of_every_process_add_up_to_what_landed_in_mysql(
    topics: dict[str, str], mysql_url: str, engine: Engine, models: Path, tmp_path: Path
) -> None:
    base = free_ports(2 * PROCESSES)  # the processes' metrics ports, then their cluster's
    sim = simulate(SimulationSpec(seed=31, days=2, cards=400, merchants=80))
    produce(topics, sim.stream)
    producer = Producer({"bootstrap.servers": BROKERS})
    # the last: a field named like another reason, counted as what it is (an unknown field)
    hostile = json.dumps(valid_payment(transaction_id="tx-hostile") | {"MySQL refused": 1})
    for bad in (b"not json", b'{"transaction_id": 5}', b"{}", hostile.encode()):
        producer.produce(topics["payments_topic"], bad, key=b"bad")
    producer.flush(30)
    env = flow_env(topics, mysql_url, models, tail="true", metrics_port=str(base)) | {
        "FLOW_BASE_PORT": str(base + PROCESSES),
    }
    log = tmp_path / "flow.log"
    flow = start(["bash", str(ROOT / "ops" / "run_flow.sh"), str(PROCESSES), "1"], env, log)
    payments = sum(1 for e in sim.stream if hasattr(e, "amount_minor"))
    label_messages = sum(1 for e in sim.stream if not hasattr(e, "amount_minor"))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with engine.connect() as c:
                stored = c.execute(select(func.count()).select_from(scored_payments)).scalar_one()
                waiting = c.execute(
                    select(func.count())
                    .select_from(fraud_labels)
                    .where(fraud_labels.c.status == "waiting")
                ).scalar_one()
                labels = c.execute(select(func.count()).select_from(fraud_labels)).scalar_one()
            if stored == payments and labels == label_messages and not waiting:
                break
            time.sleep(1)
        # The counters of the last batches move after their commits, and the learner's after the
        # claims: scraped until they have caught up with MySQL (they never go past it).
        samples = [scrape(base + i) for i in range(PROCESSES)]
        while not caught_up(samples, engine) and time.monotonic() < deadline + 60:
            time.sleep(1)
            samples = [scrape(base + i) for i in range(PROCESSES)]
        probe = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "dataflows.health", str(base)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        stop(flow)
    assert flow.returncode == 0, log.read_text(errors="replace")[-3000:]

    with engine.connect() as c:
        decisions = dict(
            c.execute(
                select(scored_payments.c.decision, func.count()).group_by(
                    scored_payments.c.decision
                )
            ).all()
        )
        outcomes = Counter(
            dict(
                c.execute(
                    select(fraud_labels.c.status, func.count()).group_by(fraud_labels.c.status)
                ).all()
            )
        )
        letters = c.execute(select(func.count()).select_from(dead_letters)).scalar_one()
        sampled_out = c.execute(SAMPLED_OUT_CLAIMS).scalar_one()
    assert sum(decisions.values()) == payments
    for decision, n in decisions.items():
        assert total(samples, "payscore_payments_scored_total", decision=decision) == n
    assert total(samples, "payscore_fraud_probability_count") == payments
    assert total(samples, "payscore_append_to_commit_seconds_count") == payments
    assert total(samples, "payscore_labels_total", outcome="claimed") == outcomes["claimed"]
    # negative downsampling (PAYSCORE_LEGIT_SAMPLE_RATE, 0.1 by default) gives the learner every
    # claimed label but those whose ledger row says sampled_out
    assert total(samples, "payscore_labels_learned_total") == outcomes["claimed"] - sampled_out
    assert 0 < sampled_out < outcomes["claimed"]
    assert letters == 4
    assert total(samples, "payscore_dead_letters_total", source="payments") == 4
    reasons = {
        reason: total(samples, "payscore_dead_letters_total", source="payments", reason=reason)
        for reason in ("malformed_json", "wrong_type", "missing_field", "unknown_field")
    }
    assert reasons == {"malformed_json": 1, "wrong_type": 1, "missing_field": 1, "unknown_field": 1}
    assert all(
        any(n == "payscore_model_info" and v == 1 for (n, _), v in s.items()) for s in samples
    )
    lag = [k for s in samples for k in s if k[0] == "bytewax_kafka_consumer_lag"]
    assert {dict(ls)["topic"] for _, ls in lag} == {
        topics["payments_topic"],
        topics["labels_topic"],
    }
    assert probe.returncode == 0, probe.stdout + probe.stderr
    print(f"scraped {PROCESSES} processes: {decisions}, labels {dict(outcomes)}, {letters} letters")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``command`` in its own process group, its output in ``log``: a pipe read only once the
    flow has ended fills (64 KiB) while it runs, and the flow then blocks on its next log line
    (more lines on a loaded machine: retries, slow batches)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than 127.x (``hostname -I``), or None."""
    try:
        listed = subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split()
    except OSError:
        listed = []
    return next((a for a in listed if "." in a and not a.startswith("127.")), None)


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_metrics_answer_on_loopback_only_and_no_file_is_written_for_them(
    topics: dict[str, str], mysql_url: str, models: Path, tmp_path: Path
) -> None:
    """Bytewax's API server listened on 0.0.0.0 and wrote its graph to
    /tmp/payscore-api-PORT/dataflow.json, following a link a local user planted there."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no IPv4 address besides 127.x (hostname -I)")
    base = free_ports(4)  # the processes' metrics ports, then their cluster's
    precious = tmp_path / "root-only"
    precious.write_text("nobody may write here\n")
    precious.chmod(0o600)
    planted = []
    for port in (base, base + 1):  # the folder the earlier run_flow.sh named for each process
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"payscore-api-{port}"
        folder.mkdir(exist_ok=True)
        link = folder / "dataflow.json"
        link.unlink(missing_ok=True)
        link.symlink_to(precious)
        planted.append(link)
    env = flow_env(topics, mysql_url, models, tail="true", metrics_port=str(base)) | {
        "FLOW_BASE_PORT": str(base + 2)
    }
    log = tmp_path / "flow.log"
    flow = start(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "2", "1"],
        env | {"BYTEWAX_DATAFLOW_API_ENABLED": "true"},  # an operator's leftover: ignored
        log,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                bodies = [scrape(base + i) for i in range(2)]
                break
            except OSError:
                assert flow.poll() is None, "the flow stopped"
                assert time.monotonic() < deadline, "no metrics on 127.0.0.1 within 120 s"
                time.sleep(0.5)
        assert all(any(n == "python_info" for n, _ in b) for b in bodies)
        for i in range(2):
            assert refused(address, base + i), f"{address}:{base + i} answered"
    finally:
        stop(flow)
    assert flow.returncode == 0, log.read_text(errors="replace")[-3000:]
    assert precious.read_text() == "nobody may write here\n"
    for link in planted:
        assert link.is_symlink() and link.readlink() == precious
        link.unlink()
        link.parent.rmdir()


def test_a_metrics_host_setting_serves_on_that_address(tmp_path: Path) -> None:
    """For scraping from elsewhere: PAYSCORE_METRICS_HOST names the address to listen on."""
    from dataflows.metrics_server import serve_metrics

    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no IPv4 address besides 127.x (hostname -I)")
    port = free_ports(1)  # not an ephemeral port, which a client's connection may take first
    assert serve_metrics(address, port - 2, 2) == port
    body = urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5).read()
    assert b"python_info" in body
    assert refused("127.0.0.1", port)


@pytest.mark.parametrize("value", ["1", "false"])
def test_the_readme_s_plain_command_refuses_bytewax_s_api_server_for_any_value(
    topics: dict[str, str], mysql_url: str, models: Path, tmp_path: Path, value: str
) -> None:
    """Bytewax 0.21.1 turns its API server on (0.0.0.0, dataflow.json in the working folder)
    whenever BYTEWAX_DATAFLOW_API_ENABLED is set, whatever its value: the README's plain
    ``python -m bytewax.run`` stops before Bytewax starts it, naming the variable (review of
    issue 20, finding 6)."""
    port = free_ports(1)
    env = flow_env(topics, mysql_url, models, tail="true", metrics_port="0") | {
        "BYTEWAX_DATAFLOW_API_ENABLED": value,
        "BYTEWAX_DATAFLOW_API_PORT": str(port),
    }
    flow = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.scoring:flow"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert flow.returncode != 0, flow.stderr[-3000:]
    assert "BYTEWAX_DATAFLOW_API_ENABLED is set to" in flow.stderr, flow.stderr[-3000:]
    assert refused("127.0.0.1", port)
    assert not (tmp_path / "dataflow.json").exists()
