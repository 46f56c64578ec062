"""Issue 23's harmlessness check, on the reports ``python -m model_state.evaluate`` wrote.

    .venv/bin/python benchmarks/harmlessness.py BEFORE AFTER [AFTER ...] [--tolerance 0.005]

``BEFORE`` is today's evaluation (a report folder, its ``metrics.json``), each ``AFTER`` the same
streams evaluated with one allowed output change. For every stream of ``BEFORE`` (matched by its
description, seed included), one row per change: the online model's average precision and card
precision@100 (ours and the handbook's) before and after, and whether the change is harmless
there:

- the online AP is at most ``--tolerance`` (0.005) below today's (a gain is harmless);
- neither card precision@100 is lower than today's.

A stream missing from an ``AFTER`` folder is an error, not a pass. Exit status 1 when any change
is harmful on any stream, 0 otherwise. It reads only what the evaluations wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ONLINE = "online"


def runs_by_stream(folder: Path) -> dict[str, dict[str, float]]:
    """The online model's metrics of every run in ``folder/metrics.json``, by stream."""
    path = folder / "metrics.json"
    try:
        report: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"harmlessness: no evaluation report at {path}") from None
    out: dict[str, dict[str, float]] = {}
    for run in report["runs"]:
        stream = str(run["settings"]["stream"])
        metrics = run["metrics"].get(ONLINE)
        if metrics is None:
            raise SystemExit(f"harmlessness: {path}: the run of {stream!r} has no online model")
        out[stream] = metrics
    return out


def verdict(before: dict[str, float], after: dict[str, float], tolerance: float) -> list[str]:
    """What makes ``after`` harmful against ``before``; empty when it is harmless."""
    problems = []
    drop = before["average_precision"] - after["average_precision"]
    if drop > tolerance:
        problems.append(f"AP {drop:.4f} lower")
    for name, label in (
        ("card_precision_at_100", "CP@100"),
        ("handbook_card_precision_at_100", "CP@100, handbook"),
    ):
        if after[name] < before[name]:
            problems.append(f"{label} {before[name] - after[name]:.4f} lower")
    return problems


def table(before: Path, afters: list[Path], tolerance: float) -> tuple[list[str], bool]:
    """The Markdown table's lines and whether every change is harmless on every stream."""
    base = runs_by_stream(before)
    lines = [
        "| stream | change | online AP before → after (Δ) | CP@100 before → after | "
        "CP@100, handbook, before → after | harmless |",
        "|---|---|---|---|---|---|",
    ]
    harmless = True
    for after in afters:
        changed = runs_by_stream(after)
        for stream, old in base.items():
            new = changed.get(stream)
            if new is None:
                raise SystemExit(f"harmlessness: {after} has no run of {stream!r}")
            problems = verdict(old, new, tolerance)
            harmless = harmless and not problems
            ap_old, ap_new = old["average_precision"], new["average_precision"]
            lines.append(
                f"| {stream} | {after.name} | "
                f"{ap_old:.4f} → {ap_new:.4f} ({ap_new - ap_old:+.4f}) | "
                f"{old['card_precision_at_100']:.4f} → {new['card_precision_at_100']:.4f} | "
                f"{old['handbook_card_precision_at_100']:.4f} → "
                f"{new['handbook_card_precision_at_100']:.4f} | "
                f"{'yes' if not problems else 'no: ' + ', '.join(problems)} |"
            )
    return lines, harmless


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="today's evaluation (a report folder)")
    parser.add_argument("after", type=Path, nargs="+", help="the same streams, one change each")
    parser.add_argument("--tolerance", type=float, default=0.005)
    args = parser.parse_args(argv)
    lines, harmless = table(args.before, args.after, args.tolerance)
    print("\n".join(lines))
    print(f"\nevery change harmless on every stream: {'yes' if harmless else 'no'}")
    return 0 if harmless else 1


if __name__ == "__main__":
    sys.exit(main())
