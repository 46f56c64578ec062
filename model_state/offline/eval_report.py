"""The evaluation report: ``report.md``, ``metrics.json`` and PNG plots in one folder.

Needs matplotlib (the ``eval`` extra: ``pip install -e '.[eval]'``). Plots, of the first seed:

``precision_recall.png``
    Precision against recall over the payments from go-live on, one curve per model.
``reliability.png``
    Observed fraud share against mean probability, per bin of equal count
    (:func:`model_state.offline.eval_metrics.reliability`), on log scales; the diagonal is perfect
    calibration.
``metrics_over_time.png``
    Card precision@k per day (7-day rolling mean) and average precision per week, per model.

``scores-N.npz`` keeps run ``N``'s scores from go-live on (``day``, ``card``, ``is_fraud`` and one
array per model), so any other metric can be computed later without running again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from features.catalog import DAY
from model_state.offline import rollback
from model_state.offline.eval_metrics import (
    card_precision_at_k,
    format_table,
    mean_table,
    reliability,
    weekly_average_precision,
)
from model_state.offline.eval_results import Evaluation


def _pyplot():  # noqa: ANN202 - matplotlib.pyplot is untyped
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "the evaluation report draws with matplotlib, which is not installed; "
            "install the eval extra: .venv/bin/pip install -e '.[eval]'"
        ) from None
    return plt


def _finish(plt: Any, fig: Any, ax: Any, path: Path, title: str, legend: str) -> None:
    ax.set_title(title)
    ax.legend(loc=legend, fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_precision_recall(evaluation: Evaluation, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    test = evaluation.test
    truth = evaluation.replayed.is_fraud[test]
    for name, score in evaluation.scores.items():
        precision, recall, _ = precision_recall_curve(truth, score[test])
        ap = evaluation.table[name]["average_precision"]
        ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    _finish(plt, fig, ax, path, "Precision-recall from go-live on", "lower left")


def plot_reliability(evaluation: Evaluation, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    test = evaluation.test
    truth = evaluation.replayed.is_fraud[test]
    low = 1e-5
    for name, score in evaluation.scores.items():
        mean, share, _ = reliability(truth, score[test])
        ece = evaluation.table[name]["ece"]
        ax.plot(
            np.maximum(mean, low), np.maximum(share, low), "o-", ms=3,
            label=f"{name} (ECE {ece:.4f})",
        )  # fmt: skip
    ax.plot([low, 1], [low, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    ax.set(xscale="log", yscale="log", xlabel="mean probability in bin",
           ylabel="observed fraud share in bin")  # fmt: skip
    _finish(plt, fig, ax, path, "Reliability (bins of equal count)", "upper left")


def plot_over_time(evaluation: Evaluation, path: Path, k: int) -> None:
    plt = _pyplot()
    test = evaluation.test
    replayed = evaluation.replayed
    day, card, truth = replayed.day[test], replayed.card[test], replayed.is_fraud[test]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True)
    for name, score in evaluation.scores.items():
        cp = card_precision_at_k(day, card, score[test], truth, k)
        days = np.unique(day)
        rolling = np.convolve(cp, np.ones(7) / 7, mode="same") if len(cp) >= 7 else cp
        top.plot(days, rolling, label=name)
        weeks, ap = weekly_average_precision(day, score[test], truth)
        bottom.plot(weeks * 7 + 3, ap, "o-", ms=3, label=name)
    top.set(ylabel=f"card precision@{k} (7-day mean)")
    bottom.set(xlabel="day of the stream", ylabel="average precision per week")
    top.legend(fontsize="small")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def weekly_table(evaluation: Evaluation) -> str:
    """Average precision per test week, per model, and whether the online model ranked at
    least as well as the frozen one in every week after the first."""
    weeks = max((len(v) for v in evaluation.weekly.values()), default=0)
    lines = [
        "| model | " + " | ".join(f"week {w + 1}" for w in range(weeks)) + " |",
        "|---|" + "---:|" * weeks,
    ]
    for name, values in evaluation.weekly.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    online, frozen = evaluation.weekly.get("online"), evaluation.weekly.get("frozen")
    if online and frozen and len(online) > 1:
        worst = min(o - f for o, f in zip(online[1:], frozen[1:], strict=True))
        verdict = "yes" if worst >= 0 else "no"
        lines.append(
            f"\nonline >= frozen in every week after the first: {verdict} (smallest difference "
            f"{worst:+.3f})"
        )
    return "\n".join(lines)


def labels_text(evaluation: Evaluation) -> str:
    """Labels each online run learned, by kind, and when."""
    out = []
    day_zero = np.floor(evaluation.replayed.event_time.min() / DAY) * DAY
    for name, run in evaluation.runs.items():
        days = ", ".join(f"{(t - day_zero) / DAY:.1f}" for t in run.adopted_at[:8])
        more = f" and {len(run.adopted_at) - 8} more" if len(run.adopted_at) > 8 else ""
        adopted = f"; own weights from day {days}{more}" if days else ""
        led = ", ".join(f"{(t - day_zero) / DAY:.1f}" for t in run.evidence_at[:8])
        if led:
            adopted += f"; a lineage's learned weights first led its root's on day {led}"
        kinds = ", ".join(f"{count:,} {kind}" for kind, count in sorted(run.kinds.items()))
        out.append(
            f"- {name}: {run.labels_learned:,} labels learned ({kinds or 'none'}); "
            f"{run.labels_learned - run.learned_after_last_payment:,} in time to matter, "
            f"{run.learned_after_last_payment:,} after the last payment was scored; "
            f"{run.sampled_out:,} legitimate labels left out by sampling, "
            f"{run.duplicates:,} duplicates of implicit negatives; "
            f"{run.versions_published:,} versions ({run.versions_adopted:,} scored with their own "
            f"weights, {run.judge_switches:,} switches{adopted}), {run.retrained} retrains "
            f"({run.refused} refused) at {run.labels_per_second:,.0f} labels/s"
        )
        for verdict in evaluation.gates.get(name, []):
            gain = verdict["challenger_ap"] - verdict["champion_ap"]
            need = verdict.get("min_gain", 0.0) * verdict.get("standard_error", 0.0)
            accepted = gain >= need - verdict["tolerance"]
            out.append(
                f"  - gate on {verdict['rows']:,} mature payments ({verdict['frauds']} frauds): "
                f"challenger {verdict['challenger_ap']:.4f}, champion {verdict['champion']} "
                f"{verdict['champion_ap']:.4f} (gain {gain:+.4f}, needed {need:.4f}): "
                f"{'accepted' if accepted else 'refused'}"
            )
        if run.rollbacks or run.rollbacks_superseded:
            out.append(
                f"  - retrains judged again on their own payments: {len(run.rollbacks)} decided, "
                f"{run.rolled_back} judged worse (rolled back, or with --shadow-first not "
                f"promoted), {run.rollbacks_superseded} superseded undecided"
            )
        if run.retrains_held or run.held_retrains_fitted:
            out.append(
                f"  - retrains due while a verdict was pending (--rollback-hold): "
                f"{run.retrains_held} due times held, {run.held_retrains_fitted} held retrains "
                f"fitted once the verdict came"
                f"{', one still held when the stream ended' if run.held_at_end else ''}"
            )
        for verdict in run.rollbacks:
            day = (verdict["at"] - np.floor(evaluation.replayed.event_time.min() / DAY) * DAY) / DAY
            fields = {k: v for k, v in verdict.items() if k not in ("at", "shadow_first")}
            shadow = bool(verdict.get("shadow_first", False))
            reason = rollback.RollbackVerdict(**fields).reason(shadow=shadow)
            out.append(f"  - day {day:.2f}: {reason}")
    return "\n".join(out)


def drift_text(evaluation: Evaluation, k: int) -> str:
    """The new pattern, per model: days until half of its payments are in the daily top k
    cards, then recall and AP per day since it started."""
    if not evaluation.drift:
        return ""
    days = max(len(d["day"]) for d in evaluation.drift.values())
    first = next(iter(evaluation.drift.values()))
    lines = [
        f"| model | days to half in top {k} | AP / AUC / CP@{k} elsewhere | "
        + " | ".join(f"day {d}" for d in first["day"][:days])
        + " |",
        "|---|---:|---:|" + "---:|" * days,
    ]
    for name, d in evaluation.drift.items():
        half = "never" if d["days_to_half"] is None else str(d["days_to_half"])
        row = evaluation.table[name]
        other = " / ".join(
            f"{row.get(m, float('nan')):.3f}"
            for m in ("average_precision_other", "roc_auc_other", f"card_precision_at_{k}_other")
        )
        cells = [f"{r:.2f} / {a:.2f}" for r, a in zip(d["recall"], d["ap"], strict=True)]
        lines.append(f"| {name} | {half} | {other} | " + " | ".join(cells) + " |")
    return (
        f"New pattern ({sum(first['payments']):,} payments from its first day): per day, the "
        f"share of its payments whose card is in the day's top {k} cards / the AP of its "
        "payments against the day's legitimate ones.\n\n" + "\n".join(lines)
    )


def write_report(evaluations: list[Evaluation], out: Path, command: str, seconds: float) -> Path:
    """Write the report into ``out`` (created if needed); return the path of ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    first = evaluations[0]
    k = int(first.settings["k"])
    plot_precision_recall(first, out / "precision_recall.png")
    plot_reliability(first, out / "reliability.png")
    plot_over_time(first, out / "metrics_over_time.png", k)
    runs = []
    for e in evaluations:
        r = e.replayed
        test = e.test
        runs.append(
            {
                "settings": e.settings,
                "stream": {
                    "payments": len(r),
                    "frauds": int(r.is_fraud.sum()),
                    "payments_from_go_live": len(test),
                    "frauds_from_go_live": int(r.is_fraud[test].sum()),
                    "cards": len(r.card_ids),
                    "labels_learnable": int((r.verdict >= 0).sum()),
                    "labels_skipped": r.skipped_labels,
                },
                "metrics": e.table,
                "weekly_average_precision": e.weekly,
                "drift": e.drift,
                "gates": e.gates,
                "rollbacks": {n: run.rollbacks for n, run in e.runs.items()},
                "seconds": e.seconds,
                "learner_pickled_bytes": {n: run.learner_bytes for n, run in e.runs.items()},
            }
        )
    for n, e in enumerate(evaluations):  # every score from go-live on, to recompute any metric
        r, test = e.replayed, e.test
        np.savez_compressed(
            out / f"scores-{n}.npz",
            day=r.day[test],
            card=r.card[test],
            is_fraud=r.is_fraud[test],
            **{name: score[test] for name, score in e.scores.items()},
        )
    mean = mean_table([e.table for e in evaluations])
    (out / "metrics.json").write_text(
        json.dumps({"command": command, "runs": runs, "mean": mean}, indent=2, default=str)
    )
    sections = []
    for e, run in zip(evaluations, runs, strict=True):
        s, stream = e.settings, run["stream"]
        learning = labels_text(e)
        drift = drift_text(e, k)
        timing = ", ".join(f"{name} {sec:.0f} s" for name, sec in e.seconds.items())
        sections.append(
            f"""### {s["stream"]}

- go-live {s["go_live"]} (day {s["go_live_day"]}); labels {s["label_delay_days"]:g} days \
after their payment; pre-trained on {s["start_rows"]:,} payments
- from go-live: {stream["payments_from_go_live"]:,} payments, \
{stream["frauds_from_go_live"]:,} fraudulent
- time: {timing}

{format_table(e.table, k)}

Average precision per test week:

{weekly_table(e)}

Labels:

{learning}

{drift}
"""
        )
    text = f"""# Prequential evaluation

`{command}`

Metrics over the payments from go-live on. CP@{k}: card precision@{k} per day, averaged over
days; `ceiling` is what a perfect ranking reaches. Brier score and ECE (expected calibration
error over 15 bins of equal count) measure the probability itself.

## Mean over {len(evaluations)} run(s)

{format_table(mean, k)}

## Each run

{chr(10).join(sections)}
Total time {seconds:.0f} s.

## Plots (first run)

![precision-recall](precision_recall.png)

![reliability](reliability.png)

![metrics over time](metrics_over_time.png)
"""
    (out / "report.md").write_text(text)
    return out / "report.md"
