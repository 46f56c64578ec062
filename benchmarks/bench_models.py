"""Online learner settings on held-out streams: what each one gains, seed by seed.

    .venv/bin/python benchmarks/bench_models.py [--seeds 101 202 303]
        [--families boosted basis linear] [--train-days 40] [--train-cards 4000] [--train-seed 7]
        [--eval-days 60] [--eval-cards 3000] [--label-delay-days 7] [--reference-grid] [--speed]

Pre-trains each family once on the ``--train-*`` history (``model_state.offline.train``'s code),
then for each held-out seed replays the stream once (labels ``--label-delay-days`` after their
payment) and runs the evaluation's online path (:func:`model_state.offline.evaluate.run_online`)
once per setting of the online logistic regression: its optimizer and step, and the fraud weight
(which needs its own pre-training, the scorer's prior correction following it). Prints, per setting
and seed, average precision and card precision@100 over the whole stream and from day 30 on,
then the mean over seeds; ``frozen`` is the pre-trained model that never learns, ``reference``
the evaluation's offline HistGradientBoostingClassifier.

``--reference-grid`` first fits seven HistGradientBoostingClassifier settings on the
pre-training rows and ranks them by average precision on its held-out last week: how
:data:`model_state.offline.evaluate.REFERENCE` was chosen. ``--speed`` prints each family's predict
and learn rate on one core, the scorer's rate (probability, decision and reason codes), one payment
at a time and in batches of 500 as the flow scores, and its pickled size; with ``--seeds`` and
no seed, only that.
"""

from __future__ import annotations

import argparse
import copy
import pickle
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from river import optim
from sklearn.ensemble import HistGradientBoostingClassifier

from model_state import signing
from model_state.artifact import ModelArtifact
from model_state.boosted import FOREST as REFERENCE
from model_state.offline import train
from model_state.offline.eval_metrics import ranking_metrics
from model_state.offline.eval_stream import Replayed, replay_stream, with_label_delay
from model_state.offline.evaluate import (
    cards_spec,
    metrics_table,
    run_online,
    score_frozen,
    verdicts,
)
from model_state.offline.forests import fit_forest as fit_reference
from model_state.scorer import Scorer
from test_data.generator import SimulationSpec, simulate


def held_out(spec: SimulationSpec, delay: timedelta) -> Replayed:
    """``spec``'s stream replayed, every payment labelled ``delay`` after it."""
    simulation = simulate(spec)
    return replay_stream(
        with_label_delay(simulation.stream, verdicts(simulation), delay), simulation.truth
    )


Setting = Callable[[Any], None]  # changes the logistic regression of a copy of the start model


def _optimizer(make: Callable[[], optim.base.Optimizer]) -> Setting:
    def apply(model: Any) -> None:
        list(model.steps.values())[-1].optimizer = make()

    return apply


SETTINGS: dict[str, Setting] = {
    "sgd 0.003": _optimizer(lambda: optim.SGD(0.003)),
    "sgd 0.01": _optimizer(lambda: optim.SGD(0.01)),
    "sgd 0.03": _optimizer(lambda: optim.SGD(0.03)),
    "adam 0.001": _optimizer(lambda: optim.Adam(0.001)),
    "adagrad 0.01": _optimizer(lambda: optim.AdaGrad(0.01)),
}
FRAUD_WEIGHTS = (3.0,)

GRID: dict[str, dict[str, Any]] = {
    "defaults": {},
    "lr .05, 300 trees": {"max_iter": 300, "learning_rate": 0.05, "early_stopping": False},
    "lr .05, 300 trees, 15 leaves, min leaf 100, l2 1": {
        "max_iter": 300,
        "learning_rate": 0.05,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 100,
        "l2_regularization": 1.0,
        "early_stopping": False,
    },
    "lr .1, 300 trees, min leaf 100, l2 1": {
        "max_iter": 300,
        "learning_rate": 0.1,
        "min_samples_leaf": 100,
        "l2_regularization": 1.0,
        "early_stopping": False,
    },
    "lr .05, 500 trees, min leaf 50, l2 1 (REFERENCE)": REFERENCE,
    "lr .05, 200 trees, 15 leaves, min leaf 200, l2 1": {
        "max_iter": 200,
        "learning_rate": 0.05,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 200,
        "l2_regularization": 1.0,
        "early_stopping": False,
    },
    "lr .03, 500 trees, 15 leaves, min leaf 100, l2 1": {
        "max_iter": 500,
        "learning_rate": 0.03,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 100,
        "l2_regularization": 1.0,
        "early_stopping": False,
    },
}


def with_setting(start: ModelArtifact, setting: Setting) -> ModelArtifact:
    model = copy.deepcopy(start.model)
    setting(model)
    return ModelArtifact(model, start.metadata, pickle.dumps(model))


def reference_grid(rows: train.Rows, seed: int) -> None:
    learn, hold_out = train.split(rows, 7)
    x, y = train.matrix(learn)
    xh, yh = train.matrix(hold_out)
    print("\nHistGradientBoostingClassifier on the pre-training history's held-out last week")
    print("| setting | fit s | ROC AUC | AP |\n|---|---:|---:|---:|")
    for name, params in GRID.items():
        started = time.perf_counter()
        model = HistGradientBoostingClassifier(random_state=seed, **params).fit(x, y)
        seconds = time.perf_counter() - started
        m = ranking_metrics(yh, model.predict_proba(xh)[:, 1])
        print(f"| {name} | {seconds:.1f} | {m['roc_auc']:.3f} | {m['average_precision']:.3f} |")


