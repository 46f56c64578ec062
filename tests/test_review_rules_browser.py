"""Rules and lists in a real browser, with the real flow (issue 21 item 7): an analyst adds a
card to a new list, adds a rule on that list in shadow (the flow records its hits and decides
as before), backtests it (its table and chart), activates it; the running flow then declines
the card's next payment by that rule, the payment's page names the rule, and the rule's page
counts its shadow hits and the payments it decided.

Headless Chromium through chromedriver (``ops/tools.sh``); the application runs as ``python -m
review`` in a subprocess, the flow as ``ops/run_flow.sh`` (one process, following its topics,
looking for a new ruleset every second). The pages must log no error to the browser console.
Screenshots: ``reports/test-artifacts/rules-backtest.png`` (the backtest),
``rules-payment.png`` (the payment declined by the rule) and ``rules-rule.png`` (the rule's
hits, in shadow and active).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import Engine, func, select

from storage.tables import scored_payments
from test_data.generator import simulate
from test_data.spec import SimulationSpec
from tests.flowrun import ROOT, flow_env, logged, produce
from tests.reviewkit import review_server, stop, wait_for
from tests.test_review_browser import add_alice, browser, sign_in_as_alice, submit

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "reports" / "test-artifacts"
REFRESH_SECONDS = 1.0
__all__ = ["browser"]  # the fixture, shared with the review queue's browser test


def stored(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(scored_payments)).scalar_one())


def deciding_with(log: Path) -> int:
    """The newest ruleset version the flow (one process) has logged taking up, 0 before any."""
    adopted = logged(log, r"deciding with ruleset version (\d+) \(was ")
    return max((int(m[1]) for m in adopted), default=0)


def arrive(browser: webdriver.Chrome, url: str) -> None:
    """Wait until the form just sent has brought the browser to ``url`` (a click returns before
    the redirect it causes is followed: the page read at once can still be the form's)."""
    with contextlib.suppress(TimeoutException):  # said by the assertion, with where it is
        WebDriverWait(browser, 20).until(lambda b: b.current_url == url)
    assert browser.current_url == url


def test_an_analyst_blocks_a_card_with_a_rule_and_the_flow_declines_its_next_payment(
    browser: webdriver.Chrome,
    topics: dict[str, str],
    mysql_url: str,
    engine: Engine,
    models: Path,
    tmp_path: Path,
) -> None:
    payments = list(simulate(SimulationSpec(seed=31, days=3, cards=150, merchants=30)).payments())
    third = len(payments) // 3
    # Scored before the rule exists, while it is in shadow, after it is activated.
    before, shadowed, after = payments[:third], payments[third : 2 * third], payments[2 * third :]
    # The card to block: one that pays in all three, as often as can be in each.
    counts = [Counter(p.card_id for p in part) for part in (before, shadowed, after)]
    both = counts[0].keys() & counts[1].keys() & counts[2].keys()
    card = max(both, key=lambda c: (min(n[c] for n in counts), c))
    env = flow_env(
        topics, mysql_url, models, tail="true", rules_refresh_seconds=str(REFRESH_SECONDS)
    )
    log = tmp_path / "flow.log"
    flow = subprocess.Popen(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), "1", "1"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    app_env = env | {"PAYSCORE_REVIEW_SESSION_KEY_FILE": str(tmp_path / "session.key")}
    try:
        produce(topics, before)
        wait_for("the first third to be scored", lambda: stored(engine) == len(before), 180)
        add_alice(app_env, tmp_path)
        with review_server(app_env, tmp_path / "review.log") as base:
            browser.get(f"{base}/login")
            sign_in_as_alice(browser)

            # A new list, and the card on it.
            browser.get(f"{base}/lists")
            browser.find_element(By.ID, "list-name").send_keys("stolen_cards")
            Select(browser.find_element(By.ID, "list-kind")).select_by_value("card")
            submit(browser, browser.find_element(By.ID, "create-list"))
            arrive(browser, f"{base}/lists/stolen_cards?saved=1")
            browser.find_element(By.ID, "entry-value").send_keys(card)
            browser.find_element(By.ID, "entry-reason").send_keys("reported stolen by phone")
            submit(browser, browser.find_element(By.ID, "add-entry-button"))
            assert "version 2" in browser.find_element(By.ID, "saved").text
            values = browser.find_elements(By.CSS_SELECTOR, "#entries td.value")
            assert [v.text for v in values] == [card]
            assert browser.find_element(By.ID, "entry-count").text == "1"

            # A rule on it, in shadow (the form's default).
            browser.get(f"{base}/rules")
            browser.find_element(By.ID, "rule-id").send_keys("stolen")
            browser.find_element(By.ID, "rule-text").send_keys(
                "decline if card_id in @stolen_cards priority 1"
            )
            assert Select(
                browser.find_element(By.ID, "rule-status")
            ).first_selected_option.text == ("shadow")
            submit(browser, browser.find_element(By.ID, "add-rule"))
            arrive(browser, f"{base}/rules/stolen?saved=3")
            assert browser.find_element(By.ID, "status").text == "shadow"
            # In shadow, the flow records its hits and decides as before, once it has the rule.
            # (saved in version 3, as the page's address says)
            wait_for("the flow to take up the rule", lambda: deciding_with(log) >= 3, 60)
            produce(topics, shadowed)
            wait_for(
                "the second third to be scored",
                lambda: stored(engine) == len(before) + len(shadowed),
                180,
            )
            browser.refresh()

            shadow_hits = browser.find_element(By.CSS_SELECTOR, "#hits-shadow td.hits")
            assert int(shadow_hits.text) == counts[1][card]

            # Backtested over every stored payment: it hits exactly the card's.
            submit(browser, browser.find_element(By.ID, "backtest"))
            row = browser.find_element(By.CSS_SELECTOR, "#backtest-rules tbody tr")
            assert row.find_element(By.CSS_SELECTOR, "td.rule").text == "stolen"
            hits = int(row.find_element(By.CSS_SELECTOR, "td.hits").text)
            assert hits == counts[0][card] + counts[1][card]
            assert int(browser.find_element(By.ID, "payments").text) == len(before) + len(shadowed)
            assert browser.find_elements(By.CSS_SELECTOR, "#chart svg polyline")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "rules-backtest.png"))

            # Activated: the flow applies it within its refresh.
            browser.get(f"{base}/rules/stolen")
            submit(browser, browser.find_element(By.ID, "set-active"))
            assert browser.find_element(By.ID, "status").text == "active"
            activated = int(
                re.findall(r"version (\d+)", browser.find_element(By.ID, "saved").text)[0]
            )
            wait_for(
                f"the flow to take up version {activated}",
                lambda: deciding_with(log) >= activated,
                60,
            )
            produce(topics, after)
            wait_for("every payment to be scored", lambda: stored(engine) == len(payments), 180)

            later = {p.transaction_id for p in after}
            with engine.connect() as c:
                found = c.execute(
                    select(
                        scored_payments.c.transaction_id,
                        scored_payments.c.card_id,
                        scored_payments.c.decision,
                        scored_payments.c.decided_by,
                        scored_payments.c.ruleset_version,
                        scored_payments.c.event_time,
                    )
                ).all()
            late = sorted(
                (r for r in found if r.transaction_id in later), key=lambda r: r.event_time
            )
            blocked = [r for r in late if r.card_id == card]
            assert blocked, "the card paid again"
            assert {(r.decision, r.decided_by, r.ruleset_version) for r in blocked} == {
                ("decline", "stolen", activated)
            }
            assert all(r.decided_by != "stolen" for r in late if r.card_id != card)

            browser.get(f"{base}/payments/{blocked[0].transaction_id}")
            assert browser.find_element(By.ID, "decision").text == "decline"
            link = browser.find_element(By.CSS_SELECTOR, "#decided-by a.rule")
            assert link.text == "stolen"
            assert link.get_attribute("href") == f"{base}/rules/stolen"
            assert browser.find_element(By.ID, "ruleset-version").text == str(activated)
            assert "stolen" in browser.find_element(By.ID, "rules-fired").text
            browser.save_screenshot(str(ARTIFACTS / "rules-payment.png"))
            submit(browser, link)
            assert browser.find_element(By.ID, "status").text == "active"
            fired = browser.find_element(By.CSS_SELECTOR, "#hits-active td.hits")
            assert int(fired.text) == len(blocked)
            assert browser.find_elements(By.CSS_SELECTOR, "#chart-active svg polyline")
            browser.save_screenshot(str(ARTIFACTS / "rules-rule.png"))
            severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert severe == [], severe
    finally:
        stop(flow)
