"""The review queue in a real browser, with the real flow: an analyst signs in, opens the queue,
opens a payment, marks it fraud; the label arrives on the labels topic with the analyst, the
running flow claims and learns it, and the payment's page then names the version that learned it
and the analyst. A label sent straight to the topic in the analyst's name is learned too, but
stored and shown as unverified. A session cookie saved before signing out opens nothing after.

Headless Chromium through chromedriver (``ops/tools.sh`` installs both); the application runs as
``python -m review`` in a subprocess on a free port, the flow as ``ops/run_flow.sh``. The page
must log no error to the browser console; screenshots go to
``reports/test-artifacts/review.png`` (the verdict) and ``review-unverified.png`` (the forgery).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
from confluent_kafka import Producer
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import Engine, func, select

from features.contract import FraudLabel, LabelDecoder
from review.security import SESSION_COOKIE
from storage.labels import SAMPLED_OUT
from storage.tables import fraud_labels, review_sessions, review_verdicts, scored_payments
from test_data.generator import simulate
from test_data.spec import SimulationSpec
from tests.flowrun import ROOT, flow_env, produce
from tests.reviewkit import (
    BROKERS,
    PASSWORD,
    payment_row,
    read_topic,
    review_server,
    stop,
    store,
    wait_for,
)

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = ROOT / "reports" / "test-artifacts" / "review.png"


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
        env=env,
        stdout=(tmp_path / "flow.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    app_env = env | {"PAYSCORE_REVIEW_SESSION_KEY_FILE": str(tmp_path / "session.key")}
    try:
        produce(topics, payments)

        def scored() -> int:
            with engine.connect() as c:
                return int(c.execute(select(func.count()).select_from(scored_payments)).scalar())

        wait_for("every payment to be scored", lambda: scored() == len(payments), 180)
        add_alice(app_env, tmp_path)
        with review_server(app_env, tmp_path / "review.log") as base:
            browser.get(f"{base}/queue")  # not signed in: sent to the sign-in page
            assert browser.current_url == f"{base}/login"
            sign_in_as_alice(browser)

            links = browser.find_elements(By.CSS_SELECTOR, "#queue a.payment")
            assert len(links) >= 2, "the queue has fewer than two payments"
            transaction_id, forged_id = links[0].text, links[1].text
            probabilities = [
                float(td.text.rstrip(" %"))
                for td in browser.find_elements(By.CSS_SELECTOR, "#queue td.num:first-child")
            ]
            assert probabilities == sorted(probabilities, reverse=True)
            submit(browser, links[0])
            assert browser.find_element(By.ID, "transaction").text == transaction_id
            assert browser.find_elements(By.CSS_SELECTOR, "#contributions tbody tr")
            browser.find_element(By.ID, "note").send_keys("confirmed with the card holder")
            submit(browser, browser.find_element(By.ID, "mark-fraud"))
            assert "recorded and sent" in browser.find_element(By.ID, "given").text

            (message,) = read_topic(topics["labels_topic"], 1)
            label = LabelDecoder().decode(message.value())
            assert (label.transaction_id, label.is_fraud, label.analyst) == (
                transaction_id,
                True,
                "alice",
            )
            # Someone who may write to the labels topic sends a label in alice's name.
            forge_label(engine, topics["labels_topic"], forged_id, analyst="alice")

            def learned(txn: str) -> str | None:
                with engine.connect() as c:
                    return c.execute(
                        select(fraud_labels.c.learned_version).where(
                            fraud_labels.c.transaction_id == txn
                        )
                    ).scalar()

            wait_for("the flow to learn the verdict", lambda: learned(transaction_id), 120)

            def claimed(txn: str) -> bool:  # a legitimate label may be sampled out, not learned
                with engine.connect() as c:
                    status = c.execute(
                        select(fraud_labels.c.status).where(fraud_labels.c.transaction_id == txn)
                    ).scalar()
                return status == "claimed"

            wait_for("the flow to claim the forged label", lambda: claimed(forged_id), 120)
            with engine.connect() as c:
                analysts = {
                    r.transaction_id: (r.analyst, r.unverified_analyst)
                    for r in c.execute(select(fraud_labels))
                }
            assert analysts == {transaction_id: ("alice", None), forged_id: (None, "alice")}

            browser.refresh()
            assert browser.find_element(By.CSS_SELECTOR, "#labels td.learned").text == learned(
                transaction_id
            )
            assert browser.find_element(By.CSS_SELECTOR, "#labels td.status").text == "claimed"
            assert browser.find_element(By.CSS_SELECTOR, "#labels td.analyst").text == "alice"
            assert "fraud" in browser.find_element(By.ID, "label").text
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(SCREENSHOT))

            browser.get(f"{base}/payments/{forged_id}")
            cell = browser.find_element(By.CSS_SELECTOR, "#labels td.analyst")
            assert cell.text == "unverified: the message names alice"
            assert cell.find_element(By.CSS_SELECTOR, "span.unverified")
            # claimed; a legitimate label may be left out of learning (negative downsampling)
            status = browser.find_element(By.CSS_SELECTOR, "#labels td.status").text
            assert status == "claimed" or status.startswith(f"claimed: {SAMPLED_OUT}: ")
            browser.save_screenshot(str(SCREENSHOT.with_name("review-unverified.png")))
            severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert severe == [], severe
    finally:
        stop(flow)


def add_alice(env: dict[str, str], tmp_path: Path) -> None:
    """``python -m review.users add alice`` as an operator runs it."""
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
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr


def submit(browser: webdriver.Chrome, control: WebElement) -> None:
    """Click ``control`` and wait until the page it leads to has replaced this one: a click
    returns before the form is sent, and an element read at once can be the old page's, or
    go stale while it is read."""
    page = browser.find_element(By.TAG_NAME, "html")
    control.click()
    WebDriverWait(browser, 30).until(lambda _: replaced(page))
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return document.readyState") == "complete"
    )


def replaced(page: WebElement) -> bool:
    """True once ``page`` (the old page's root) is no longer in the document. Chromedriver says
    so as a stale element, or, when the check falls in the middle of the navigation, as "Node
    with given id does not belong to the document" (a plain WebDriverException, which
    ``expected_conditions.staleness_of`` does not catch: a CI run failed on it)."""
    try:
        page.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc.msg):
            return True
        raise
    return False


def sign_in_as_alice(browser: webdriver.Chrome) -> None:
    browser.find_element(By.ID, "name").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    submit(browser, browser.find_element(By.ID, "sign-in"))
    assert browser.find_element(By.ID, "user").text == "alice"


def forge_label(engine: Engine, topic: str, transaction_id: str, *, analyst: str) -> None:
    """A label for a stored payment, naming ``analyst``, produced straight to the topic."""
    with engine.connect() as c:
        card = c.execute(
            select(scored_payments.c.card_id).where(
                scored_payments.c.transaction_id == transaction_id
            )
        ).scalar_one()
    label = FraudLabel(
        transaction_id=transaction_id,
        card_id=card,
        is_fraud=False,
        reported_at=datetime.now(UTC),
        analyst=analyst,
        note="looks fine to me",
    )
    producer = Producer({"bootstrap.servers": BROKERS})
    producer.produce(topic, key=card.encode(), value=msgspec.json.encode(label))
    assert producer.flush(30) == 0


def test_a_session_cookie_saved_before_sign_out_opens_nothing_after_it(
    browser: webdriver.Chrome,
    topics: dict[str, str],
    mysql_url: str,
    engine: Engine,
    review_engine: Engine,
    models: Path,
    tmp_path: Path,
) -> None:
    store(engine, [payment_row("tx-1", 0.7)])
    env = flow_env(topics, mysql_url, models) | {
        "PAYSCORE_REVIEW_SESSION_KEY_FILE": str(tmp_path / "session.key")
    }
    add_alice(env, tmp_path)
    with review_server(env, tmp_path / "review.log") as base:
        browser.get(f"{base}/login")
        sign_in_as_alice(browser)
        browser.get(f"{base}/payments/tx-1")
        csrf = browser.find_element(By.NAME, "csrf_token").get_attribute("value")
        saved = browser.get_cookie(SESSION_COOKIE)
        assert saved is not None
        assert saved["httpOnly"] is True
        assert saved["sameSite"] == "Strict"

        submit(browser, browser.find_element(By.CSS_SELECTOR, "header form button"))  # Sign out
        assert browser.current_url == f"{base}/login"
        browser.add_cookie({"name": SESSION_COOKIE, "value": saved["value"], "path": "/"})
        browser.get(f"{base}/queue")
        assert browser.current_url == f"{base}/login"  # the saved cookie opens nothing
        browser.add_cookie({"name": SESSION_COOKIE, "value": saved["value"], "path": "/"})
        browser.get(f"{base}/payments/tx-1")
        assert browser.current_url == f"{base}/login"

        # Nor does it give a verdict, with the form's own CSRF token.
        posted = httpx.post(
            f"{base}/payments/tx-1/verdict",
            data={"verdict": "fraud", "csrf_token": csrf},
            cookies={SESSION_COOKIE: saved["value"]},
        )
        assert posted.status_code == 403
        assert "not signed in" in posted.text
    with review_engine.connect() as c:
        assert c.execute(select(review_verdicts)).all() == []
        (session,) = c.execute(select(review_sessions)).all()
    assert (session.user_name, session.end_reason) == ("alice", "logout")
    assert read_topic(topics["labels_topic"], 1, timeout=3) == []