def speed(name: str, start: ModelArtifact, rows: train.Rows) -> None:
    sample = rows[-20_000:]
    model = copy.deepcopy(start.model)
    started = time.perf_counter()
    for _, x, _ in sample:
        model.predict_proba_one(x)
    predict = len(sample) / (time.perf_counter() - started)
    started = time.perf_counter()
    for _, x, y in sample:
        model.learn_one(x, y)
    learn = len(sample) / (time.perf_counter() - started)
    size = len(pickle.dumps(model))
    scorer = Scorer(start.model, start.version, review=0.5, decline=0.9)
    started = time.perf_counter()
    for _, x, _ in sample:
        scorer.score(x)
    score = len(sample) / (time.perf_counter() - started)
    features = [x for _, x, _ in sample]
    started = time.perf_counter()
    for i in range(0, len(features), 500):  # as the flow's score step meets a Kafka batch
        scorer.score_batch(features[i : i + 500])
    batch = len(sample) / (time.perf_counter() - started)
    print(f"| {name} | {predict:,.0f} | {score:,.0f} | {batch:,.0f} | {learn:,.0f} | {size:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, nargs="*", default=[101, 202, 303], help="none: only --speed"
    )
    parser.add_argument("--families", nargs="+", choices=train.FAMILIES, default=train.FAMILIES)
    parser.add_argument("--train-days", type=int, default=40)
    parser.add_argument("--train-cards", type=int, default=4000)
    parser.add_argument("--train-seed", type=int, default=7)
    parser.add_argument("--eval-days", type=int, default=60)
    parser.add_argument("--eval-cards", type=int, default=3000)
    parser.add_argument("--label-delay-days", type=float, default=7.0)
    parser.add_argument("--publish-every", type=int, default=500)
    parser.add_argument("--reference-grid", action="store_true")
    parser.add_argument("--speed", action="store_true")
    args = parser.parse_args()

    history = simulate(cards_spec(args.train_seed, args.train_days, args.train_cards))
    rows = train.examples(history.stream, history.truth)
    if args.reference_grid:
        reference_grid(rows, args.train_seed)
    learn, _ = train.split(rows, 7)
    reference = fit_reference(*train.matrix(learn), args.train_seed)
    starts: dict[str, ModelArtifact] = {}
    with tempfile.TemporaryDirectory() as folder:
        for family in args.families:
            for weight in (1.0, *FRAUD_WEIGHTS):
                starts[f"{family}, fraud weight {weight:g}"] = train.train_rows(
                    rows,
                    Path(folder),
                    key=secrets.token_bytes(signing.KEY_BYTES),
                    seed=args.train_seed,
                    family=family,
                    fraud_weight=weight,
                )
    if args.speed:
        print(
            "\n| family | predict rows/s | score+reasons rows/s | same, batches of 500 "
            "| learn rows/s | pickled bytes |"
            "\n|---|---:|---:|---:|---:|---:|"
        )
        for family in args.families:
            speed(family, starts[f"{family}, fraud weight 1"], rows)
    del rows, learn
    if not args.seeds:
        return

    results: dict[str, dict[int, dict[str, float]]] = {}
    for seed in args.seeds:
        replayed = held_out(
            cards_spec(seed, args.eval_days, args.eval_cards),
            timedelta(days=args.label_delay_days),
        )
        everything = np.arange(len(replayed))
        scores = {"reference": reference.predict_proba(replayed.features)[:, 1]}
        for label, start in starts.items():
            family, weight = label.split(", ")
            if weight == "fraud weight 1":
                scores[f"{family}, frozen"] = score_frozen(replayed, start, everything)
                runs = {f"{family}, {name}": with_setting(start, s) for name, s in SETTINGS.items()}
            else:
                runs = {f"{family}, {weight}, sgd (default)": start}
            for name, artifact in runs.items():
                started = time.perf_counter()
                scores[name] = run_online(replayed, artifact, args.publish_every).scores
                print(f"seed {seed}: {name} ({time.perf_counter() - started:.0f} s)", flush=True)
        for name, row in metrics_table(replayed, scores, everything, k=100).items():
            results.setdefault(name, {})[seed] = row
    _print(results, args.seeds)


def _print(results: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> None:
    keys = [
        ("AP", "average_precision"),
        ("CP@100", "card_precision_at_100"),
        ("Brier", "brier"),
    ]
    head = [f"{title} {seed}" for seed in [*seeds, "mean"] for title, _ in keys]
    print("\n| model, setting | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    for name, by_seed in results.items():
        cells = []
        for seed in [*seeds, "mean"]:
            for _, key in keys:
                values = [by_seed[s].get(key, np.nan) for s in seeds]
                value = float(np.mean(values)) if seed == "mean" else by_seed[seed].get(key)
                cells.append("" if value is None else f"{value:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
