"""What runs in the flow is apart from what runs offline: the flow imports none of the offline
code (training, evaluation, the forests' fitting), nor matplotlib, nor the simulators. (River
imports scikit-learn itself, so scikit-learn is loaded either way.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_flow_imports_no_offline_code() -> None:
    probe = (
        "import sys\n"
        "import dataflows.scoring\n"
        "bad = sorted(m for m in sys.modules if m.startswith(("
        "'model_state.offline', 'matplotlib', 'test_data', 'benchmarks', 'tqdm')))\n"
        "print('\\n'.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


def test_every_offline_command_keeps_its_name() -> None:
    for command in ("train", "retrain", "evaluate"):
        done = subprocess.run(
            [sys.executable, "-m", f"model_state.{command}", "--help"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"python -m model_state.{command}" in done.stdout
