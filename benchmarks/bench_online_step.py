"""The online step's cost per label and per payment, for each optimizer it may learn with.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_online_step.py \
        [--optimizers sgd:0.0003 adagrad:0.05] [--labels 5000] [--repeats 3] [--hold-forest]
        [--cache reports/cache]

The version the evaluation pre-trains at go-live on the handbook's defaults stream at 500
customers (``python -m model_state.evaluate``'s cache: fitted once) learns ``--labels`` labels
of that stream in the flow's way (:meth:`~model_state.learner.OnlineLearner.prepare` for a batch
of 500, then :meth:`~model_state.learner.OnlineLearner.learn` each), publishing a version every
500; then scores 5,000 payments in batches of 500 as the flow's score step does
(:meth:`~model_state.scorer.Scorer.score_batch`). Per optimizer: µs per label learned and per
payment scored (the fastest of ``--repeats``, CPU time of this process), the learner's pickled
bytes (what Bytewax snapshots) and a published version's (a delta).
"""

from __future__ import annotations

import argparse
import pickle
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from features.catalog import DAY
from model_state import signing
from model_state.learner import OnlineLearner
from model_state.offline.eval_streams import StreamSpec, replayed
from model_state.offline.evaluate import FitCache, pretrained
from model_state.offline.online_optimizer import BOOSTED_ONLINE
from model_state.scorer import Scorer
from storage.labels import LabelledPayment
from test_data.handbook_draws import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", default=[BOOSTED_ONLINE, "adagrad:0.05"])
    parser.add_argument("--labels", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--streams", type=Path, default=Path("evaluations/handbook-streams.json"))
    parser.add_argument("--cache", type=Path, default=Path("reports/cache"))
    parser.add_argument(
        "--hold-forest", action="store_true", help="the learner holds the forest's weight"
    )
    args = parser.parse_args()
    entry = next(e for e in load(args.streams) if e["name"] == "defaults")
    spec = StreamSpec("handbook", int(entry["seed"]), size=500, drift_start_day=46)
    r = replayed(spec, args.cache)
    go_live = float(np.floor(r.event_time.min() / DAY) + 42) * DAY
    rows = np.flatnonzero(r.event_time >= go_live)[: args.labels]
    examples = [
        LabelledPayment(
            transaction_id=r.transaction_ids[i], card_id="c", merchant_id="m", terminal_id="p",
            payment_time=float(r.event_time[i]), reported_at=float(r.event_time[i]) + 7 * DAY,
            is_fraud=bool(r.is_fraud[i]), features=r.feature_dict(int(i)), scored_by="v00001",
        )
        for i in rows.tolist()
    ]  # fmt: skip
    payments = [r.feature_dict(int(i)) for i in rows[:5000].tolist()]
    print(
        f"{spec.describe()}: {len(examples):,} labels ({sum(e.is_fraud for e in examples)} "
        f"frauds), {len(payments):,} payments scored; measured under load (a shared 2-core "
        "machine)"
    )
    print(
        "| optimizer | µs per label learned | µs per payment scored | learner pickled "
        "| version pickled |"
    )
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="payscore-bench-step-") as folder:
        key = secrets.token_bytes(signing.KEY_BYTES)
        fits = FitCache(args.cache, spec.key())
        for name in args.optimizers:
            start = pretrained(
                r, go_live, 7 * DAY, family="boosted", seed=spec.seed, fits=fits,
                model_dir=Path(folder), key=key, online_optimizer=name,
            )  # fmt: skip
            learn_best = score_best = float("inf")
            for _ in range(args.repeats):
                learner = OnlineLearner(start, 500, hold=args.hold_forest)
                began = time.process_time()
                for at in range(0, len(examples), 500):
                    batch = examples[at : at + 500]
                    prepared = learner.prepare(batch) or [None] * len(batch)
                    for example, columns in zip(batch, prepared, strict=True):
                        learner.learn(example, columns)
                    if learner.due:
                        record = learner.publish(datetime.now(UTC))
                learn_best = min(learn_best, (time.process_time() - began) / len(examples))
                scorer = Scorer(
                    learner.model, "learned", review=0.5, decline=0.9,
                    positive_weight=start.metadata.positive_weight,
                )  # fmt: skip
                began = time.process_time()
                for at in range(0, len(payments), 500):
                    scorer.score_batch(payments[at : at + 500])
                score_best = min(score_best, (time.process_time() - began) / len(payments))
            size = len(pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL))
            print(
                f"| {name} | {learn_best * 1e6:.1f} | {score_best * 1e6:.1f} | {size:,} bytes | "
                f"{len(record.payload):,} bytes |"
            )


if __name__ == "__main__":
    main()
