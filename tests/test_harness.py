"""The tests reach Kafka through the configured broker (``tests.flowrun.BROKERS``, from
``PAYSCORE_KAFKA_BROKERS``), so that they run against private services on other ports too; a
hard-coded ``127.0.0.1:9092`` sent part of tests/test_hostile_integration.py to whatever broker
listened there (review of issue 20)."""

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
