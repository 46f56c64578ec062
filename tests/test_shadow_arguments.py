"""``python -m model_state.shadow``'s arguments: what MySQL would refuse is refused first."""

from __future__ import annotations

import pytest

from model_state.offline.shadow import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["start", "v00001", "--by", "b" * 200], "expected 1 to 64 printable characters"),
        (["stop", "--by", ""], "expected 1 to 64 printable characters"),
        (["promote", "v00001", "--by", "ana\x1b[2J"], "expected 1 to 64 printable characters"),
        (["start", "v00001", "--note", "n" * 70_000], "expected at most 2,000 characters"),
    ],
)
def test_a_decider_or_note_the_table_cannot_hold_is_refused_before_connecting(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--by`` of 200 characters or ``--note`` of 70,000 reached MySQL as "Data too long"
    (1406), a traceback, once the version had been found; now the parser refuses them with
    status 2 and what it expects, the text it quotes bounded."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and len(err) < 3_000


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--k", "0", "from 1 to 1,000,000"),  # card_precision_at_k's ValueError, a traceback
        ("--k", "-1", "from 1 to 1,000,000"),
        ("--top", "-1", "from 0 to 10,000"),  # every disagreement but the last
        ("--top", "many", "from 0 to 10,000"),
    ],
)
def test_compare_s_counts_out_of_range_are_refused_before_connecting(
    option: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["compare", option, value])
    assert exited.value.code == 2
    assert f"argument {option}: expected a whole number {expected}" in capsys.readouterr().err
