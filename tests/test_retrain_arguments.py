"""``python -m model_state.retrain``'s numbers: out of their range, refused by the parser."""

from __future__ import annotations

import pytest

from model_state.offline.retrain import main


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--min-frauds", "-1"),  # was an AssertionError once the rows were read
        ("--min-frauds", "0"),
        ("--label-delay-days", "1e300"),  # was an OverflowError in timedelta
        ("--label-delay-days", "0"),
        ("--window-days", "-1"),  # was "the last -1 days"
        ("--validation-days", "-3"),
        ("--tolerance", "nan"),  # a gate whose comparison is never true
        ("--tolerance", "inf"),  # a gate that accepts anything
        ("--min-gain", "1e999"),  # infinite: no challenger passes
        ("--window-days", "ninety"),
    ],
)
def test_a_number_out_of_its_range_is_refused_before_connecting(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([option, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a" in err and repr(value) in err
