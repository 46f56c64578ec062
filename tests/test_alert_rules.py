"""The Prometheus alert rules: promtool checks them and runs their unit tests, every alert has a
test where it fires and one where it stays quiet, and they use only the flow's metrics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.metric_names import METRICS, referenced

PROMETHEUS = Path(__file__).resolve().parent.parent / "ops" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts_test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: `bash ops/tools.sh` installs it (Debian prometheus)",
)
# What the issue asks to alert on; the other metrics may appear in alerts too.
ALERTED_ON = {
    "payscore_psi",
    "payscore_payments_scored_total",
    "bytewax_kafka_consumer_lag",
    "payscore_last_scored_timestamp_seconds",
    "payscore_sink_failures_total",
    "payscore_sink_retries_total",
    "payscore_learner_backlog",
    "payscore_model_published_timestamp_seconds",
    "payscore_model_behind_since_timestamp_seconds",  # issue 20: scoring adopts the newest
    "payscore_model_checked_timestamp_seconds",
    "payscore_model_versions_refused_total",
}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    rules = _promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, (
        f"promtool check rules {RULES} failed:\n{rules.stdout}{rules.stderr}"
    )
    config = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, f"promtool check config failed:\n{config.stdout}{config.stderr}"


@needs_promtool
def test_the_alert_unit_tests_pass() -> None:
    run = _promtool("test", "rules", str(RULE_TESTS))
    assert run.returncode == 0, (
        f"promtool test rules {RULE_TESTS} failed:\n{run.stdout}{run.stderr}"
    )


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """A quiet case expects no alert at all; a firing case lists every alert expected, so the
    other series of its test (the normal ones) are checked quiet as well."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - fires == set(), f"{RULE_TESTS.name}: alerts never tested firing"
    assert names - quiet == set(), f"{RULE_TESTS.name}: alerts never tested staying quiet"
    assert (fires | quiet) - names == set(), f"{RULE_TESTS.name} tests alerts {RULES.name} lacks"


def test_every_alert_has_a_severity_and_tells_the_operator_what_to_do() -> None:
    for rule in _alerts():
        where = f"{RULES.name}: alert {rule['alert']}"
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, where
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), f"{where} has no summary"
        assert len(annotations.get("description", "")) > 80, f"{where}: description too short"


def test_the_rules_use_only_the_flow_s_metrics_and_cover_what_the_issue_asks() -> None:
    used: set[str] = set()
    for rule in _rules():
        used |= referenced(rule["expr"])
    assert used <= set(METRICS)
    assert ALERTED_ON - used == set(), "metrics no alert rule looks at"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("rate(payscore_payments_scored[5m])", "unknown metric 'payscore_payments_scored'"),
        ("payscore_fraud_probability > 0", "unknown metric 'payscore_fraud_probability'"),
        ('payscore_psi{subjet="amount_eur"}', "has no label 'subjet'"),
        ('payscore_payments_scored_total{decision="decliend"}', "matches none of decision"),
        ('payscore_labels_total{outcome=~"rejected_.*|lost"}', "matches none of outcome"),
    ],
)
def test_the_name_check_catches_mistakes(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        referenced(expr)


def test_the_name_check_accepts_suffixes_and_known_label_values() -> None:
    expr = (
        'sum(rate(payscore_append_to_commit_seconds_bucket{le="+Inf",job="payscore"}[5m]))'
        ' / sum(rate(payscore_payments_scored_total{decision=~"decline|review"}[5m]))'
        ' + sum(payscore_labels_total{outcome=~"rejected_.*"})'
    )
    assert referenced(expr) == {
        "payscore_append_to_commit_seconds",
        "payscore_payments_scored_total",
        "payscore_labels_total",
    }
