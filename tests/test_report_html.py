"""``python -m storage.report --html``: a scratch database with known rows, the page rendered by
the real command and opened in headless Chromium (Debian's chromium and chromedriver, see
ops/tools.sh); the figures shown must equal what MySQL holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Engine, func, insert, select, text

from features.contract import FraudLabel
from storage.labels import ReadLabel, claim_labels
from storage.report import report
from storage.report_data import read_report
from storage.report_html import render
from storage.rows import dead_letter_row, model_version_row, scored_payment_row
from storage.sink import MySQLSinkPartition
from storage.tables import dead_letters, fraud_labels, model_versions, scored_payments
from tests.builders import BASE, model_metadata, payment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "reports" / "test-artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Not a valid id by the message contract, but the report must not trust what it reads.
HOSTILE_TXN = "<script>window.__pwned=1</script>"
HOSTILE_ERROR = '<img src=x onerror="window.__pwned=2"> & more'


def _fill(engine: Engine) -> None:
    """12 payments (7 approve, 3 review, 2 decline) over 3 hours and 2 versions; 5 labels; 2
    versions; 3 dead letters."""
    decisions = ["approve"] * 7 + ["review"] * 3 + ["decline"] * 2
    probabilities = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.4, 0.5, 0.6, 0.93, 0.97]
    rows = []
    for i, (decision, p) in enumerate(zip(decisions, probabilities, strict=True)):
        txn = HOSTILE_TXN if i == 11 else f"t-{i:02d}"
        rows.append(
            scored_payment_row(
                payment(
                    transaction_id=txn, card_id="c-1", event_time=BASE + timedelta(hours=i % 3)
                ),
                partition=0,
                offset=i,
                features={"amount_eur": 10.0},
                probability=p,
                decision=decision,
                reasons=None if decision == "approve" else ("amount_eur",),  # as the flow
                model_version="v00001" if i < 6 else "v00001.000001",
                scored_at=BASE + timedelta(hours=i % 3, seconds=1),
            )
        )
    MySQLSinkPartition(engine, scored_payments).write_batch(rows)
    labels = [
        FraudLabel(
            transaction_id=t, card_id=card, is_fraud=fraud, reported_at=BASE + timedelta(days=2)
        )
        for t, card, fraud in [
            ("t-10", "c-1", True),  # claimed
            ("t-03", "c-1", False),  # claimed
            ("t-10", "c-1", True),  # duplicate
            ("t-04", "c-9", True),  # card_mismatch
            ("t-99", "c-1", True),  # waits for its payment
        ]
    ]
    with engine.begin() as c:
        claim_labels(c, "fraud-labels", [ReadLabel(x, 0, i) for i, x in enumerate(labels)])
        c.execute(
            insert(model_versions),
            [
                model_version_row(
                    metadata=msgspec.to_builtins(model_metadata(name, parent_version=parent)),
                    payload=b"x",
                    artifact_path=name,
                )
                for name, parent in [("v00001", None), ("v00001.000001", "v00001")]
            ],
        )
    letters = [
        ("payments", "Expected `int`, got `str` - at `$.amount_minor`"),
        ("payments", "Expected `int`, got `float` - at `$.amount_minor`"),
        ("fraud-labels", HOSTILE_ERROR),
    ]
    MySQLSinkPartition(engine, dead_letters).write_batch(
        [
            dead_letter_row(
                topic=topic,
                partition=0,
                offset=i,
                key=None,
                value=b"{}",
                error=error,
                received_at=None,
                dead_lettered_at=BASE,
            )
            for i, (topic, error) in enumerate(letters)
        ]
    )


def _render_with_the_command(mysql_url: str, path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    env["PAYSCORE_MYSQL_URL"] = mysql_url
    run = subprocess.run(
        [sys.executable, "-m", "storage.report", "--html", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"python -m storage.report --html failed:\n{run.stderr}"
    assert path.is_file(), f"python -m storage.report --html wrote no {path}"


def _chromium():  # -> selenium WebDriver
    webdriver = pytest.importorskip("selenium.webdriver")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: `bash ops/tools.sh` installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,1400",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))


def _shown(driver, testid: str) -> int:
    from selenium.webdriver.common.by import By

    return int(
        driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]').text.replace(",", "")
    )


def _rows(driver, testid: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in driver.find_elements(By.CSS_SELECTOR, f'tr[data-testid="{testid}"]')
    ]


def test_the_html_report_shows_what_mysql_holds_in_chromium(
    engine: Engine, mysql_url: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    _fill(engine)
    page = tmp_path / "report.html"
    _render_with_the_command(mysql_url, page)
    sp, fl = scored_payments, fraud_labels
    with engine.connect() as c:
        count = c.execute(select(func.count()).select_from(sp)).scalar_one()
        decisions = dict(
            c.execute(select(sp.c.decision, func.count()).group_by(sp.c.decision)).all()
        )
        by_version = c.execute(
            select(sp.c.model_version, sp.c.decision, func.count())
            .group_by(sp.c.model_version, sp.c.decision)
            .order_by(sp.c.model_version, sp.c.decision)
        ).all()
        learned = c.execute(
            select(func.count()).select_from(sp).where(sp.c.label_is_fraud.is_not(None))
        ).scalar_one()
        reason = func.substring_index(fl.c.reason, ":", 1)
        outcomes = c.execute(
            select(fl.c.status, reason, func.count()).group_by(fl.c.status, reason)
        ).all()
        hour = func.date_format(sp.c.event_time, "%Y-%m-%d %H")
        hour_decisions = c.execute(
            select(func.count()).select_from(
                select(hour, sp.c.decision).group_by(hour, sp.c.decision).subquery()
            )
        ).scalar_one()
        versions = c.execute(select(func.count()).select_from(model_versions)).scalar_one()
        letters = c.execute(select(func.count()).select_from(dead_letters)).scalar_one()
    assert (count, decisions, learned, versions, letters) == (
        12,
        {"approve": 7, "review": 3, "decline": 2},
        2,
        2,
        3,
    ), "the scratch database does not hold the rows the test wrote"

    driver = _chromium()
    try:
        driver.get(page.as_uri())
        assert driver.title == f"payscore report: {engine.url.database}"
        assert _shown(driver, "scored-total") == count
        for decision, n in decisions.items():
            assert _shown(driver, f"decision-{decision}") == n, decision
        assert _shown(driver, "labels-learned") == learned
        assert _shown(driver, "label-messages") == sum(n for *_, n in outcomes)
        assert _shown(driver, "model-versions") == versions
        assert _shown(driver, "dead-letters") == letters
        assert [(v, d, int(n)) for v, d, n, _ in _rows(driver, "version-decision")] == [
            tuple(r) for r in by_version
        ]
        assert sorted((s, r, int(n)) for s, r, n in _rows(driver, "label-outcome")) == sorted(
            (s, r or "-", n) for s, r, n in outcomes
        )
        assert sum(int(n.replace(",", "")) for _, n in _rows(driver, "probability-bin")) == count
        assert [v[0] for v in _rows(driver, "model-version")] == ["v00001", "v00001.000001"]
        assert sorted((t, int(n)) for t, _, n, _ in _rows(driver, "dead-letter-class")) == [
            ("fraud-labels", 1),
            ("payments", 2),
        ]
        hourly = driver.find_elements(By.CSS_SELECTOR, '[data-testid="hourly-chart"] svg rect')
        assert len(hourly) == hour_decisions, "one bar per hour and decision with payments"
        # Approvals are stored without reason codes: the report says where to get them.
        top = _rows(driver, "top-score")
        assert [(t, d, r) for t, _, _, d, r in top[1:]] == [
            (
                f"t-{i:02d}",
                decision,
                f"on demand: python -m review.explain t-{i:02d}"
                if decision == "approve"
                else "amount_eur",
            )
            for i, decision in zip(
                range(10, 1, -1), ["decline"] + ["review"] * 3 + ["approve"] * 5, strict=True
            )
        ]
        # Values from the database are text, never markup.
        assert top[0][0] == HOSTILE_TXN
        body = driver.find_element(By.TAG_NAME, "body").get_attribute("textContent")
        assert HOSTILE_ERROR in body
        assert driver.find_elements(By.TAG_NAME, "script") == []
        assert driver.find_elements(By.TAG_NAME, "img") == []
        assert driver.execute_script("return window.__pwned === undefined")
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], f"console errors on {page}: {severe}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1100, height + 100)
        assert driver.save_screenshot(str(ARTIFACTS / "report.png")), "screenshot failed"
    finally:
        driver.quit()


def test_the_latency_is_shown_when_the_columns_exist(engine: Engine, admin_engine: Engine) -> None:
    _fill(engine)
    assert read_report(engine).latency is None
    assert 'data-testid="latency-missing"' in render(read_report(engine))
    with admin_engine.begin() as c:  # times the flow's account may not change
        # offsets 0-9: 3 ms; 10: 0.2 s; 11: 45 s
        c.execute(
            text(
                "UPDATE scored_payments SET appended_at = scored_at, stored_at = "
                "scored_at + INTERVAL CASE WHEN kafka_offset < 10 THEN 3000 "
                "WHEN kafka_offset = 10 THEN 200000 ELSE 45000000 END MICROSECOND"
            )
        )
    latency = read_report(engine).latency
    assert latency is not None
    assert latency.payments == 12
    assert [(b, n) for b, n in latency.buckets if n] == [(0.005, 10), (0.25, 1), (60, 1)]
    assert (latency.p50, latency.p99) == (0.005, 60)
    page = render(read_report(engine))
    assert '<span data-testid="latency-p99">≤ 60 s</span>' in page


def test_the_text_report_says_where_an_approvals_reasons_are(engine: Engine) -> None:
    """An approval stored without reason codes (as the flow stores it) is shown with the command
    that computes them; stored reasons, an approval's too (a rule fired on it), as stored."""
    cases = [
        ("t-a", 0.3, "approve", None),
        ("t-r", 0.6, "review", ("amount_eur", "card_count_24h")),
        ("t-s", 0.2, "approve", ("amount_eur",)),
    ]
    MySQLSinkPartition(engine, scored_payments).write_batch(
        [
            scored_payment_row(
                payment(transaction_id=txn), partition=0, offset=i,
                features={"amount_eur": 10.0}, probability=p, decision=decision,
                reasons=reasons, model_version="v00001", scored_at=BASE,
            )
            for i, (txn, p, decision, reasons) in enumerate(cases)
        ]
    )  # fmt: skip
    shown = {
        line.split()[0]: line.split("  reasons ")[1]
        for line in report(engine).splitlines()
        if "  reasons " in line
    }
    assert shown == {
        "t-a": "on demand (python -m review.explain t-a)",
        "t-r": "amount_eur, card_count_24h",
        "t-s": "amount_eur",
    }


def test_an_html_path_it_cannot_write_is_one_line_and_status_2(
    mysql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``--html`` naming a directory, or a path under a file: a traceback (IsADirectoryError,
    FileExistsError) after the report was read; one bounded line and status 2 now."""
    from storage.report import main

    monkeypatch.setenv("PAYSCORE_MYSQL_URL", mysql_url)
    (tmp_path / "a-file").write_text("")
    for path, said in [(tmp_path, "Is a directory"), (tmp_path / "a-file" / "r.html", "exists")]:
        with pytest.raises(SystemExit) as exited:
            main(["--html", str(path)])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m storage.report: refused: ") and said in err
