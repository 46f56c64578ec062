"""benchmarks/drift_target.py: issue 22 item 4's verdict over evaluation folders (synthetic
``metrics.json`` files, so that the verdict's two conditions are seen to fail each alone)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from drift_target import main

STREAM = "handbook defaults, 500 customers"


def model(days: int | None, other: float, weekly: list[float]) -> dict[str, Any]:
    return {
        "metrics": {
            "average_precision": 0.5,
            "average_precision_other": other,
            "roc_auc_other": 0.8,
            "card_precision_at_10_other": 0.9,
            "first_evidence_day": float("nan"),
            "first_adopted_day": 50.0,
        },
        "drift": {"day": list(range(24)), "ap": [0.1] * 24, "days_to_half": days},
        "weekly": weekly,
    }


def write(folder: Path, models: dict[str, dict[str, Any]]) -> Path:
    run = {
        "settings": {"stream": STREAM, "k": 10},
        "metrics": {name: m["metrics"] for name, m in models.items()},
        "drift": {name: m["drift"] for name, m in models.items()},
        "weekly_average_precision": {name: m["weekly"] for name, m in models.items()},
    }
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"runs": [run]}))
    return folder


@pytest.mark.parametrize(
    ("days", "other", "week1", "verdict"),
    [
        (8, 0.600, 0.500, "target met"),  # 2 days earlier, no loss
        (9, 0.600, 0.500, "target missed"),  # only 1 day earlier
        (8, 0.590, 0.500, "target missed"),  # 0.010 lower elsewhere
        (8, 0.600, 0.490, "target missed"),  # 0.010 lower in week 1
        (8, 0.598, 0.498, "target met"),  # within the noise
        (None, 0.600, 0.500, "target missed"),  # never
    ],
)
def test_the_verdict_needs_both_the_lead_and_no_loss(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    days: int | None,
    other: float,
    week1: float,
    verdict: str,
) -> None:
    reference = write(
        tmp_path / "reference",
        {
            "online, no SGD": model(10, 0.600, [0.500, 0.600]),
            "online, previous step": model(10, 0.600, [0.500, 0.600]),
            "online": model(days, other, [week1, 0.600]),
        },
    )
    main([str(reference)])
    out = capsys.readouterr().out
    assert "reference: online: " in out
    assert out.strip().endswith(verdict)


def test_never_for_the_retrain_alone_counts_as_the_day_after_the_pattern(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step that catches the pattern on its day 20 where the retrain alone never does (24
    days) is 4 days earlier."""
    reference = write(
        tmp_path / "reference",
        {
            "online, no SGD": model(None, 0.6, [0.5]),
            "online, previous step": model(None, 0.6, [0.5]),
            "online": model(20, 0.6, [0.5]),
        },
    )
    main([str(reference)])
    assert "+4 days against the retrain alone (earlier)" in capsys.readouterr().out


def test_each_row_gives_the_versions_scoring_took_and_its_switches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    judged = model(8, 0.6, [0.5])
    judged["metrics"] |= {
        "versions_adopted": 3.0,
        "versions_published": 54.0,
        "judge_switches": 2.0,
    }
    reference = write(
        tmp_path / "reference",
        {
            "online, no SGD": model(10, 0.6, [0.5]),
            "online, previous step": model(10, 0.6, [0.5]),
            "online": judged,
        },
    )
    main([str(reference)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert "| 3 / 54 (2) |" in rows[-1]
    assert "versions scored own / published (switches)" in rows[0]
