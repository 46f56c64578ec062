"""The drift monitor's cost per payment, as the flow's score step pays it.

    python benchmarks/bench_drift.py [--batch 500] [--window 10000] [--repeats 400]

A reference of the 8 subjects (the score and :data:`model_state.drift.DRIFT_FEATURES`) from
random features, a full window first (every batch then evicts as much as it adds), then
``--repeats`` batches: µs per payment of ``observe``, µs per call of ``values``, and both per
payment when the values are read after every batch (as ``dataflows/drift_watch.py`` does).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from features.catalog import FEATURE_NAMES
from model_state.drift import DriftMonitor, reference


def sample(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.lognormal(size=(rows, len(FEATURE_NAMES))), rng.beta(0.5, 20.0, size=rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=400)
    args = parser.parse_args()
    x, p = sample(5, args.batch)
    monitor = DriftMonitor(reference(*sample(6, 5_000)), window=args.window)
    for _ in range(args.window // args.batch + 1):
        monitor.observe(x, p)
    started = time.perf_counter()
    for _ in range(args.repeats):
        monitor.observe(x, p)
    observe = (time.perf_counter() - started) / args.repeats
    started = time.perf_counter()
    for _ in range(args.repeats):
        monitor.values()
    values = (time.perf_counter() - started) / args.repeats
    print(
        f"observe {observe / args.batch * 1e6:.3f} µs per payment ({observe * 1e6:.0f} µs per "
        f"batch of {args.batch}); values {values * 1e6:.1f} µs per call; "
        f"{(observe + values) / args.batch * 1e6:.3f} µs per payment with values every batch"
    )


if __name__ == "__main__":
    main()
