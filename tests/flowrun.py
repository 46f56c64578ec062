"""Running the scoring flow as a user would: ``ops/run_flow.sh`` with PAYSCORE_* settings."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def flow_env(
    topics: dict[str, str], mysql_url: str, model_dir: Path, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    env.update({f"PAYSCORE_{k.upper()}": v for k, v in topics.items()})
    env.update(
        PAYSCORE_MYSQL_URL=mysql_url, PAYSCORE_MODEL_DIR=str(model_dir), PAYSCORE_TAIL="false"
    )
    env.update({f"PAYSCORE_{k.upper()}": v for k, v in extra.items()})
    return env


def run_flow(
    env: dict[str, str], processes: int = 2, workers: int = 2, extra: list[str] | None = None
) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", str(ROOT / "ops" / "run_flow.sh"), str(processes), str(workers), *(extra or [])],
        env=env | {"FLOW_BASE_PORT": str(2200 + os.getpid() % 500)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"flow failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return time.perf_counter() - started
