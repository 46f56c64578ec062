"""Train the pre-trained model: simulate a history, replay it through ``features/``, fit River.

    python -m model_state.train [--days 45] [--cards 4000] [--seed 7] [--model-dir DIR]

The history comes from the generator in ``test_data/`` (payments with known fraud, in arrival
order). Features are computed by :func:`features.replay.replay`, the same code the live flow
runs, so the model sees at training time exactly what it will see when scoring. The last
``--validation-days`` of the history are held out: the model learns from the rest and is
measured on the held-out days.

The model is ``StandardScaler | LogisticRegression``. It learns in ``--epochs`` passes over the
training rows, each in a shuffled order (seeded): a single pass in time order leaves SGD tuned to
the last days it saw, and it then scores cards with little history (every card when a flow starts
with empty state) far too high. Fraud is rare (well under 1 %); ``--fraud-weight`` makes each
fraudulent example weigh more, and the scorer corrects the probabilities for it. Measured on the
generator's traffic, weight 1 ranked and calibrated best (see the README's model section), so it
is the default.
"""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from river import compose, linear_model, optim, preprocessing
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from dataflows.config import Config
from features.catalog import FEATURE_NAMES
from features.replay import replay
from model_state import artifact
from model_state.scorer import Scorer
from test_data.generator import SimulationSpec, simulate


def new_model() -> compose.Pipeline:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(0.01), l2=1e-4
    )


Rows = list[tuple[datetime, dict[str, float], bool]]
"""(event time, features, is fraud) per payment, in arrival order."""


def examples(stream: Iterable[object], truth: dict[str, str | None]) -> Rows:
    rows = []
    for payment, features in tqdm(replay(stream), desc="features", unit=" payments"):
        rows.append((payment.event_time, features, truth.get(payment.transaction_id) is not None))
    return rows


def fit(
    rows: Rows, model: compose.Pipeline, *, weight: float, epochs: int, seed: int
) -> compose.Pipeline:
    """``epochs`` passes, each in a shuffled order; a fraud example weighs ``weight``."""
    order = list(range(len(rows)))
    rng = random.Random(seed)
    for epoch in range(epochs):
        rng.shuffle(order)
        for i in tqdm(order, desc=f"learning, pass {epoch + 1}/{epochs}", unit=" rows"):
            _, x, y = rows[i]
            # A pipeline passes extra keyword arguments to its last step's learn_one.
            model.learn_one(x, y, w=weight if y else 1.0)
    return model


def evaluate(model: compose.Pipeline, rows: Rows, weight: float) -> dict[str, float]:
    """Ranking metrics, and the mean corrected probability against the real fraud rate."""
    if not rows:
        return {}
    scorer = Scorer(model, "candidate", review=0.5, decline=0.9, positive_weight=weight)
    y = [int(r[2]) for r in rows]
    p = [scorer.score(r[1]).probability for r in rows]
    metrics = {
        "validation_rows": float(len(rows)),
        "validation_frauds": float(sum(y)),
        "validation_fraud_rate": sum(y) / len(y),
        "mean_probability": sum(p) / len(p),
    }
    if 0 < sum(y) < len(y):
        metrics["roc_auc"] = float(roc_auc_score(y, p))
        metrics["average_precision"] = float(average_precision_score(y, p))
    return metrics


def train(
    spec: SimulationSpec,
    model_dir: Path,
    *,
    validation_days: int = 7,
    epochs: int = 3,
    fraud_weight: float = 1.0,
) -> artifact.ModelArtifact:
    simulation = simulate(spec)
    rows = examples(simulation.stream, simulation.truth)
    if not rows:
        raise ValueError(f"the simulated history {spec} has no payments to learn from")
    cutoff = rows[-1][0] - timedelta(days=validation_days)
    learn = [r for r in rows if r[0] < cutoff]
    hold_out = [r for r in rows if r[0] >= cutoff]
    model = fit(learn, new_model(), weight=fraud_weight, epochs=epochs, seed=spec.seed)
    metrics = evaluate(model, hold_out, fraud_weight)
    version = artifact.next_version(model_dir)
    metadata = artifact.ModelMetadata(
        version=version,
        parent_version=None,
        origin="pretrained",
        created_at=artifact.now_utc(),
        feature_names=FEATURE_NAMES,
        model_description=repr(model),
        training_window=(rows[0][0], rows[-1][0]),
        rows=len(learn),
        frauds=sum(1 for r in learn if r[2]),
        positive_weight=fraud_weight,
        metrics=metrics,
    )
    return artifact.save(model, metadata, model_dir)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m model_state.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--days", type=int, default=45, help="days of simulated history")
    parser.add_argument("--cards", type=int, default=4000, help="cards in the simulation")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--validation-days", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fraud-weight", type=float, default=1.0)
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="where versions go (default: PAYSCORE_MODEL_DIR)",
    )
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a model version already exists"
    )
    args = parser.parse_args()
    model_dir = args.model_dir or Path(Config.from_env(os.environ).model_dir)
    if args.if_missing and artifact.list_versions(model_dir):
        print(f"model {artifact.list_versions(model_dir)[-1]} exists in {model_dir}; not training")
        return
    # Keep the generator's default population shape: one merchant for every five cards.
    spec = SimulationSpec(
        seed=args.seed, days=args.days, cards=args.cards, merchants=max(args.cards // 5, 2)
    )
    result = train(
        spec,
        model_dir,
        validation_days=args.validation_days,
        epochs=args.epochs,
        fraud_weight=args.fraud_weight,
    )
    m = result.metadata
    print(
        f"wrote model {m.version} to {model_dir / m.version}: {m.rows} rows, {m.frauds} frauds, "
        + ", ".join(f"{k} {v:.4f}" for k, v in m.metrics.items())
    )


if __name__ == "__main__":
    main()
