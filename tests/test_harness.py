"""Rules the test modules themselves keep, read from their source.

- They reach Kafka through the configured broker (``tests.flowrun.BROKERS``, from
  ``PAYSCORE_KAFKA_BROKERS``), so that they run against private services on other ports too; a
  hard-coded ``127.0.0.1:9092`` sent part of tests/test_hostile_integration.py to whatever
  broker listened there (review of issue 20).
- A hypothesis test's own health-check list keeps ``too_slow`` suppressed, as the profile of
  tests/conftest.py does (CI runs on a loaded 2-core machine)."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# The SASL tests use the plaintext listener on purpose, as the broker's administrator.
ON_PURPOSE = {"test_security_integration.py"}
# A client made with a literal address (a settings assertion like Config's default is fine).
HARD_CODED = re.compile(
    r"""(Producer|Consumer|AdminClient)\(\s*\{\s*["']bootstrap\.servers["']\s*:\s*["'][^"']*:\d+["']"""
)


def test_no_test_connects_to_a_hard_coded_broker() -> None:
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(TESTS.glob("*.py"))
        if path.name not in ON_PURPOSE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if HARD_CODED.search(line)
    ]
    assert not found, "use tests.flowrun.BROKERS:\n" + "\n".join(found)


# A test's own list of suppressed health checks replaces the profile's (tests/conftest.py),
# it does not add to it: one that leaves out too_slow turns that check on again, and a loaded
# machine's slow data generation then fails the test (FailedHealthCheck) though nothing is
# wrong.
SUPPRESSED = re.compile(r"suppress_health_check\s*=\s*(\[[^\]]*\]|list\(HealthCheck\))")


def test_every_hypothesis_setting_that_suppresses_health_checks_keeps_too_slow_suppressed() -> None:
    found = [
        f"{path.name}: suppress_health_check={m[1]}"
        for path in sorted(TESTS.glob("*.py"))
        for m in SUPPRESSED.finditer(path.read_text())
        if m[1] != "list(HealthCheck)" and "HealthCheck.too_slow" not in m[1]
    ]
    assert not found, "add HealthCheck.too_slow:\n" + "\n".join(found)


def test_the_suppressed_lists_are_found() -> None:
    assert SUPPRESSED.search("settings(suppress_health_check=[HealthCheck.too_slow])")
    text = (TESTS / "conftest.py").read_text()
    assert [m[1] for m in SUPPRESSED.finditer(text)] == ["[HealthCheck.too_slow]"]
