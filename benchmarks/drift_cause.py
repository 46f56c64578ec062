"""Why do the online SGD steps not catch the drift scenario's new pattern? (issue 22 item 4)

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/drift_cause.py \
        [--streams evaluations/handbook-streams.json --only defaults
         | --stream generator --seed 101]
        [--size 500] [--labels every|frauds] [--optimizers sgd:0.0003 adagrad:0.05 ...]
        [--hold-forest]
        [--cache reports/cache]

One stream with the drift scenario (:mod:`test_data.drift`, from go-live + 4), replayed and
pre-trained as ``python -m model_state.evaluate`` does (the same cache: nothing is fitted again
when the evaluation has run). It prints the evidence for each candidate cause:

1. **Do the features carry the pattern?** Per feature, the ROC AUC of the pattern's payments
   against the legitimate payments of the same days (0.5: no difference), and both medians.
2. **Does the pre-trained forest see it?** The forest's log-odds on the pattern, the other
   frauds and the legitimate payments; how much each pattern payment shares its leaves with
   legitimate payments (per tree, the share of the legitimate payments in its leaf, averaged
   over the trees). And the **capacity** of what the online step learns on (the forest's
   log-odds and every feature's hats, one additive logistic regression): a regression fitted
   offline on those columns (scikit-learn, the first half of the pattern's days) ranks the
   second half at this AUC / AP; the forest alone at that.
3. **What does a learning step do?** For one fraud of the pattern, the change of its own
   log-odds by one step of the shipped SGD, split between the forest's column and the hats, and
   the change the same step makes to a legitimate payment. Then the learner itself (no retrain)
   over the stream's labels with each of ``--optimizers``: per day since the pattern started,
   the gap of mean log-odds between the pattern's payments and the day's legitimate ones and
   the pattern's AP; AP elsewhere (every other payment from go-live on); and the final weights.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from features.catalog import DAY, FEATURE_NAMES
from model_state import signing
from model_state.boosted import hats
from model_state.learner import OnlineLearner
from model_state.offline.eval_metrics import drift_metrics, ranking_metrics
from model_state.offline.eval_streams import StreamSpec, replayed
from model_state.offline.evaluate import (
    FitCache,
    live_schedule,
    pretrained,
    run_online,
)
from model_state.offline.online_optimizer import BOOSTED_ONLINE
from test_data.drift import NEW_PATTERN
from test_data.handbook_draws import load

KNOTS = 17  # hats per feature: knots 0 .. LOG_KNOTS (16) and one past the last


def hat_matrix(x: np.ndarray) -> np.ndarray:
    """Every feature's hats as dense columns (rows, features * KNOTS), as the online step sees
    them (:func:`model_state.boosted.hats`)."""
    k, past = hats(x)
    n, f = x.shape
    out = np.zeros((n, f * KNOTS))
    base = np.arange(f) * KNOTS
    rows = np.arange(n)[:, None]
    out[rows, base + k] = 1.0 - past
    np.add.at(out, (rows, base + np.minimum(k + 1, KNOTS - 1)), past)
    return out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def spec_of(args: argparse.Namespace) -> StreamSpec:
    common = {"days": 70, "size": args.size, "labels": args.labels,
              "drift_start_day": args.go_live_day + 4}  # fmt: skip
    if args.streams:
        entry = next(e for e in load(args.streams) if e["name"] == args.only)
        return StreamSpec(
            "handbook", int(entry["seed"]), params=tuple(sorted(entry["params"].items())),
            name=entry["name"], **common,
        )  # fmt: skip
    return StreamSpec(args.stream, args.seed, **common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=Path, default=None)
    parser.add_argument("--only", default="defaults")
    parser.add_argument("--stream", default="handbook")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--labels", default="every", choices=("every", "frauds"))
    parser.add_argument("--implicit-days", type=float, default=30.0)
    parser.add_argument("--go-live-day", type=int, default=42)
    parser.add_argument("--optimizers", nargs="+", default=[BOOSTED_ONLINE])
    parser.add_argument("--days-shown", type=int, default=14)
    parser.add_argument("--cache", type=Path, default=Path("reports/cache"))
    parser.add_argument(
        "--hold-forest",
        action="store_true",
        help="the learner holds the forest's weight (model_state.learner.HELD_COLUMNS)",
    )
    args = parser.parse_args()
    spec = spec_of(args)
    r = replayed(spec, args.cache, progress=False)
    print(spec.describe(), flush=True)
    first = float(np.floor(r.event_time.min() / DAY) * DAY)
    go_live = first + args.go_live_day * DAY
    start_day = args.go_live_day + 4
    delay = (spec.label_delay_days if spec.labels == "every" else args.implicit_days) * DAY
    pattern = r.rows_of(NEW_PATTERN)
    day = r.day
    after = day >= start_day
    legit = ~r.is_fraud & after
    other = r.is_fraud & ~pattern & after
    mine = pattern & after
    x = r.features
    print(
        f"pattern payments {mine.sum():,}, legitimate payments of the same days {legit.sum():,}, "
        f"other frauds {other.sum():,}"
    )

    # 1. the features
    print("\n1. Features: ROC AUC of the pattern against legitimate payments (same days)")
    print("| feature | AUC | median, pattern | median, legitimate |")
    print("|---|---:|---:|---:|")
    rows = []
    y = np.r_[np.ones(mine.sum()), np.zeros(legit.sum())]
    for j, name in enumerate(FEATURE_NAMES):
        values = np.r_[x[mine, j], x[legit, j]]
        auc = roc_auc_score(y, values) if np.ptp(values) > 0 else 0.5
        rows.append((abs(auc - 0.5), name, auc, np.median(x[mine, j]), np.median(x[legit, j])))
    for _, name, auc, mp, ml in sorted(rows, reverse=True)[:12]:
        print(f"| {name} | {auc:.3f} | {mp:.4g} | {ml:.4g} |")

    # 2. the forest, and the online step's columns
    with tempfile.TemporaryDirectory(prefix="payscore-drift-cause-") as folder:
        key = secrets.token_bytes(signing.KEY_BYTES)
        fits = FitCache(args.cache, spec.key())
        start = pretrained(
            r, go_live, delay, family="boosted", seed=spec.seed, fits=fits,
            model_dir=Path(folder), key=key,
        )  # fmt: skip
        boosted = next(iter(start.model.steps.values())).func
        print("\n2. The pre-trained forest")
        log_odds = {}
        leaves = {}
        for what, m in (("pattern", mine), ("other frauds", other), ("legitimate", legit)):
            log_odds[what], leaves[what] = boosted.forest(x[m])
            q = np.percentile(log_odds[what], [10, 50, 90])
            print(
                f"   forest log-odds, {what}: 10 / 50 / 90 % {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}"
            )
        for what in ("pattern", "other frauds"):
            scores = np.r_[log_odds[what], log_odds["legitimate"]]
            truth = np.r_[np.ones(len(log_odds[what])), np.zeros(len(log_odds["legitimate"]))]
            print(
                f"   forest, {what} against legitimate: ROC AUC {roc_auc_score(truth, scores):.3f},"
                f" AP {average_precision_score(truth, scores):.3f} ({int(truth.sum()):,} against "
                f"{len(truth) - int(truth.sum()):,})"
            )
        counts = np.bincount(leaves["legitimate"].ravel(), minlength=len(boosted.nodes["value"]))
        total = len(leaves["legitimate"])
        for what in ("pattern", "other frauds"):
            share = counts[leaves[what]] / total  # per payment and tree
            alone = float((counts[leaves[what]] == 0).mean())
            q = np.percentile(share.mean(axis=1), [10, 50, 90])
            print(
                f"   leaves of {what}: share of legitimate payments in the same leaf, mean over "
                f"trees, 10 / 50 / 90 %: {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}; "
                f"(payment, tree) pairs in a leaf no legitimate payment reaches: {alone:.1%}"
            )
        half = start_day + (day[mine].max() - start_day + 1) // 2
        judged = np.flatnonzero(mine | legit)
        fit_rows, test_rows = day[judged] < half, day[judged] >= half
        columns = np.hstack([boosted.forest(x[judged])[0][:, None], hat_matrix(x[judged])]).astype(
            np.float32
        )
        lr = SkLogisticRegression(C=1.0, max_iter=2000)
        lr.fit(columns[fit_rows], pattern[judged][fit_rows])
        held = lr.decision_function(columns[test_rows])
        forest_alone = columns[test_rows, 0]
        truth = pattern[judged][test_rows]
        print(
            f"   capacity: a regression on the online step's columns (forest + hats), fitted on "
            f"days {start_day}-{half - 1}, ranks days {half}-{day.max()} at ROC AUC "
            f"{roc_auc_score(truth, held):.3f}, AP {average_precision_score(truth, held):.3f}; "
            f"the forest alone {roc_auc_score(truth, forest_alone):.3f} / "
            f"{average_precision_score(truth, forest_alone):.3f}"
        )

        # 3. a learning step, then the learner over the stream
        print("\n3. Learning steps")
        learner = OnlineLearner(start, 500)
        linear = learner._last_step
        lr_value = getattr(linear.optimizer, "learning_rate", float("nan"))
        cols = boosted.expand_many([r.feature_dict(i) for i in np.flatnonzero(mine)[:400]])
        legit_cols = boosted.expand_many([r.feature_dict(i) for i in np.flatnonzero(legit)[:2000]])
        p = np.array([linear.predict_proba_one(c)[True] for c in cols])
        w = start.metadata.positive_weight
        forest_sq = np.array([c["forest"] ** 2 for c in cols])
        hats_sq = np.array([sum(v * v for k, v in c.items() if k != "forest") for c in cols])
        own_forest = lr_value * w * (1 - p) * forest_sq
        own_hats = lr_value * w * (1 - p) * hats_sq
        cross = np.array(
            [
                np.mean([sum(v * lc.get(k, 0.0) for k, v in c.items()) for lc in legit_cols[:200]])
                for c in cols[:100]
            ]
        )
        print(
            f"   one fraud label of the pattern, shipped optimizer {linear.optimizer} "
            f"(intercept rate {linear.intercept_lr}), weight {w:g} (positive_weight; the label-"
            "balance guard's factor is about 1 in a steady stream), the regression's p = "
            f"{np.median(p):.4f} (median):"
        )
        print(
            f"   its own log-odds rise by {np.median(own_forest + own_hats):.4f} (median): "
            f"{np.median(own_forest):.4f} through the forest's column (weight on a log-odds of "
            f"about {np.median(np.sqrt(forest_sq)):.1f}) and {np.median(own_hats):.5f} through "
            f"its {np.median(hats_sq):.1f} (sum of squares) of hats; a legitimate payment's "
            f"rise by {lr_value * w * np.median((1 - p[:100]) * cross):.4f} (median): "
            f"the forest's weight moves every payment"
        )
        per_day = np.bincount(day[mine], minlength=day.max() + 1)[start_day:]
        legit_day = np.bincount(day[~r.is_fraud], minlength=day.max() + 1)[start_day:]
        print(
            f"   labels: about {per_day.mean():.0f} pattern frauds and {legit_day.mean():.0f} "
            "legitimate payments a day"
        )
        test = np.flatnonzero(r.event_time >= go_live)
        rest = test[~pattern[test]]
        schedule = live_schedule(r, go_live, delay, implicit=spec.labels != "every")
        shown = args.days_shown
        print(
            "\n   the learner alone (no retrain), per day since the pattern started: mean "
            "log-odds gap pattern - legitimate / the pattern's AP"
        )
        head = " | ".join(f"d{d}" for d in range(shown))
        print(f"| optimizer | AP elsewhere | w(forest) | {head} |")
        print("|---|---:|---:|" + "---:|" * shown)
        notes: list[str] = []
        for name in ["frozen", *args.optimizers]:
            if name == "frozen":
                version = start
            else:
                version = pretrained(
                    r, go_live, delay, family="boosted", seed=spec.seed, fits=fits,
                    model_dir=Path(folder), key=key, online_optimizer=name,
                )  # fmt: skip
            learner = OnlineLearner(version, 500, hold=args.hold_forest)
            run = run_online(
                r, version, 500, schedule=schedule, implicit_after=delay,
                learner=learner, learn=name != "frozen",
            )  # fmt: skip
            s = run.scores
            gaps = []
            for d in range(start_day, start_day + shown):
                today = day == d
                gap = logit(s[today & pattern]).mean() - logit(s[today & ~r.is_fraud]).mean()
                gaps.append(gap)
            metrics = drift_metrics(
                day=day[test], card=r.card[test], score=s[test], is_fraud=r.is_fraud[test],
                pattern=pattern[test], start_day=start_day, k=100,
            )  # fmt: skip
            elsewhere = ranking_metrics(r.is_fraud[rest], s[rest])["average_precision"]
            weights = learner._last_step.weights
            cells = " | ".join(
                f"{g:.2f} / {a:.2f}" for g, a in zip(gaps, metrics["ap"][:shown], strict=False)
            )
            print(f"| {name} | {elsewhere:.3f} | {weights.get('forest', 0.0):.3f} | {cells} |")
            if name != "frozen":
                top = sorted(((v, k) for k, v in weights.items() if k != "forest"), reverse=True)[
                    :6
                ]
                notes.append(
                    f"   {name}: intercept {learner._last_step.intercept:+.3f}, largest hat "
                    "weights " + ", ".join(f"{k} {v:+.3f}" for v, k in top)
                )
        print("\n".join(notes))


if __name__ == "__main__":
    main()
