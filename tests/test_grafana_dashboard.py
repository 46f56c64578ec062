"""The Grafana dashboard: importable (a ``${DS_PROMETHEUS}`` input, schema 36 or newer), every
query parses as PromQL (promtool) and uses only the flow's metrics, and every metric is shown."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.metric_names import METRICS, referenced

DASHBOARD = Path(__file__).resolve().parent.parent / "ops" / "grafana" / "payscore.json"
DATASOURCE = "${DS_PROMETHEUS}"
# Grafana's variables, replaced by what they stand for before PromQL parses the query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return panels


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel query and every query variable."""
    found = [
        (f"panel {panel['id']} {panel['title']!r} query {target['refId']}", target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found.append((f"variable {variable['name']}", text))
    return found


def _label_values_selector(query: str) -> str:
    """``label_values(selector, label)`` -> the selector, a PromQL expression of its own."""
    m = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
    return m.group(1) if m else query


def _substituted(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know in {expr!r}"
    return expr


def test_the_dashboard_imports_with_a_prometheus_input() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36, f"{DASHBOARD.name}: schemaVersion"
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), f"{DASHBOARD.name}: panel ids repeat: {sorted(ids)}"
    for panel in _panels(dashboard):
        where = f"{DASHBOARD.name}: panel {panel['id']} {panel['title']!r}"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), where
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, f"{where} is wider than 24"
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE, f"{where} datasource"
        assert panel["targets"], f"{where} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, f"{where} query datasource"


def test_every_query_uses_only_the_flow_s_metrics_and_every_metric_is_shown() -> None:
    shown: set[str] = set()
    for where, expr in _queries(_dashboard()):
        try:
            shown |= referenced(expr)
        except ValueError as error:
            raise AssertionError(f"{DASHBOARD.name}, {where}: {error}") from error
    assert set(METRICS) - shown == set(), f"{DASHBOARD.name}: metrics no panel shows"


def test_the_psi_panel_shows_the_alert_thresholds() -> None:
    (panel,) = [p for p in _panels(_dashboard()) if "payscore_psi" in json.dumps(p.get("targets"))]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps[1:]] == [0.2, 0.25]


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not found: `bash ops/tools.sh` installs it (Debian prometheus)",
)
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses every query as the expression of a recording rule."""
    queries = _queries(_dashboard())
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query_{i}",
                        "expr": _substituted(_label_values_selector(e)),
                    }
                    for i, (_, e) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules))
    run = subprocess.run(
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    numbered = "\n".join(f"dashboard:query_{i}: {where}" for i, (where, _) in enumerate(queries))
    assert run.returncode == 0, (
        f"a query of {DASHBOARD.name} is not PromQL:\n{run.stdout}{run.stderr}\n{numbered}"
    )
