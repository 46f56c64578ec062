"""Why does a forest fitted on more of the handbook's stream rank the next weeks worse?

    .venv/bin/python benchmarks/retrain_weeks.py [--seed 3] [--days 70] [--go-live-day 42]
        [--from-days 14 21] [--size 5000] [--cache reports/cache]

Replays the handbook's stream once (``test_data/handbook.py``, labels 7 days after each
payment; cached, :mod:`model_state.offline.eval_streams`), fits the ``boosted`` family's
forest (``model_state/offline/forests.py``) on what was usable at go-live and at go-live + 14
days, and prints each one's average precision on the third test week (go-live + 14 to + 21
days), with and without the tail columns; then the go-live + 14 fit again on only the payments
from each of ``--from-days`` on (the stream's first weeks are its warm-up: 30-day windows are
not full yet). The evaluation's ablation (README, "Evaluation") found the weekly retrain
costing AP on this stream; this is the smallest command that shows it. About 5 minutes on one
core.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

import model_state.offline.forests as forests
from features.catalog import DAY
from model_state.offline.eval_stream import usable
from model_state.offline.eval_streams import StreamSpec
from model_state.offline.eval_streams import replayed as replay_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--days", type=int, default=70)
    parser.add_argument("--go-live-day", type=int, default=42)
    parser.add_argument("--from-days", type=int, nargs="*", default=[14, 21])
    parser.add_argument("--size", type=int, default=5000, help="the handbook's customers")
    parser.add_argument("--cache", type=Path, default=Path("reports/cache"))
    args = parser.parse_args()
    # The stream the evaluation replays (the helper this used, named_stream, is gone): the same
    # handbook parameters, 2 terminals a customer, every payment labelled 7 days after it.
    spec = StreamSpec("handbook", args.seed, days=args.days, size=args.size, labels="every")
    replayed = replay_spec(spec, args.cache, progress=False)
    text = spec.describe()
    go_live = (np.floor(replayed.event_time.min() / DAY) + args.go_live_day) * DAY
    week = (replayed.event_time >= go_live + 14 * DAY) & (replayed.event_time < go_live + 21 * DAY)
    x, y = replayed.features[week], replayed.is_fraud[week]
    print(text)
    tails = forests.TAIL_FEATURES
    for label, tail in (("with tail columns", tails), ("without", ())):
        forests.TAIL_FEATURES = tail
        for name, at in (("go-live", go_live), ("go-live + 14 d", go_live + 14 * DAY)):
            started = time.perf_counter()
            rows, classes = usable(replayed, at, 7 * DAY)
            forest = forests.fit_boosted(replayed.features[rows], classes, seed=args.seed)
            ap = average_precision_score(y, forest.forest(x)[0])
            seconds = time.perf_counter() - started
            print(f"{label:18s} fitted at {name:15s} on {len(rows):,} payments: AP on week 3 "
                  f"{ap:.3f} ({seconds:.0f} s)", flush=True)  # fmt: skip
    forests.TAIL_FEATURES = tails
    rows, classes = usable(replayed, go_live + 14 * DAY, 7 * DAY)
    first = float(replayed.event_time.min())
    for since in args.from_days:
        keep = replayed.event_time[rows] >= first + since * DAY
        forest = forests.fit_boosted(replayed.features[rows[keep]], classes[keep], seed=args.seed)
        ap = average_precision_score(y, forest.forest(x)[0])
        print(f"with tail columns  fitted at go-live + 14 d  on the {int(keep.sum()):,} payments "
              f"from day {since}: AP on week 3 {ap:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
