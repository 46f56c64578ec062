"""Issue 22 item 4's target over evaluations with the drift scenario: does an online step catch
the new pattern 2 days earlier than the weekly retrain alone, with no loss elsewhere?

    python benchmarks/drift_target.py FOLDER [FOLDER ...] [--reference FOLDER]
        [--retrain-only "online, no SGD"] [--shipped "online, previous step"]
        [--lead 2] [--noise 0.003]

Each FOLDER is the ``--out`` of ``python -m model_state.evaluate ... --drift`` (its
``metrics.json``). The weekly retrain alone and the shipped step are read from ``--reference``
(default: the first folder), stream by stream (matched by their description), so that the runs
of other steps, made with ``--no-references`` and without them, compare with the same ones (the
evaluation is deterministic: the same stream, fits and gate give the same scores). For every
other online model of every folder and every stream it prints: days until half of the pattern's
payments are in the daily top k ("never": not within its days, counted as one day after its
last), the pattern's AP per day since it started, AP / ROC AUC / CP@k over every other payment
from go-live ("elsewhere"), AP per test week, the day on which the judge first found a lineage's
learned weights ahead of its root and on which scoring took them, how many of its versions
scoring took (of those published) and how often scoring switched weights; then the verdict:

- **earlier**: its days to half at least ``--lead`` days before the retrain alone's;
- **no loss elsewhere**: AP elsewhere and AP in every test week not below the shipped step's by
  more than ``--noise``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def load(folder: Path) -> dict[str, dict[str, Any]]:
    """The runs of one evaluation's ``metrics.json``, by stream description."""
    saved = json.loads((folder / "metrics.json").read_text())
    return {run["settings"]["stream"]: run for run in saved["runs"]}


def days_to_half(drift: dict[str, Any]) -> float:
    """Days to half in the top k; "never" counts as the day after the pattern's last."""
    value = drift.get("days_to_half")
    return float(len(drift["day"])) if value is None else float(value)


def fmt_days(drift: dict[str, Any]) -> str:
    value = drift.get("days_to_half")
    return "never" if value is None else str(value)


def fmt_day(value: float) -> str:
    return (
        "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"
    )


def fmt_adopted(metrics: dict[str, Any]) -> str:
    """Versions scored with their own weights of those published, and scoring's switches."""
    if "versions_published" not in metrics:
        return ""
    return (
        f"{metrics['versions_adopted']:.0f} / {metrics['versions_published']:.0f} "
        f"({metrics['judge_switches']:.0f})"
    )


def row(
    label: str, run: dict[str, Any], model: str, k: int, days: int
) -> tuple[list[str], dict[str, Any]]:
    metrics = run["metrics"][model]
    drift = run["drift"][model]
    weekly = run["weekly_average_precision"][model]
    cells = [
        label,
        fmt_days(drift),
        f"{metrics['average_precision']:.3f}",
        f"{metrics['average_precision_other']:.3f} / {metrics['roc_auc_other']:.3f} / "
        f"{metrics[f'card_precision_at_{k}_other']:.3f}",
        " / ".join(f"{w:.3f}" for w in weekly),
        fmt_day(metrics.get("first_evidence_day")),
        fmt_day(metrics.get("first_adopted_day")),
        fmt_adopted(metrics),
        *(f"{a:.2f}" for a in drift["ap"][:days]),
    ]
    return cells, {"days": days_to_half(drift), "other": metrics["average_precision_other"],
                   "weekly": weekly}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--reference", type=Path, default=None)
    parser.add_argument("--retrain-only", default="online, no SGD")
    parser.add_argument("--shipped", default="online, previous step")
    parser.add_argument("--lead", type=float, default=2.0)
    parser.add_argument("--noise", type=float, default=0.003)
    parser.add_argument("--days", type=int, default=14, help="per-day AP columns shown")
    args = parser.parse_args(argv)
    reference = load(args.reference or args.folders[0])
    for stream, ref in reference.items():
        k = int(ref["settings"]["k"])
        print(f"\n{stream}\n")
        header = ["model", f"days to half in top {k}", "AP", f"AP / AUC / CP@{k} elsewhere",
                  "AP per test week", "judge: first ahead (day)", "first scored own (day)",
                  "versions scored own / published (switches)",
                  *(f"d{d}" for d in range(args.days))]  # fmt: skip
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        base = {}
        for model, label in ((args.retrain_only, "weekly retrain only"),
                             (args.shipped, "shipped step (SGD 0.0003)")):  # fmt: skip
            cells, base[model] = row(label, ref, model, k, args.days)
            print("| " + " | ".join(cells) + " |")
        verdicts = []
        for folder in args.folders:
            run = load(folder).get(stream)
            if run is None:
                continue
            for model in run["drift"]:
                if not model.startswith("online") or model in (args.retrain_only, args.shipped):
                    continue
                cells, got = row(f"{folder.name}: {model}", run, model, k, args.days)
                print("| " + " | ".join(cells) + " |")
                lead = base[args.retrain_only]["days"] - got["days"]
                shipped = base[args.shipped]
                losses = [got["other"] - shipped["other"]] + [
                    a - b for a, b in zip(got["weekly"], shipped["weekly"], strict=True)
                ]
                worst = min(losses)
                earlier = lead >= args.lead
                kept = worst >= -args.noise
                verdicts.append(
                    f"- {folder.name}: {model}: {lead:+g} days against the retrain alone "
                    f"({'earlier' if earlier else 'not earlier'}); worst loss elsewhere or in a "
                    f"week against the shipped step {worst:+.3f} "
                    f"({'no loss' if kept else 'a loss'}): "
                    f"{'target met' if earlier and kept else 'target missed'}"
                )
        print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
