"""The forest's size chosen by measurement: AP against microseconds per payment.

    .venv/bin/python benchmarks/model_size.py [--streams handbook:1 handbook:2 handbook:3
        generator:101] [--size CUSTOMERS_OR_CARDS]
        [--sizes 100x15 100x31 250x15 250x31 250x63 500x15 500x31 500x63]
        [--cache reports/cache]

For each stream (the evaluation's: 70 days, go-live day 42, every payment labelled 7 days after,
replayed once and cached, :mod:`model_state.offline.eval_streams`) and each forest size
``TREESxLEAVES`` (``max_iter`` trees of at most ``max_leaf_nodes`` leaves; the learning rate
scaled so that trees times rate stays 25, as the shipped 500 x 0.05; the other settings
:data:`model_state.boosted.FOREST`'s), it fits the ``boosted`` model on what the evaluation's
pre-training learns at go-live (:func:`model_state.offline.evaluate.training_set`) and prints:

- the **frozen** model's ROC AUC, average precision and card precision@100 (the handbook's and
  ours) over every payment from go-live on, as ``python -m model_state.evaluate`` reports the
  frozen model (:func:`model_state.offline.evaluate.metrics_table`);
- **µs per payment** scored with reason codes in batches of 500, as the flow scores
  (:meth:`model_state.scorer.Scorer.score_batch`, best of 3 over 10,000 payments), and µs per
  label learned (:meth:`model_state.learner.OnlineLearner.prepare` and ``learn``, 5,000 labels);
- the pickled size.

``--size`` runs every stream at that many customers (handbook) or cards (generator) instead of
its default (5,000; 3,000): a smaller scale, to be reported as such. Then the mean over streams
per size. One core (``OMP_NUM_THREADS=1``); about 2 minutes a fit.
"""

from __future__ import annotations

import argparse
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.catalog import DAY
from model_state.artifact import ModelArtifact, ModelMetadata
from model_state.boosted import FOREST
from model_state.learner import OnlineLearner
from model_state.offline import forests, train
from model_state.offline.eval_stream import Replayed
from model_state.offline.eval_streams import StreamSpec, replayed
from model_state.offline.evaluate import metrics_table, score_frozen, training_set
from model_state.scorer import Scorer
from storage.labels import LabelledPayment

DEFAULT_SIZES = ["100x15", "100x31", "250x15", "250x31", "250x63", "500x15", "500x31", "500x63"]


def settings_of(size: str) -> dict[str, Any]:
    trees, leaves = (int(v) for v in size.split("x"))
    return FOREST | {"max_iter": trees, "max_leaf_nodes": leaves, "learning_rate": 25.0 / trees}


def _metadata(*, rows: int, frauds: int) -> ModelMetadata:
    return ModelMetadata(
        version="v00001",
        parent_version=None,
        origin="pretrained",
        created_at=datetime.now(UTC),
        feature_names=(),
        model_description="",
        rows=rows,
        frauds=frauds,
    )


def speed(model: Any, r: Replayed, rows: np.ndarray) -> tuple[float, float]:
    """µs per payment scored in batches of 500, and per label learned."""
    scorer = Scorer(model, "v", review=0.5, decline=0.9, positive_weight=1.0)
    sample = [r.feature_dict(i) for i in rows[:10_000].tolist()]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for lo in range(0, len(sample), 500):
            scorer.score_batch(sample[lo : lo + 500])
        best = min(best, time.perf_counter() - started)
    learner = OnlineLearner(ModelArtifact(model, _metadata(rows=1000, frauds=10), b""), 10**9)
    labels = [
        LabelledPayment(
            transaction_id=r.transaction_ids[i],
            card_id="c",
            merchant_id="",
            terminal_id="",
            payment_time=float(r.event_time[i]),
            reported_at=float(r.event_time[i]) + 7 * DAY,
            is_fraud=bool(r.is_fraud[i]),
            features=r.feature_dict(i),
            scored_by="v",
        )
        for i in rows[:5_000].tolist()
    ]
    started = time.perf_counter()
    for lo in range(0, len(labels), 500):
        batch = labels[lo : lo + 500]
        for example, columns in zip(
            batch, learner.prepare(batch) or [None] * len(batch), strict=True
        ):
            learner.learn(example, columns)
    learn = time.perf_counter() - started
    return best / len(sample) * 1e6, learn / len(labels) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--streams", nargs="+", default=["handbook:1", "handbook:2", "handbook:3", "generator:101"]
    )
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--go-live-day", type=int, default=42)
    parser.add_argument(
        "--size", type=int, default=None, help="customers (handbook) or cards (generator)"
    )
    parser.add_argument("--cache", type=Path, default=Path("reports/cache"))
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {size: [] for size in args.sizes}
    for name in args.streams:
        kind, seed = name.split(":")
        spec = StreamSpec(kind, int(seed), size=args.size)
        r = replayed(spec, args.cache)
        go_live = (np.floor(r.event_time.min() / DAY) + args.go_live_day) * DAY
        test = np.flatnonzero(r.event_time >= go_live)
        rows = training_set(r, go_live, 7 * DAY)
        x, y = train.matrix(rows)
        print(f"\n{spec.describe()}: {len(rows):,} training rows, {len(test):,} test payments")
        print("| size | fit s | ROC AUC | AP | CP@100 | CP@100, hb | µs/pay | µs/label | KB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            started = time.perf_counter()
            boosted = forests.fit_boosted(x, y, seed=spec.seed, settings=settings_of(size))
            fit_seconds = time.perf_counter() - started
            model = train.new_boosted_model(boosted)
            metadata = _metadata(rows=len(rows), frauds=int(y.sum()))
            scores = score_frozen(r, ModelArtifact(model, metadata, b""), test)
            m = metrics_table(r, {"frozen": scores}, test, k=100)["frozen"]
            per_payment, per_label = speed(model, r, test)
            kb = len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)) / 1024
            row = m | {"us_payment": per_payment, "us_label": per_label, "kb": kb}
            results[size].append(row)
            print(
                f"| {size} | {fit_seconds:.0f} | {m['roc_auc']:.3f} | {m['average_precision']:.3f} "
                f"| {m['card_precision_at_100']:.3f} | {m['handbook_card_precision_at_100']:.3f} "
                f"| {per_payment:.1f} | {per_label:.1f} | {kb:,.0f} |",
                flush=True,
            )
    print(f"\nmean over {len(args.streams)} streams")
    print(
        "| size | ROC AUC | AP | worst vs 500x31 | CP@100 | CP@100, hb | µs/pay | µs/label | KB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = results.get("500x31")
    for size, rows_ in results.items():
        mean = {k: float(np.mean([r[k] for r in rows_])) for k in rows_[0]}
        worst = (
            min(
                a["average_precision"] - b["average_precision"]
                for a, b in zip(rows_, base, strict=True)
            )
            if base
            else float("nan")
        )
        print(
            f"| {size} | {mean['roc_auc']:.3f} | {mean['average_precision']:.3f} | {worst:+.3f} "
            f"| {mean['card_precision_at_100']:.3f} | {mean['handbook_card_precision_at_100']:.3f} "
            f"| {mean['us_payment']:.1f} | {mean['us_label']:.1f} | {mean['kb']:,.0f} |"
        )


if __name__ == "__main__":
    main()
