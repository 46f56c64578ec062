"""Prequential evaluation of the live path on a held-out stream: online, frozen, offline reference.

    python -m model_state.evaluate [--train-days 40] [--train-cards 4000] [--train-seed 7]
        [--eval-days 60] [--eval-cards 3000] [--eval-seed 101]
        [--label-delay-days 7 | --generator-delays] [--family boosted]
        [--publish-every 500] [--retrain-days 7] [--top-k 100] [--out reports/evaluation]

1. **Pre-train** as ``python -m model_state.train`` does (same code, into a temporary model
   folder) on a simulated history (``--train-*``).
2. **Offline reference**: scikit-learn's ``HistGradientBoostingClassifier`` fitted on the same
   rows and features (evaluation only; :data:`REFERENCE` says how it was chosen).
3. **Held-out stream** (``--eval-*``, another seed): payments and labels in arrival order,
   through the live feature code (:mod:`model_state.eval_stream`). A label becomes learnable
   ``--label-delay-days`` after its payment's event time (default 7; ``--generator-delays``
   keeps the generator's own: fraud about a week after the incident, legitimate payments after
   30 days). Labels also feed the terminal and merchant fraud rates, as in the flow.
4. **Score, then learn**, payment by payment, with three models: the **online** one (starts
   from the pre-trained version, learns every learnable label through
   :class:`~model_state.learner.OnlineLearner` and scores with the newest published version,
   one every ``--publish-every`` labels, as the flow does; every ``--retrain-days`` of event
   time, 0 for never, it is retrained on every label learnable by then, as
   ``python -m model_state.retrain`` on a weekly schedule, and goes on from that version), the
   **frozen** pre-trained one, and the offline reference.
5. **Report** (:mod:`model_state.eval_report`): ROC AUC, average precision and card
   precision@k per day (:mod:`model_state.eval_metrics`) over the whole stream and after its
   first month, precision-recall curves, score distributions and metrics over time, written to
   ``--out`` as ``report.md``, ``metrics.json`` and PNGs; the table is printed at the end.

On this two-core machine the defaults took 14 min 23 s (two evaluations running at once): the
online run is 12 min of it, most of that the eight weekly retrains (two fits of a 500-tree
forest each, the challenger and the accepted version, on about 245,000 to 460,000 rows, 20 to 40 s
per fit); replaying the two streams' features is about 1 min 15 s.
"""

from __future__ import annotations

import argparse
import pickle
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from tqdm import tqdm

from model_state import retrain, signing, train
from model_state.artifact import ModelArtifact, next_version, write
from model_state.boosted import FOREST, fit_forest
from model_state.eval_metrics import card_precision_at_k, ranking_metrics
from model_state.eval_stream import Replayed, replay_stream, with_label_delay
from model_state.learner import OnlineLearner
from model_state.scorer import Scorer
from storage.labels import LabelledPayment
from test_data.generator import Simulation, SimulationSpec, simulate

MODELS = ("online", "frozen", "offline reference")
MONTH_DAYS = 30
VALIDATION_DAYS = 7  # the pre-training's held-out last days, as `python -m model_state.train`
REFERENCE: dict[str, Any] = FOREST
"""The offline reference's settings, the ``boosted`` family's forest's: the best of seven
HistGradientBoostingClassifier settings by average precision on the pre-training history's
held-out last week (benchmarks/bench_models.py, ``--reference-grid``); scikit-learn's defaults
stop early after about ten trees here and rank far worse."""


