"""The review queue in a real browser, with the real flow: an analyst signs in, opens the queue,
opens a payment, marks it fraud; the label arrives on the labels topic with the analyst, the
running flow claims and learns it, and the payment's page then names the version that learned it.

Headless Chromium through chromedriver (``ops/tools.sh`` installs both); the application runs as
``python -m review`` in a subprocess on a free port, the flow as ``ops/run_flow.sh``. The page
must log no error to the browser console; a screenshot goes to
``reports/test-artifacts/review.png``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from sqlalchemy import Engine, func, select

from features.contract import LabelDecoder
from storage.tables import fraud_labels, scored_payments
from test_data.generator import simulate
from test_data.spec import SimulationSpec
from tests.flowrun import ROOT, flow_env, produce
from tests.reviewkit import PASSWORD, read_topic

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = ROOT / "reports" / "test-artifacts" / "review.png"


def wait_for(what: str, check: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run `bash ops/tools.sh`")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1800")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def test_an_analyst_marks_a_payment_fraud_and_the_flow_learns_it(
    browser: webdriver.Chrome,
    topics: dict[str, str],
    mysql_url: str,
    engine: Engine,
    models: Path,
    tmp_path: Path,
) -> None:
    payments = list(simulate(SimulationSpec(seed=31, days=2, cards=150, merchants=30)).payments())
    env = flow_env(
        topics,
        mysql_url,
        models,
        tail="true",
        review_threshold="0.01",  # enough payments in the queue for a small stream
        publish_every_labels="1",
        publish_seconds="1",
        model_refresh_seconds="1",
        label_retry_seconds="1",
    )
    flow = subprocess.Popen(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1"],
        env=env | {"FLOW_BASE_PORT": str(2900 + os.getpid() % 90)},
        stdout=(tmp_path / "flow.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port = free_port()
    app_env = env | {
        "PAYSCORE_REVIEW_PORT": str(port),
        "PAYSCORE_REVIEW_SESSION_KEY_FILE": str(tmp_path / "session.key"),
    }
    app: subprocess.Popen[bytes] | None = None
    try:
        produce(topics, payments)

        def scored() -> int:
            with engine.connect() as c:
                return int(c.execute(select(func.count()).select_from(scored_payments)).scalar())

        wait_for("every payment to be scored", lambda: scored() == len(payments), 180)

        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD + "\n")
        added = subprocess.run(
            [
                str(ROOT / ".venv/bin/python"),
                "-m",
                "review.users",
                "add",
                "alice",
                *("--role", "analyst", "--password-file", str(password_file)),
            ],
            cwd=ROOT,
            env=app_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        app = subprocess.Popen(
            [str(ROOT / ".venv/bin/python"), "-m", "review"],
            cwd=ROOT,
            env=app_env,
            stdout=(tmp_path / "review.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        wait_for("the review application to answer", lambda: answers(f"{base}/login"), 30)

        browser.get(f"{base}/queue")  # not signed in: sent to the sign-in page
        assert browser.current_url == f"{base}/login"
        browser.find_element(By.ID, "name").send_keys("alice")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "sign-in").click()
        assert browser.find_element(By.ID, "user").text == "alice"

        links = browser.find_elements(By.CSS_SELECTOR, "#queue a.payment")
        assert links, "the queue is empty"
        transaction_id = links[0].text
        probabilities = [
            float(td.text.rstrip(" %"))
            for td in browser.find_elements(By.CSS_SELECTOR, "#queue td.num:first-child")
        ]
        assert probabilities == sorted(probabilities, reverse=True)
        links[0].click()
        assert browser.find_element(By.ID, "transaction").text == transaction_id
        assert browser.find_elements(By.CSS_SELECTOR, "#contributions tbody tr")
        browser.find_element(By.ID, "note").send_keys("confirmed with the card holder")
        browser.find_element(By.ID, "mark-fraud").click()
        assert "recorded and sent" in browser.find_element(By.ID, "given").text

        (message,) = read_topic(topics["labels_topic"], 1)
        label = LabelDecoder().decode(message.value())
        assert (label.transaction_id, label.is_fraud, label.analyst) == (
            transaction_id,
            True,
            "alice",
        )

        def learned() -> str | None:
            with engine.connect() as c:
                return c.execute(
                    select(fraud_labels.c.learned_version).where(
                        fraud_labels.c.transaction_id == transaction_id
                    )
                ).scalar()

        wait_for("the flow to learn the verdict", lambda: learned() is not None, 120)
        browser.refresh()
        assert browser.find_element(By.CSS_SELECTOR, "#labels td.learned").text == learned()
        assert browser.find_element(By.CSS_SELECTOR, "#labels td.status").text == "claimed"
        assert "fraud" in browser.find_element(By.ID, "label").text

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], severe
    finally:
        if app is not None:
            stop(app)
        stop(flow)
