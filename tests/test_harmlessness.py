"""``benchmarks/harmlessness.py``: issue 23's check of an allowed output change against today's
evaluation (online AP at most the tolerance lower, neither card precision@100 lower), on report
folders written as ``python -m model_state.evaluate`` writes them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import harmlessness

STREAM = "handbook, seed 1, 70 days, 5000 customers, every payment labelled 7 days after"


def online(ap: float, cp: float = 0.5, handbook_cp: float = 0.3) -> dict[str, float]:
    return {
        "average_precision": ap,
        "card_precision_at_100": cp,
        "handbook_card_precision_at_100": handbook_cp,
    }


def report(folder: Path, runs: dict[str, dict[str, float]]) -> Path:
    folder.mkdir()
    body = {
        "runs": [{"settings": {"stream": s}, "metrics": {"online": m}} for s, m in runs.items()]
    }
    (folder / "metrics.json").write_text(json.dumps(body))
    return folder


ratios = st.floats(0, 1, allow_nan=False)


@given(before=ratios, after=ratios, cp=ratios, cp_after=ratios)
def test_harmless_exactly_when_ap_drops_at_most_the_tolerance_and_no_cp_drops(
    before: float, after: float, cp: float, cp_after: float
) -> None:
    problems = harmlessness.verdict(online(before, cp), online(after, cp_after), 0.005)
    assert (not problems) == (before - after <= 0.005 and cp_after >= cp)


def test_the_table_marks_each_stream_and_fails_on_any_harmful_one(tmp_path: Path) -> None:
    other = STREAM.replace("seed 1", "seed 2")
    before = report(tmp_path / "today", {STREAM: online(0.75), other: online(0.73)})
    after = report(tmp_path / "change", {STREAM: online(0.746), other: online(0.72)})
    lines, harmless = harmlessness.table(before, [after], 0.005)
    assert not harmless
    assert lines[2].endswith("| yes |") and "(-0.0040)" in lines[2]
    assert lines[3].endswith("| no: AP 0.0100 lower |")
    assert harmlessness.main([str(before), str(after)]) == 1
    assert harmlessness.main([str(before), str(before)]) == 0


def test_a_stream_missing_from_a_change_is_an_error_not_a_pass(tmp_path: Path) -> None:
    before = report(tmp_path / "today", {STREAM: online(0.75)})
    after = report(tmp_path / "change", {})
    with pytest.raises(SystemExit, match="has no run of"):
        harmlessness.table(before, [after], 0.005)