def cards_spec(seed: int, days: int, cards: int) -> SimulationSpec:
    """A generator spec with its default shape: one merchant for every five cards."""
    return SimulationSpec(seed=seed, days=days, cards=cards, merchants=max(cards // 5, 2))


def verdicts(simulation: Simulation) -> dict[str, bool]:
    """Transaction id to is_fraud for every payment the generator labels."""
    labels = simulation.label_table
    return {
        simulation.transaction_id(int(row)): bool(fraud)
        for row, fraud in zip(labels.payment.tolist(), labels.is_fraud.tolist(), strict=True)
    }


def held_out(
    spec: SimulationSpec, label_delay: timedelta | None, *, progress: bool = False
) -> Replayed:
    """``spec``'s stream replayed; labels ``label_delay`` after their payment, or as generated."""
    simulation = simulate(spec)
    stream = simulation.stream
    if label_delay is not None:
        stream = with_label_delay(stream, verdicts(simulation), label_delay)
    # With labels re-timed, those due after the last payment never come: the length is unknown.
    total = simulation.n_payments + simulation.n_labels if label_delay is None else None
    return replay_stream(stream, simulation.truth, total=total, progress=progress)


def scorer_for(artifact: ModelArtifact) -> Scorer:
    """The scorer the flow would use for ``artifact``; thresholds do not matter here."""
    return Scorer(
        artifact.model,
        artifact.version,
        review=0.5,
        decline=0.9,
        positive_weight=artifact.metadata.positive_weight,
    )


Retrain = Callable[[list[int], datetime, ModelArtifact], ModelArtifact | None]
"""Given the rows (payment indices) whose labels are learnable, the time and the version
scoring then (the champion): a new version to go on from, or None (refused)."""


@dataclass
class OnlineRun:
    """What the online model did over a stream."""

    scores: np.ndarray
    learned_before: np.ndarray  # labels the learner had learned when each payment was scored
    labels_learned: int = 0
    versions_published: int = 0
    retrained: int = 0
    refused: int = 0  # retrains whose challenger ranked below the champion
    learner_bytes: int = 0
    versions: list[str] = field(default_factory=list)


class _Scoring:
    """Payments waiting to be scored by the current version, scored in batches as in the flow."""

    def __init__(self, replayed: Replayed, scores: np.ndarray, scorer: Scorer) -> None:
        self._replayed = replayed
        self._scores = scores
        self.scorer = scorer
        self._waiting: list[int] = []

    def add(self, row: int) -> None:
        self._waiting.append(row)
        if len(self._waiting) >= 1000:
            self.flush()

    def flush(self) -> None:
        if self._waiting:
            rows = [self._replayed.feature_dict(i) for i in self._waiting]
            probabilities = [s.probability for s in self.scorer.score_batch(rows)]
            self._scores[self._waiting] = probabilities
            self._waiting.clear()

    def switch(self, scorer: Scorer) -> None:
        """Score what waits with the old version; what comes next with ``scorer``."""
        self.flush()
        self.scorer = scorer


def run_online(
    replayed: Replayed,
    start: ModelArtifact,
    publish_every: int,
    *,
    learner: OnlineLearner | None = None,
    retrain: Retrain | None = None,
    retrain_every: timedelta = timedelta(days=7),
    progress: bool = False,
) -> OnlineRun:
    """Score every payment with the newest published version; learn each label when learnable.

    As in the flow (:mod:`dataflows.learning`), one :class:`OnlineLearner` learns each label
    from the features its payment was scored with and publishes a version every
    ``publish_every`` labels; scoring picks a version up as soon as it is published (the
    flow's registry within ``model_refresh_seconds``). With ``retrain``, every
    ``retrain_every`` of event time a challenger is fitted on the labels learnable so far (as
    ``python -m model_state.retrain`` on a schedule); if it is accepted, scoring and the
    learner go on from it.
    """
    learner = learner or OnlineLearner(start, publish_every)
    scores = np.zeros(len(replayed))
    learned_before = np.zeros(len(replayed), dtype=np.int64)
    run = OnlineRun(scores, learned_before, versions=[start.version])
    scoring = _Scoring(replayed, scores, scorer_for(start))
    current = start
    learned = 0
    labelled: list[int] = []
    first = float(replayed.event_time.min()) if len(replayed) else 0.0
    next_retrain = first + retrain_every.total_seconds()
    schedule = replayed.schedule.tolist()
    for entry in tqdm(schedule, desc="online", unit=" events", disable=not progress):
        if entry >= 0:
            now = float(replayed.event_time[entry])
            if retrain is not None and now >= next_retrain:
                while next_retrain <= now:
                    next_retrain += retrain_every.total_seconds()
                fitted = retrain(list(labelled), datetime.fromtimestamp(now, UTC), current)
                if fitted is not None:
                    learner = OnlineLearner(fitted, publish_every)
                    scoring.switch(scorer_for(fitted))
                    run.versions.append(fitted.version)
                    run.retrained += 1
                    current = fitted
                else:
                    run.refused += 1
            scoring.add(entry)
            learned_before[entry] = learned
            continue
        row = -1 - entry
        learner.learn(
            LabelledPayment(
                transaction_id=replayed.transaction_ids[row],
                card_id=replayed.card_ids[replayed.card[row]],
                merchant_id="",
                terminal_id="",
                payment_time=float(replayed.event_time[row]),
                reported_at=float(replayed.reported_at[row]),
                is_fraud=bool(replayed.verdict[row]),
                features=replayed.feature_dict(row),
                scored_by=run.versions[-1],
            )
        )
        labelled.append(row)
        learned += 1
        if learner.due:
            record = learner.publish(datetime.fromtimestamp(replayed.reported_at[row], UTC))
            model = pickle.loads(record.payload)
            current = ModelArtifact(model, record.metadata, record.payload)
            scoring.switch(scorer_for(current))
            run.versions.append(record.metadata.version)
    scoring.flush()
    run.labels_learned = learned
    run.versions_published = len(run.versions) - 1 - run.retrained
    run.learner_bytes = len(pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL))
    return run


def score_frozen(replayed: Replayed, start: ModelArtifact, *, progress: bool = False) -> np.ndarray:
    """Every payment scored by the pre-trained version, which never learns."""
    scores = np.zeros(len(replayed))
    scoring = _Scoring(replayed, scores, scorer_for(start))
    rows = tqdm(range(len(replayed)), desc="frozen", unit=" payments", disable=not progress)
    for i in rows:
        scoring.add(i)
    scoring.flush()
    return scores


def stored_labels_retrain(
    history: train.Rows,
    replayed: Replayed,
    model_dir: Path,
    family: train.Family,
    seed: int,
    key: bytes,
) -> Retrain:
    """What ``python -m model_state.retrain`` would do at a time, on every labelled payment
    stored: the challenger against the version scoring then (:func:`retrain.challenge`).

    The store holds the pre-training history (as a bank's store holds its history), moved in
    time to end just before the held-out stream begins (both are simulated from the same day),
    and every held-out payment whose label was learnable by then, with the features it was
    scored with. So "the last days" a challenger is measured on are the newest held-out ones.
    """
    begins = float(replayed.event_time.min()) if len(replayed) else 0.0
    shift = (
        timedelta(seconds=max(history[-1][0].timestamp() - begins + 1.0, 0.0))
        if history
        else timedelta(0)
    )
    before = [(t - shift, x, y) for t, x, y in history]

    def run(labelled: list[int], now: datetime, champion: ModelArtifact) -> ModelArtifact | None:
        stored = [
            (
                datetime.fromtimestamp(float(replayed.event_time[r]), UTC),
                replayed.feature_dict(r),
                bool(replayed.verdict[r] == 1),
            )
            for r in labelled
        ]
        rows = sorted(before + stored, key=lambda r: r[0])  # the history first
        try:
            fitted, _ = retrain.challenge(
                rows,
                champion,
                model_dir,
                key=key,
                version=next_version(model_dir),
                family=family,
                seed=seed,
            )
        except retrain.NotEnoughLabelsError:
            return None
        if fitted is not None:
            write(fitted.payload, fitted.metadata, model_dir)  # the next retrain's name follows
        return fitted

    return run


def fit_reference(x: np.ndarray, y: np.ndarray, seed: int) -> HistGradientBoostingClassifier:
    """The offline reference: :func:`model_state.boosted.fit_forest`, on one thread."""
    return fit_forest(x, y, seed)


def metrics_table(
    replayed: Replayed, scores: dict[str, np.ndarray], *, k: int, month_days: int = MONTH_DAYS
) -> dict[str, dict[str, float]]:
    """Per model: ROC AUC, AP and mean card precision@k, over all days and from ``month_days``.

    The row ``ceiling`` is card precision@k of a perfect ranking (as many compromised cards as
    each day has, up to ``k``): the most any model can reach on this stream.
    """
    day = replayed.day
    truth = replayed.is_fraud
    later = day >= month_days
    table: dict[str, dict[str, float]] = {}
    for name, score in {**scores, "ceiling": truth.astype(np.float64)}.items():
        row: dict[str, float] = {}
        for suffix, mask in (("", np.ones(len(day), dtype=bool)), ("_after_month", later)):
            if name != "ceiling":
                for metric, value in ranking_metrics(truth[mask], score[mask]).items():
                    row[metric + suffix] = value
            cp = card_precision_at_k(day[mask], replayed.card[mask], score[mask], truth[mask], k)
            row[f"card_precision_at_{k}" + suffix] = float(cp.mean()) if len(cp) else float("nan")
        table[name] = row
    return table


@dataclass
class Evaluation:
    """Everything the report shows."""

    settings: dict[str, Any]
    replayed: Replayed
    scores: dict[str, np.ndarray]
    table: dict[str, dict[str, float]]
    online: OnlineRun
    seconds: dict[str, float]


def evaluate(
    pretraining: SimulationSpec,
    held_out_spec: SimulationSpec,
    *,
    label_delay: timedelta | None = timedelta(days=7),
    family: train.Family = train.DEFAULT_FAMILY,
    publish_every: int = 500,
    retrain_every: timedelta | None = timedelta(days=7),
    k: int = 100,
    progress: bool = False,
) -> Evaluation:
    """Run steps 1-4 of the module docstring and compute the metrics."""
    if pretraining.seed == held_out_spec.seed:
        raise ValueError(
            f"evaluate: the held-out stream must come from another seed than pre-training; "
            f"both use seed {pretraining.seed}"
        )
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now

    history = simulate(pretraining)
    rows = train.examples(history.stream, history.truth)
    with tempfile.TemporaryDirectory(prefix="payscore-eval-") as folder:
        model_dir = Path(folder)
        key = secrets.token_bytes(signing.KEY_BYTES)  # versions live and die in this folder
        start = train.train_rows(
            rows,
            model_dir,
            key=key,
            seed=pretraining.seed,
            validation_days=VALIDATION_DAYS,
            family=family,
        )
        # The reference learns from the same rows as the pre-trained model.
        learn, _ = train.split(rows, VALIDATION_DAYS)
        x, y = train.matrix(learn)
        del learn
        lap("pre-training")
        reference = fit_reference(x, y, pretraining.seed)
        del x, y
        lap("offline reference")
        replayed = held_out(held_out_spec, label_delay, progress=progress)
        lap("held-out replay")
        retraining = (
            None
            if retrain_every is None
            else stored_labels_retrain(rows, replayed, model_dir, family, pretraining.seed, key)
        )
        online = run_online(
            replayed,
            start,
            publish_every,
            retrain=retraining,
            retrain_every=retrain_every or timedelta(days=7),
            progress=progress,
        )
        del rows
    lap("online")
    scores = {
        "online": online.scores,
        "frozen": score_frozen(replayed, start, progress=progress),
        "offline reference": reference.predict_proba(replayed.features)[:, 1],
    }
    lap("frozen and reference scoring")
    settings = {
        "pretraining": _spec_text(pretraining),
        "held_out": _spec_text(held_out_spec),
        "label_delay": "generator's own delays"
        if label_delay is None
        else f"{label_delay.total_seconds() / 86400:g} days after the payment",
        "family": family,
        "publish_every": publish_every,
        "retrain": "never"
        if retrain_every is None
        else f"every {retrain_every.total_seconds() / 86400:g} days of event time",
        "versions_retrained": online.retrained,
        "retrains_refused": online.refused,
        "k": k,
        "start_model": start.metadata.model_description.splitlines()[0],
        "start_version_metrics": start.metadata.metrics,
        "reference": REFERENCE,
    }
    table = metrics_table(replayed, scores, k=k)
    lap("metrics")
    return Evaluation(settings, replayed, scores, table, online, seconds)


def _spec_text(spec: SimulationSpec) -> str:
    return f"seed {spec.seed}, {spec.days} days, {spec.cards} cards, {spec.merchants} merchants"


def format_table(table: dict[str, dict[str, float]], k: int) -> str:
    """The metrics table as Markdown."""
    cp = f"card_precision_at_{k}"
    columns = [
        ("ROC AUC", "roc_auc"),
        ("AP", "average_precision"),
        (f"CP@{k}", cp),
        ("ROC AUC, month 2+", "roc_auc_after_month"),
        ("AP, month 2+", "average_precision_after_month"),
        (f"CP@{k}, month 2+", cp + "_after_month"),
    ]
    lines = [
        "| model | " + " | ".join(title for title, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, row in table.items():
        cells = [f"{row[key]:.3f}" if key in row else "" for _, key in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m model_state.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--train-days", type=int, default=40)
    parser.add_argument("--train-cards", type=int, default=4000)
    parser.add_argument("--train-seed", type=int, default=7)
    parser.add_argument("--eval-days", type=int, default=60)
    parser.add_argument("--eval-cards", type=int, default=3000)
    parser.add_argument("--eval-seed", type=int, default=101)
    delay = parser.add_mutually_exclusive_group()
    delay.add_argument("--label-delay-days", type=float, default=7.0)
    delay.add_argument(
        "--generator-delays", action="store_true", help="keep the generator's label delays"
    )
    parser.add_argument("--family", choices=train.FAMILIES, default=train.DEFAULT_FAMILY)
    parser.add_argument("--publish-every", type=int, default=500, help="labels per version")
    parser.add_argument(
        "--retrain-days",
        type=float,
        default=7.0,
        help="retrain on every stored label this often (event time); 0: never",
    )
    parser.add_argument("--top-k", type=int, default=100, help="cards checked a day")
    parser.add_argument("--out", type=Path, default=Path("reports/evaluation"))
    args = parser.parse_args(argv)
    if args.label_delay_days < 0:
        parser.error(f"--label-delay-days must be >= 0; got {args.label_delay_days}")
    from model_state.eval_report import write_report  # matplotlib: the `eval` extra

    started = time.perf_counter()
    evaluation = evaluate(
        cards_spec(args.train_seed, args.train_days, args.train_cards),
        cards_spec(args.eval_seed, args.eval_days, args.eval_cards),
        label_delay=None if args.generator_delays else timedelta(days=args.label_delay_days),
        family=args.family,
        publish_every=args.publish_every,
        retrain_every=timedelta(days=args.retrain_days) if args.retrain_days > 0 else None,
        k=args.top_k,
        progress=True,
    )
    evaluation.settings["command"] = " ".join(["python -m model_state.evaluate", *sys.argv[1:]])
    evaluation.seconds["total"] = time.perf_counter() - started
    report = write_report(evaluation, args.out)
    print(format_table(evaluation.table, args.top_k))
    print(f"\nreport: {report} ({evaluation.seconds['total']:.0f} s)")


if __name__ == "__main__":
    main()
