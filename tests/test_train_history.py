"""A bank's own history to a model: ``python -m model_state.train --history PATH``, as a user
runs it, on the handbook simulator's files and on a CSV export of the same history."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel, Payment
from model_state import artifact
from model_state.offline.train import history_rows
from tests.flowrun import KEY_FILE, key_for_tests

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PAYSCORE_MODEL_KEY_FILE": str(KEY_FILE)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("history")
    made = run(
        "-m", "test_data.handbook", "--seed", "5", "--days", "30", "--customers", "400",
        "--terminals", "800", "--out", str(folder),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return folder


def test_train_on_a_json_lines_history_writes_a_version_fitted_on_every_usable_day(
    history: Path, tmp_path: Path
) -> None:
    done = run(
        "-m", "model_state.train", "--history", str(history), "--model-dir", str(tmp_path),
        "--no-compare",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rejected" in done.stdout.lower()  # the loader's summary is shown
    version = artifact.load(tmp_path, key=key_for_tests())
    m = version.metadata
    assert m.origin == "history"
    payments = sum(1 for _ in (history / "payments.jsonl").open())
    # Every payment is usable: every label (one per payment) was reported within the files.
    assert m.rows == payments
    assert m.frauds > 0
    # Validation came first: 7 days of payments ending a label delay before the history's end
    # (here the last label, 7 days after the last payment), with a model fitted on what was
    # usable when they began.
    start, end = m.metrics["validation_start"], m.metrics["validation_end"]
    assert end - start == 7 * 86_400 and m.metrics["validation_model_rows"] < m.rows
    assert 0.5 < m.metrics["roc_auc"] <= 1.0
    assert 0 < m.metrics["validation_frauds"] < m.metrics["validation_rows"]
    assert m.training_window is not None
    assert abs(m.training_window[1].timestamp() - end) < 1.0


def test_a_label_is_usable_only_from_its_reported_at() -> None:
    t0 = datetime(2026, 3, 2, tzinfo=UTC)

    def pay(i: int, day: float) -> Payment:
        return Payment(
            transaction_id=f"t{i}", card_id=f"c{i % 3}", merchant_id="m", terminal_id="p",
            amount_minor=1000 + i, currency="EUR", mcc="5411", channel="pos", country="FR",
            event_time=t0 + timedelta(days=day),
        )  # fmt: skip

    events: list[Payment | FraudLabel] = [pay(0, 0), pay(1, 1), pay(2, 9.5), pay(3, 10)]
    # t0 is a fraud reported on day 2; t3's fraud label comes after the last payment (day 12).
    events.insert(2, FraudLabel(transaction_id="t0", card_id="c0", is_fraud=True,
                                reported_at=t0 + timedelta(days=2)))  # fmt: skip
    events.append(
        FraudLabel(transaction_id="t3", card_id="c0", is_fraud=True,
                   reported_at=t0 + timedelta(days=12))
    )  # fmt: skip
    rows = history_rows(events, label_delay=timedelta(days=7), progress=False)
    classes = {r[1]["amount_eur"]: r[2] for r in rows}
    # t0: its label; t1: no label, older than 7 days at the end: legitimate; t2: no label and
    # newer than 7 days: left out; t3: its label, reported by the end of the history.
    assert classes == {10.0: True, 10.01: False, 10.03: True}
    assert all(tuple(r[1]) == FEATURE_NAMES for r in rows)
    # A label dated in the future is not history: it cannot move the history's end (which would
    # make t2, unlabelled and recent, look old enough to be legitimate).
    stray = FraudLabel(transaction_id="t1", card_id="c1", is_fraud=False,
                       reported_at=datetime(2099, 12, 31, tzinfo=UTC))  # fmt: skip
    now = t0 + timedelta(days=20)
    again = history_rows([*events, stray], label_delay=timedelta(days=7), now=now, progress=False)
    assert {r[1]["amount_eur"]: r[2] for r in again} == classes


def test_train_on_a_csv_history(history: Path, tmp_path: Path) -> None:
    """The same history as two CSV files, as a bank exports them."""
    folder = tmp_path / "csv"
    folder.mkdir()
    for kind in ("payments", "labels"):
        with (
            (history / f"{kind}.jsonl").open() as lines,
            (folder / f"{kind}.csv").open("w", newline="") as out,
        ):
            writer: csv.DictWriter[str] | None = None
            for n, line in enumerate(lines):
                if n >= 12_000 and kind == "payments":
                    break
                message = json.loads(json.loads(line)["value"])
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(message))
                    writer.writeheader()
                writer.writerow({k: "" if v is None else v for k, v in message.items()})
    done = run(
        "-m", "model_state.train", "--history", str(folder), "--model-dir", str(tmp_path / "m"),
        "--no-compare", "--validation-days", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "label for unknown payment" in done.stdout  # labels past the first 12,000 payments
    version = artifact.load(tmp_path / "m", key=key_for_tests())
    assert version.metadata.rows <= 12_000 and version.metadata.origin == "history"


def test_if_missing_trains_again_when_the_newest_version_does_not_fit(tmp_path: Path) -> None:
    from model_state.offline.train import new_model
    from tests.builders import model_metadata

    old = model_metadata(feature_names=("amount_eur", "a_feature_since_removed"))
    artifact.save(new_model(), old, tmp_path, key=key_for_tests())
    args = ["-m", "model_state.train", "--if-missing", "--days", "12", "--cards", "300",
            "--validation-days", "3", "--no-compare", "--model-dir", str(tmp_path)]  # fmt: skip
    done = run(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "does not fit this code" in done.stdout
    assert artifact.load(tmp_path, key=key_for_tests()).version == "v00002"
    again = run(*args)
    assert "model v00002 exists" in again.stdout
    assert artifact.list_versions(tmp_path) == ["v00001", "v00002"]


@pytest.mark.parametrize("days", ["1e300", "nan", "inf", "-1"])
def test_a_label_delay_out_of_range_is_refused_in_one_line(days: str, tmp_path: Path) -> None:
    """``--label-delay-days 1e300`` was an OverflowError traceback, ``nan`` passed the check
    (``< 0``) and came back as "cannot convert float NaN to integer"."""
    file = tmp_path / "history.jsonl"
    file.write_text("")
    done = run(
        "-m", "model_state.train", "--no-compare", "--model-dir", str(tmp_path / "models"),
        "--history", str(file), "--label-delay-days", days,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().endswith(
        f"--label-delay-days must be a number of days from 0 to 36,500; got {float(days)}"
    ), done.stderr
