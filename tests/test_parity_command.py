"""``python -m storage.parity``: status 1 says features differ; a file it cannot read says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from storage.parity import main
from test_data.samples import iter_samples


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda d: d / "missing.jsonl", "No such file or directory"),
        (lambda d: d, "Is a directory"),
        (lambda d: _written(d / "other.jsonl", b'{"x": 1}\n'), ":1: not a sample envelope"),
        # Before: read as one line until memory ran out (MemoryError, or the OOM killer).
        (lambda d: Path("/dev/zero"), "/dev/zero:1: a line longer than 67,108,864 bytes"),
    ],
)
def test_a_file_it_cannot_read_is_a_refusal_not_a_mismatch(
    make: Callable[[Path], Path], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a traceback and status 1, the status of features that differ (a CI step that
    runs it would read a typo in a path as a parity failure)."""
    assert main(["--file", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m storage.parity: refused: ") and said in err
    assert err.count("\n") == 1


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_sample_line_is_read_no_further_than_its_bound(tmp_path: Path) -> None:
    path = _written(tmp_path / "long.jsonl", b"\n" + b"x" * 101 + b"\n")
    with pytest.raises(ValueError, match=r"long.jsonl:2: a line longer than 100 bytes; expected"):
        list(iter_samples(path, max_line=100))
