"""``python -m model_state.retrain``'s numbers: out of their range, refused by the parser."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from model_state.offline import train
from model_state.offline.retrain import main


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--min-frauds", "-1"),  # was an AssertionError once the rows were read
        ("--min-frauds", "0"),
        ("--label-delay-days", "1e300"),  # was an OverflowError in timedelta
        ("--label-delay-days", "-1"),  # 0 is allowed: every stored label final at once
        ("--label-delay-days", "nan"),
        ("--window-days", "-1"),  # was "the last -1 days"
        ("--validation-days", "-3"),
        ("--tolerance", "nan"),  # a gate whose comparison is never true
        ("--tolerance", "inf"),  # a gate that accepts anything
        ("--min-gain", "1e999"),  # infinite: no challenger passes
        ("--window-days", "ninety"),
        ("--seed", "-1"),  # numpy's "expected non-negative integer" once the rows were read
        ("--seed", "1" + "0" * 30),
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


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--epochs", "0"),  # a version that learned nothing (ROC AUC 0.5), written and signed
        ("--epochs", "-3"),
        ("--fraud-weight", "nan"),  # an error quoting every feature of a row, unbounded
        ("--fraud-weight", "0"),
        ("--validation-days", "-2"),
        ("--cards", "99999999999"),  # was numpy's MemoryError traceback (127 GiB)
        ("--cards", "1" + "0" * 24),  # was an OverflowError traceback
        ("--cards", "0"),
        ("--days", "0"),
        ("--days", "99999999999"),
        ("--seed", "-1"),
    ],
)
def test_train_s_numbers_out_of_range_are_refused_before_anything_is_made(
    option: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = tmp_path / "models"
    monkeypatch.setattr(
        sys, "argv", ["python -m model_state.train", "--model-dir", str(models), option, value]
    )
    with pytest.raises(SystemExit) as exited:
        train.main()
    assert exited.value.code == 2
    assert f"argument {option}: expected a" in capsys.readouterr().err
    assert not models.exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--implicit-days", "nan"),  # was "cannot convert float NaN to integer", a traceback
        ("--implicit-days", "1e300"),  # an OverflowError traceback
        ("--label-delay-days", "nan"),  # passed the check (nan < 0 is false)
        ("--retrain-days", "nan"),  # silently: never retrain
        ("--retrain-days", "-5"),
        ("--top-k", "0"),
        ("--publish-every", "-3"),
        ("--min-gain", "nan"),
        ("--residual", "nan"),
        ("--go-live-day", "-1"),
        ("--days", "0"),
        ("--seeds", "-1"),
        ("--size", "-1"),
        ("--drift", "-1"),
        ("--judge-window", "0"),
    ],
)
def test_evaluate_s_numbers_out_of_range_are_refused_by_the_parser(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_state.offline.evaluate import main as evaluate

    with pytest.raises(SystemExit) as exited:
        evaluate([option, value, "--no-cache"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a" in err and repr(value) in err


def test_evaluate_s_refusals_of_its_input_are_one_line(tmp_path: Path) -> None:
    """Before: a history path that does not exist, or one whose payments all come before the
    go-live day, was a traceback."""
    from model_state.offline.evaluate import main as evaluate

    with pytest.raises(SystemExit) as exited:
        evaluate(["--history", str(tmp_path / "missing.csv"), "--no-cache"])
    assert exited.value.code == (
        f"python -m model_state.evaluate: {tmp_path / 'missing.csv'}: no such file or directory "
        "(a history path)"
    )
