"""What the online judge can see in each lineage of an evaluation (issue 22 item 4): why it
adopted no version on the drift scenario.

    python benchmarks/judge_window.py REPORT [--model online]

``REPORT`` is the ``--out`` folder of ``python -m model_state.evaluate ... --streams FILE``
(its ``metrics.json`` holds the command and each retrain's gate verdict); its streams are
replayed from the evaluation's cache. A lineage runs from go-live, or from a retrain its gate
accepted, to the next accepted retrain (the retrains come every 7 days of event time from the
first payment scored). The judge (:mod:`model_state.online_judge`) ranks only labels of payments
made at or after the lineage's first label (``since``), and adopts nothing before a legitimate
label has come for a payment made :data:`~model_state.online_judge.MATURE_AFTER` after it. For
every lineage this prints the labels learned in it, how many of them the judge ranks (frauds,
legitimate), of those the new pattern's frauds, and the day the lineage matured (if it did
before it ended).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import numpy as np

from features.catalog import DAY
from model_state.offline.eval_streams import replayed
from model_state.offline.evaluate import _specs, live_schedule
from model_state.online_judge import MATURE_AFTER
from test_data.drift import NEW_PATTERN


def accepted(verdict: dict[str, float]) -> bool:
    """The gate's verdict as the report prints it (``eval_report.labels_text``)."""
    gain = verdict["challenger_ap"] - verdict["champion_ap"]
    need = verdict.get("min_gain", 0.0) * verdict.get("standard_error", 0.0)
    return gain >= need - verdict["tolerance"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--model", default="online")
    parser.add_argument("--cache", type=Path, default=Path("reports/cache"))
    args = parser.parse_args(argv)
    saved = json.loads((args.report / "metrics.json").read_text())
    words = shlex.split(saved["command"])[3:]  # after "python -m model_state.evaluate"
    command = argparse.ArgumentParser(add_help=False)
    command.add_argument("--streams", type=Path)
    command.add_argument("--labels")
    command.add_argument("--only", nargs="+")
    command.add_argument("--size", type=int)
    known, _ = command.parse_known_args(words)
    spec_args = argparse.Namespace(
        streams=known.streams, only=known.only, size=known.size, labels=known.labels,
        days=70, label_delay_days=7, drift=-1, stream=None, seeds=[],
    )  # fmt: skip
    every = known.labels == "every"
    delay = (7 if every else 30) * DAY
    runs = {run["settings"]["stream"]: run for run in saved["runs"]}
    for spec in _specs(spec_args, 42):
        run = runs[spec.describe()]
        stream = replayed(spec, args.cache)
        first_day = np.floor(stream.event_time.min() / DAY) * DAY
        go_live = first_day + 42 * DAY
        schedule = live_schedule(stream, go_live, delay, implicit=not every)
        n = len(stream)
        labels = schedule[schedule < 0]
        implicit = labels < -n
        row = np.where(implicit, -1 - n - labels, -1 - labels)
        at = np.where(implicit, stream.event_time[row] + delay, stream.reported_at[row])
        fraud = np.where(implicit, False, stream.verdict[row] == 1)
        paid = stream.event_time[row]
        pattern = stream.rows_of(NEW_PATTERN)[row]
        gates = run["gates"].get(args.model, [])
        starts = [go_live] + [
            go_live + 7 * DAY * (i + 1) for i, v in enumerate(gates) if accepted(v)
        ]
        ends = [*starts[1:], float(stream.event_time.max())]
        print(f"\n{spec.describe()} ({args.model}; label delay {delay / DAY:g} days)\n")
        print("| lineage (days) | labels learned | judged: frauds / legitimate | of the "
              "judged frauds, the new pattern's | matured (day) |")  # fmt: skip
        print("|---|---:|---:|---:|---:|")
        for start, end in zip(starts, ends, strict=True):
            inside = (at >= start) & (at < end)
            if not inside.any():
                continue
            since = float(at[inside].min())
            judged = inside & (paid >= since)
            ripe = judged & ~fraud & (paid >= since + MATURE_AFTER)
            matured = f"{(at[ripe].min() - first_day) / DAY:.1f}" if ripe.any() else "not"
            print(
                f"| {(start - first_day) / DAY:.0f} to {(end - first_day) / DAY:.0f} | "
                f"{int(inside.sum()):,} | {int((judged & fraud).sum()):,} / "
                f"{int((judged & ~fraud).sum()):,} | {int((judged & fraud & pattern).sum()):,} | "
                f"{matured} |"
            )


if __name__ == "__main__":
    main()
