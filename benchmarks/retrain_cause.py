"""Why does the weekly retrain rank later weeks worse than the forest fitted at go-live?

    .venv/bin/python benchmarks/retrain_cause.py [--seed 1] [--labels every] [--size 5000]
        [--stream handbook] [--policies all from-day-30 last-28-days] [--cache reports/cache]

Replays one stream (cached, :mod:`model_state.offline.eval_streams`) and fits the ``boosted``
family's forest (:func:`model_state.offline.forests.fit_boosted`, the settings the retrain
uses) at go-live (day 42) and at each weekly retrain (go-live + 7, + 14, + 21 days), each on
the payments usable then (:func:`model_state.offline.eval_stream.usable`) as each training
policy selects them:

``all``
    every usable payment (the retrain until issue 22);
``from-day-30``
    only payments from day 30 of the stream on, when every 30-day window is full (the stream's
    warm-up weeks left out);
``last-28-days``
    only the usable payments of the last 28 days before the fit.

For each test week it prints the average precision of the forest the evaluation would score that
week with (the one fitted at the start of the week) next to the go-live forest's, per policy, so
that the cause candidates of issue 22 can be told apart: warm-up rows (``from-day-30``), how much
history is used (``last-28-days``), and the class balance of each training set (its fraud share,
printed). The gate's hold-out is measured by the evaluation itself (``--weekly``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from features.catalog import DAY
from model_state.offline import forests
from model_state.offline.eval_stream import usable
from model_state.offline.eval_streams import StreamSpec, replayed

POLICIES = ("all", "from-day-30", "last-28-days")


def select(policy: str, event_time: np.ndarray, first: float, at: float) -> np.ndarray:
    if policy == "all":
        return np.ones(len(event_time), dtype=bool)
    if policy == "from-day-30":
        return event_time >= first + 30 * DAY
    if policy == "last-28-days":
        return event_time >= at - 28 * DAY
    raise ValueError(policy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="handbook")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--labels", default="every")
    parser.add_argument("--go-live-day", type=int, default=42)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--cache", type=Path, default=Path("reports/cache"))
    parser.add_argument(
        "--noise",
        type=int,
        nargs="*",
        default=[],
        help="also fit the go-live forest with these random states (scikit-learn bins a "
        "subsample of 200,000 rows): how much a refit of the same rows moves each week's AP",
    )
    args = parser.parse_args()
    spec = StreamSpec(args.stream, args.seed, size=args.size, labels=args.labels)
    r = replayed(spec, args.cache, progress=False)
    print(spec.describe(), flush=True)
    first = float(np.floor(r.event_time.min() / DAY) * DAY)
    go_live = first + args.go_live_day * DAY
    delay = spec.label_delay_days * DAY
    weeks = [(go_live + 7 * k * DAY, go_live + 7 * (k + 1) * DAY) for k in range(4)]
    fits: dict[tuple[str, float], forests.Boosted] = {}
    for policy in args.policies:
        for start, _ in weeks:
            started = time.perf_counter()
            rows, y = usable(r, start, delay)
            keep = select(policy, r.event_time[rows], first, start)
            fits[policy, start] = forests.fit_boosted(
                r.features[rows[keep]], y[keep], seed=args.seed
            )
            seconds = time.perf_counter() - started
            print(
                f"  {policy:13s} fitted at day {(start - first) / DAY:.0f} on {int(keep.sum()):,} "
                f"payments, fraud share {y[keep].mean():.4f} ({seconds:.0f} s)",
                flush=True,
            )
    if args.noise:
        rows, y = usable(r, go_live, delay)
        print("\nthe go-live forest ('all') refitted with other random states, AP per week:")
        for state in [args.seed, *args.noise]:
            forest = forests.fit_boosted(r.features[rows], y, seed=state)
            aps = []
            for start, end in weeks:
                week = (r.event_time >= start) & (r.event_time < end)
                aps.append(
                    average_precision_score(r.is_fraud[week], forest.forest(r.features[week])[0])
                )
            print(f"  random state {state}: " + " ".join(f"{a:.3f}" for a in aps), flush=True)
    print("\naverage precision per test week: the forest fitted at the week's start (go-live's)")
    header = "| policy | " + " | ".join(f"week {k + 1}" for k in range(len(weeks))) + " |"
    print(header)
    print("|---|" + "---:|" * len(weeks))
    for policy in args.policies:
        cells = []
        for start, end in weeks:
            week = (r.event_time >= start) & (r.event_time < end)
            x, truth = r.features[week], r.is_fraud[week]
            mine = average_precision_score(truth, fits[policy, start].forest(x)[0])
            base = average_precision_score(truth, fits[policy, go_live].forest(x)[0])
            cells.append(f"{mine:.3f} ({base:.3f})")
        print(f"| {policy} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
