"""A model signing key the command lines cannot use: one line and status 2, not a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from model_state import sign
from model_state.offline import retrain, shadow


def _no_key(tmp_path: Path) -> Path:
    return tmp_path / "no.key"


def _directory(tmp_path: Path) -> Path:
    return tmp_path


def _open_to_all(tmp_path: Path) -> Path:
    path = tmp_path / "open.key"
    path.write_text("00" * 32 + "\n")
    path.chmod(0o644)
    return path


def _not_hex(tmp_path: Path) -> Path:
    path = tmp_path / "der.key"
    path.write_bytes(b"\x30\x82\x01\x0a" * 8)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("key", [_no_key, _directory, _open_to_all, _not_hex])
@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (retrain.main, []),
        (shadow.main, ["promote", "v00001"]),
        (sign.main, ["--sign", "models/v00001"]),
    ],
)
def test_a_key_a_command_cannot_use_ends_it_with_one_line_and_status_2(
    key: Callable[[Path], Path],
    command: Callable[[list[str]], object],
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``retrain`` and ``shadow promote`` read the key after connecting, ``sign --sign`` first:
    each raised read_key's error as a traceback (status 1)."""
    monkeypatch.setenv("PAYSCORE_MODEL_KEY_FILE", str(key(tmp_path)))
    monkeypatch.setenv("PAYSCORE_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(SystemExit) as exited:
        command(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ": refused: " in err and "model signing key" in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [(["--new-key", "{key}"], "File exists"), (["--sign", "{missing}"], "No such file")],
)
def test_sign_s_file_errors_are_one_line_and_status_2(
    argv: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = tmp_path / "model.key"
    sign.new_key(key)
    monkeypatch.setenv("PAYSCORE_MODEL_KEY_FILE", str(key))
    args = [a.format(key=key, missing=tmp_path / "nowhere") for a in argv]
    with pytest.raises(SystemExit) as exited:
        sign.main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err
