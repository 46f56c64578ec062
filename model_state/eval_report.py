"""The evaluation report: ``report.md``, ``metrics.json`` and three PNG plots in one folder.

Needs matplotlib (the ``eval`` extra: ``pip install -e '.[eval]'``). Plots:

``precision_recall.png``
    Precision against recall over all held-out payments, one curve per model.
``score_distribution.png``
    Each model's scores, legitimate and fraudulent payments apart (log scale of the score).
``metrics_over_time.png``
    Card precision@k per day (7-day rolling mean, and the ceiling of a perfect ranking) and
    average precision per week, per model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import precision_recall_curve

from model_state.eval_metrics import card_precision_at_k, weekly_average_precision

if TYPE_CHECKING:
    from model_state.evaluate import Evaluation

COLORS = {"online": "tab:blue", "frozen": "tab:orange", "offline reference": "tab:green"}


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


def plot_precision_recall(evaluation: Evaluation, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    truth = evaluation.replayed.is_fraud
    for name, score in evaluation.scores.items():
        precision, recall, _ = precision_recall_curve(truth, score)
        ap = evaluation.table[name]["average_precision"]
        ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})", color=COLORS.get(name))
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Precision-recall over the held-out stream")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_score_distribution(evaluation: Evaluation, path: Path) -> None:
    plt = _pyplot()
    names = list(evaluation.scores)
    fig, axes = plt.subplots(len(names), 1, figsize=(6.4, 2.4 * len(names)), sharex=True)
    truth = evaluation.replayed.is_fraud
    bins = np.linspace(-10, 0, 81)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        logs = np.log10(np.clip(evaluation.scores[name], 1e-10, 1.0))
        for cls, label, color in ((False, "legitimate", "tab:gray"), (True, "fraud", "tab:red")):
            part = logs[truth == cls]
            ax.hist(part, bins=bins, density=True, alpha=0.6, label=label, color=color)
        ax.set_ylabel("density")
        ax.set_title(name, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    np.atleast_1d(axes)[-1].set_xlabel("log10(score)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_over_time(evaluation: Evaluation, path: Path, k: int, month_days: int) -> None:
    plt = _pyplot()
    replayed = evaluation.replayed
    day, card, truth = replayed.day, replayed.card, replayed.is_fraud
    days = np.unique(day)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 6.4), sharex=True)
    window = np.ones(7) / 7

    def rolling(values: np.ndarray) -> np.ndarray:
        return np.convolve(values, window, mode="valid") if len(values) >= 7 else values

    def centred(values: np.ndarray) -> np.ndarray:
        return days[3 : len(days) - 3] if len(values) != len(days) else days

    ceiling = card_precision_at_k(day, card, truth.astype(float), truth, k)
    top.plot(centred(rolling(ceiling)), rolling(ceiling), "k--", label="ceiling (perfect ranking)")
    for name, score in evaluation.scores.items():
        cp = rolling(card_precision_at_k(day, card, score, truth, k))
        top.plot(centred(cp), cp, label=name, color=COLORS.get(name))
        weeks, ap = weekly_average_precision(day, score, truth)
        bottom.plot(weeks * 7 + 3, ap, marker="o", label=name, color=COLORS.get(name))
    top.set(ylabel=f"card precision@{k}\n(7-day rolling mean)")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set(xlabel="day of the held-out stream", ylabel="average precision, per week")
    bottom.grid(alpha=0.3)
    for ax in (top, bottom):
        ax.axvline(month_days, color="gray", lw=0.8, ls=":")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _targets(table: dict[str, dict[str, float]], k: int) -> list[str]:
    cp = f"card_precision_at_{k}"
    online, frozen, reference = table["online"], table["frozen"], table["offline reference"]
    checks = [
        ("online AP >= offline reference AP", "average_precision", reference, ">="),
        (f"online CP@{k} >= offline reference CP@{k}", cp, reference, ">="),
        ("online AP > frozen AP after a month", "average_precision_after_month", frozen, ">"),
        (f"online CP@{k} > frozen CP@{k} after a month", cp + "_after_month", frozen, ">"),
    ]
    lines = []
    for text, key, other, op in checks:
        a, b = online.get(key, math.nan), other.get(key, math.nan)
        met = a >= b if op == ">=" else a > b
        lines.append(f"- {'met' if met else 'NOT met'}: {text} ({a:.4f} vs {b:.4f})")
    return lines


def write_report(evaluation: Evaluation, out: Path) -> Path:
    """Write the report into ``out`` (created if needed); return the path of ``report.md``."""
    from model_state.evaluate import MONTH_DAYS, format_table

    out.mkdir(parents=True, exist_ok=True)
    k = int(evaluation.settings["k"])
    plot_precision_recall(evaluation, out / "precision_recall.png")
    plot_score_distribution(evaluation, out / "score_distribution.png")
    plot_over_time(evaluation, out / "metrics_over_time.png", k, MONTH_DAYS)
    replayed, online, s = evaluation.replayed, evaluation.online, evaluation.settings
    stream = {
        "payments": len(replayed),
        "frauds": int(replayed.is_fraud.sum()),
        "days": int(replayed.day.max() + 1) if len(replayed) else 0,
        "cards": len(replayed.card_ids),
        "labels_learnable": int((replayed.verdict >= 0).sum()),
        "labels_skipped": replayed.skipped_labels,
        "labels_learned_online": online.labels_learned,
        "versions_published": online.versions_published,
        "learner_pickled_bytes": online.learner_bytes,
    }
    (out / "metrics.json").write_text(
        json.dumps(
            {
                "settings": s,
                "stream": stream,
                "metrics": evaluation.table,
                "seconds": evaluation.seconds,
            },
            indent=2,
            default=str,
        )
    )
    timing = ", ".join(f"{name} {sec:.0f} s" for name, sec in evaluation.seconds.items())
    text = f"""# Prequential evaluation

`{s.get("command", "python -m model_state.evaluate")}`

- pre-training history: {s["pretraining"]}; model family `{s["family"]}`
- held-out stream: {s["held_out"]}: {stream["payments"]:,} payments, {stream["frauds"]:,} \
fraudulent, {stream["cards"]:,} cards over {stream["days"]} days
- labels: learnable {s["label_delay"]}; {stream["labels_learned_online"]:,} learned online, \
a version published every {s["publish_every"]} labels ({stream["versions_published"]} versions); \
learner pickled: {stream["learner_pickled_bytes"]:,} bytes
- offline reference: HistGradientBoostingClassifier {s["reference"]}
- time: {timing}

## Metrics

Over all held-out payments, and over those from day {MONTH_DAYS} on ("month 2+"). CP@{k}: card
precision@{k} per day, averaged over days; `ceiling` is what a perfect ranking reaches (days with
fewer than {k} compromised cards cap it).

{format_table(evaluation.table, k)}

Targets (issue 5):

{chr(10).join(_targets(evaluation.table, k))}

## Plots

![precision-recall](precision_recall.png)

![score distribution](score_distribution.png)

![metrics over time](metrics_over_time.png)
"""
    (out / "report.md").write_text(text)
    return out / "report.md"
