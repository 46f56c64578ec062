"""Issue 22's targets, checked on the reports ``python -m model_state.evaluate`` wrote.

    .venv/bin/python benchmarks/evaluation_targets.py evaluations/drawn-every-size500
        [evaluations/drawn-frauds-size500 ...] [--margin 0.02] [--top-k K] [--online NAME]
        [--pooled]

For each report folder (its ``metrics.json``) and each stream in it, one row: the online
model's, the frozen model's and the random forest's (handbook features) average precision, the
online model's lead over the forest in AP, ROC AUC and card precision@100 (ours and the
handbook's), and the smallest weekly difference online − frozen over the test weeks after the
first; then the mean and the worst case over the streams (each column's own worst; with
``--pooled``, one table over the streams of every folder given). A target met is marked
``yes``:

- online AP at least ``--margin`` (0.02) above the forest, with ROC AUC and both card
  precisions not lower;
- online AP at or above the frozen model's in every test week after the first.

It reads only what the evaluation wrote. ``--top-k K`` takes card precision at ``K`` cards a day
instead of the report's (computed from each run's ``scores-N.npz`` by the evaluation's own
functions, :mod:`model_state.offline.eval_metrics`): at a tenth of the handbook's 5,000
customers, 100 cards a day are a fifth of all cards, and 10 keep the handbook's proportion.
``--online NAME`` checks another of the run's variants as the online model (for example
``"online, versions not judged"`` of ``--ablation --ablation-parts judge``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from model_state.offline.eval_metrics import card_precision_at_k, handbook_card_precision_at_k

RF = "RF (handbook features)"


def card_precisions(
    folder: Path, n: int, k: int, online: str = "online"
) -> dict[str, dict[str, float]]:
    """Card precision@k (ours and the handbook's) of each model of run ``n``, from its scores."""
    with np.load(folder / f"scores-{n}.npz") as data:
        day, card, truth = data["day"], data["card"], data["is_fraud"].astype(bool)
        return {
            name: {
                "card_precision_at_100": float(
                    card_precision_at_k(day, card, data[name], truth, k).mean()
                ),
                "handbook_card_precision_at_100": float(
                    handbook_card_precision_at_k(day, card, data[name], truth, k).mean()
                ),
            }
            for name in (online, "frozen", RF)
        }


def rows_of(
    folder: Path, top_k: int | None = None, online_name: str = "online"
) -> list[dict[str, Any]]:
    report = json.loads((folder / "metrics.json").read_text())
    out = []
    for n, run in enumerate(report["runs"]):
        m, weekly = run["metrics"], run["weekly_average_precision"]
        if top_k is not None:
            cps = card_precisions(folder, n, top_k, online_name)
            m = {name: m[name] | cp for name, cp in cps.items()}
        online, frozen, rf = m[online_name], m["frozen"], m[RF]
        after_first = [
            a - b for a, b in zip(weekly[online_name][1:], weekly["frozen"][1:], strict=True)
        ]
        out.append(
            {
                "stream": run["settings"]["stream"].split(",")[0],
                "seed": run["settings"]["seed"],
                "online": online["average_precision"],
                "frozen": frozen["average_precision"],
                "rf": rf["average_precision"],
                "ap_lead": online["average_precision"] - rf["average_precision"],
                "auc_lead": online["roc_auc"] - rf["roc_auc"],
                "cp_lead": online["card_precision_at_100"] - rf["card_precision_at_100"],
                "hb_cp_lead": online["handbook_card_precision_at_100"]
                - rf["handbook_card_precision_at_100"],
                "weekly_min": min(after_first) if after_first else float("nan"),
                "weekly": after_first,
                "retrained": online.get("retrained", float("nan")),
                "refused": online.get("retrains_refused", float("nan")),
            }
        )
    return out


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--margin", type=float, default=0.02)
    parser.add_argument("--top-k", type=int, default=None, help="card precision at K cards a day")
    parser.add_argument("--online", default="online", help="the variant checked as online")
    parser.add_argument(
        "--pooled",
        action="store_true",
        help="one table of every folder's streams, its mean and worst over all of them",
    )
    args = parser.parse_args()
    k = "the report's k" if args.top_k is None else f"k = {args.top_k}"
    groups = [(str(folder), rows_of(folder, args.top_k, args.online)) for folder in args.folders]
    if args.pooled:
        groups = [(f"{len(groups)} folders pooled", [r for _, rows in groups for r in rows])]
    for name, rows in groups:
        print(f"\n{name} ({len(rows)} streams; card precision at {k}; online: {args.online})")
        print(
            "| stream | seed | online AP | frozen AP | RF AP | online − RF: AP / AUC / CP@k / "
            "CP@k hb | lead target | online − frozen, weeks 2–4 | weeks target | retrains "
            "(refused) |"
        )
        print("|---|---:|---:|---:|---:|---|---|---|---|---:|")
        for r in rows:
            lead_ok = (
                r["ap_lead"] >= args.margin
                and r["auc_lead"] >= 0
                and r["cp_lead"] >= 0
                and r["hb_cp_lead"] >= 0
            )
            print(
                f"| {r['stream']} | {r['seed']} | {r['online']:.3f} | {r['frozen']:.3f} "
                f"| {r['rf']:.3f} | {r['ap_lead']:+.3f} / {r['auc_lead']:+.3f} / "
                f"{r['cp_lead']:+.3f} / {r['hb_cp_lead']:+.3f} | {yes(lead_ok)} | "
                + " ".join(f"{w:+.4f}" for w in r["weekly"])
                + f" | {yes(r['weekly_min'] >= 0)} | {r['retrained']:.0f} ({r['refused']:.0f}) |"
            )
        for what, pick in (("mean", np.mean), ("worst", np.min)):
            cells = {k: float(pick([r[k] for r in rows])) for k in (
                "online", "frozen", "rf", "ap_lead", "auc_lead", "cp_lead", "hb_cp_lead",
                "weekly_min")}  # fmt: skip
            print(
                f"| {what} | | {cells['online']:.3f} | {cells['frozen']:.3f} | {cells['rf']:.3f} "
                f"| {cells['ap_lead']:+.3f} / {cells['auc_lead']:+.3f} / {cells['cp_lead']:+.3f} "
                f"/ {cells['hb_cp_lead']:+.3f} | | {what} smallest {cells['weekly_min']:+.3f} | | |"
            )


if __name__ == "__main__":
    main()
