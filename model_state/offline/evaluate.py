"""Prequential evaluation on one stream: pre-train on its first weeks, then score and learn.

    python -m model_state.evaluate --stream handbook [--seeds 1 2 3] [--days 70]
        [--go-live-day 42] [--size 5000] [--label-delay-days 7]
        [--online | --no-online] [--retrain | --no-retrain] [--balance | --no-balance]
        [--ablation] [--publish-every 500] [--retrain-days 7] [--top-k 100]
        [--out reports/evaluation]
    python -m model_state.evaluate --stream generator ...
    python -m model_state.evaluate --history PATH [PATH ...] [--go-live-day 42] ...

The protocol, the same for every stream:

1. **The stream.** ``handbook``: the Fraud Detection Handbook's simulator
   (:mod:`test_data.handbook`; ``--size`` customers, twice as many terminals); ``generator``:
   this project's own (:mod:`test_data.generator`; ``--size`` cards). Each labels every payment
   ``--label-delay-days`` after it (the handbook's protocol: 7). ``--history``: a bank's own
   payments and labels (:mod:`model_state.offline.history`), labels as they were reported.
2. **Replay** payments and labels in arrival order through the live feature code
   (:mod:`model_state.offline.eval_stream`): every payment's features as the flow would have scored
   it.
3. **Go live** on day ``--go-live-day``. A model trained at time ``T`` may learn a payment made
   before ``T`` whose label was reported by ``T``, or, with no label by then, a payment older
   than the label delay (taken as legitimate, as a bank takes a payment nobody disputed). The
   pre-trained version is fitted that way at go-live (:func:`model_state.offline.train.train_rows`:
   validation on its last 7 days first, then every usable day).
4. **Score, then learn**, from go-live on, with:
   - ``online``: the live learner (:class:`~model_state.learner.OnlineLearner`, a version every
     ``--publish-every`` labels, scoring with the newest), retrained every ``--retrain-days``
     on every usable label behind the champion/challenger gate of
     :mod:`model_state.offline.retrain`; ``--no-online``, ``--no-retrain`` and ``--no-balance``
     switch its online SGD steps, its retraining and its label-balance guard off;
   - ``frozen``: the pre-trained version, never updated;
   - ``RF (handbook features)`` and ``LR (handbook features)``: the handbook's own baselines
     on its own 15 published features (:mod:`model_state.offline.handbook_reference`), fitted at
     go-live and retrained on the same schedule on the same usable labels.
   ``--ablation`` adds the online model with each of its three moving parts switched off.
   The references' terminal risk is the handbook's: it counts every fraud exactly the label delay
   after its payment. On the handbook's stream and with ``--label-delay-days`` that is when its
   label is reported, the same information the online model has; with ``--generator-delays`` or
   a ``--history`` whose labels come later, it gives the references frauds not reported yet.
5. **Report** over the payments from go-live on (:mod:`model_state.offline.eval_report`): ROC AUC,
   average precision, card precision@k per day, Brier score and expected calibration error,
   per seed and their mean; labels learned per second; plots of precision-recall and
   reliability.

Retrained forests are fitted once per seed and retrain time and shared by every variant that
retrains (a challenger depends on the labels, not on the champion; only the gate does).
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from features.catalog import DAY
from features.contract import FraudLabel, Payment
from model_state import artifact, signing
from model_state.artifact import ModelArtifact
from model_state.learner import OnlineLearner
from model_state.offline import handbook_reference, retrain, train
from model_state.offline.eval_metrics import (
    calibration_metrics,
    card_precision_at_k,
    format_table,
    handbook_card_precision_at_k,
    mean_table,
    ranking_metrics,
)
from model_state.offline.eval_results import Evaluation, OnlineRun
from model_state.offline.eval_stream import (
    Replayed,
    replay_stream,
    training_rows,
    usable,
    with_label_delay,
)
from model_state.scorer import Scorer
from storage.labels import LabelledPayment
from test_data.generator import Simulation, SimulationSpec, simulate

STREAMS = ("handbook", "generator")
ONLINE = "online"
FROZEN = "frozen"
RANDOM_FOREST = "RF (handbook features)"
LOGISTIC = "LR (handbook features)"
VALIDATION_DAYS = 7  # the pre-training's held-out last days, as `python -m model_state.train`


@dataclass(frozen=True)
class Variant:
    """How the online model runs: its online SGD steps, its retraining, its balance guard."""

    online: bool = True
    retrain: bool = True
    balance: bool = True

    def name(self, shipped: Variant) -> str:
        if self == shipped:
            return ONLINE
        off = [n for n in ("online", "retrain", "balance") if not getattr(self, n)]
        words = {"online": "no SGD", "retrain": "no retrain", "balance": "no balance guard"}
        return "online, " + ", ".join(words[n] for n in off) if off else ONLINE


def ablations(shipped: Variant) -> list[Variant]:
    """``shipped``, then every variant with one of its parts switched off."""
    out = [shipped]
    for part in ("online", "retrain", "balance"):
        if getattr(shipped, part):
            out.append(dataclasses.replace(shipped, **{part: False}))
    return out


# ---------------------------------------------------------------------------------- streams


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


Events = Iterable[Payment | FraudLabel]


def named_stream(
    name: str, seed: int, days: int, size: int, label_delay: timedelta, *, own_delays: bool = False
) -> tuple[Events, dict[str, str | None], str]:
    """Events in arrival order, transaction id to fraud scenario, and a description.
    ``own_delays`` keeps the generator's own label delays (frauds about a week after the
    incident, legitimate payments confirmed after 30 days) instead of ``label_delay``."""
    if name == "generator":
        simulation = simulate(cards_spec(seed, days, size))
        if own_delays:
            events: Events = simulation.stream
            text = f"generator, seed {seed}, {days} days, {size} cards, its own label delays"
        else:
            events = with_label_delay(simulation.stream, verdicts(simulation), label_delay)
            text = f"generator, seed {seed}, {days} days, {size} cards"
        return events, simulation.truth, text
    if name == "handbook":
        from test_data.handbook import HandbookSpec, simulate_handbook

        spec = HandbookSpec(
            seed=seed,
            days=days,
            n_customers=size,
            n_terminals=2 * size,
            label_delay_days=label_delay.total_seconds() / DAY,
        )
        stream = simulate_handbook(spec)
        text = f"handbook, seed {seed}, {days} days, {size} customers, {2 * size} terminals"
        return stream.stream(label_delay), stream.truth(), text
    raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(STREAMS)} or --history")


def history_stream(paths: list[Path]) -> tuple[Events, dict[str, str | None], str]:
    """A bank's own history: its events, and its fraud labels as the truth."""
    from model_state.offline.history import load_history

    history = load_history(paths)
    truth: dict[str, str | None] = {
        label.transaction_id: "labelled fraud" for label in history.labels if label.is_fraud
    }
    text = f"history {', '.join(str(p) for p in paths)}: {history.summary().splitlines()[0]}"
    return history.stream(), truth, text


# --------------------------------------------------------------------------------- online


def scorer_for(version: ModelArtifact) -> Scorer:
    """The scorer the flow would use for ``version``; thresholds do not matter here."""
    return Scorer(
        version.model,
        version.version,
        review=0.5,
        decline=0.9,
        positive_weight=version.metadata.positive_weight,
    )


Retrain = Callable[[datetime, ModelArtifact], ModelArtifact | None]
"""Given the time and the champion: a new version to go on from, or None (refused)."""


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
    schedule: np.ndarray | None = None,
    learner: OnlineLearner | None = None,
    learn: bool = True,
    balanced: bool = True,
    retrain: Retrain | None = None,
    retrain_every: timedelta = timedelta(days=7),
    progress: bool = False,
) -> OnlineRun:
    """Score every payment of ``schedule`` (default: the whole stream's) with the newest
    published version; learn each label when it becomes learnable.

    As in the flow (:mod:`dataflows.learning`), one :class:`OnlineLearner` learns each label
    from the features its payment was scored with and publishes a version every
    ``publish_every`` labels; scoring picks a version up as soon as it is published. With
    ``retrain``, every ``retrain_every`` of event time from the first payment scored, a
    challenger is fitted (as ``python -m model_state.retrain`` on a schedule); if accepted,
    scoring and the learner go on from it. ``learn=False`` scores without online steps;
    ``learner`` replaces the first learner (tests).
    """
    events = (replayed.schedule if schedule is None else schedule).tolist()
    learner = learner or OnlineLearner(start, publish_every, balanced=balanced)
    scores = np.zeros(len(replayed))
    learned_before = np.zeros(len(replayed), dtype=np.int64)
    run = OnlineRun(scores, learned_before, versions=[start.version])
    scoring = _Scoring(replayed, scores, scorer_for(start))
    current = start
    roots = {start.version: start}  # lineage roots the learner's versions refer to
    learned = 0
    first = next((float(replayed.event_time[e]) for e in events if e >= 0), 0.0)
    next_retrain = first + retrain_every.total_seconds()
    for entry in tqdm(events, desc="online", unit=" events", disable=not progress):
        if entry >= 0:
            now = float(replayed.event_time[entry])
            if retrain is not None and now >= next_retrain:
                while next_retrain <= now:
                    next_retrain += retrain_every.total_seconds()
                scoring.flush()
                fitted = retrain(datetime.fromtimestamp(now, UTC), current)
                if fitted is not None:
                    roots[fitted.version] = fitted
                    learner = OnlineLearner(fitted, publish_every, balanced=balanced)
                    scoring.switch(scorer_for(fitted))
                    run.versions.append(fitted.version)
                    run.retrained += 1
                    current = fitted
                else:
                    run.refused += 1
            scoring.add(entry)
            learned_before[entry] = learned
            continue
        if not learn:
            continue
        row = -1 - entry
        started = time.perf_counter()
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
        learned += 1
        if learner.due:
            record = learner.publish(datetime.fromtimestamp(replayed.reported_at[row], UTC))
            model = artifact.loads(
                record.payload, record.metadata, roots.__getitem__, where="learner"
            )
            current = ModelArtifact(model, record.metadata, record.payload)
        run.learn_seconds += time.perf_counter() - started
        if current.version != run.versions[-1]:  # published: score with it from now on
            scoring.switch(scorer_for(current))
            run.versions.append(current.version)
    scoring.flush()
    run.labels_learned = learned
    run.versions_published = len(run.versions) - 1 - run.retrained
    run.learner_bytes = len(pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL))
    return run


def score_frozen(
    replayed: Replayed, start: ModelArtifact, rows: np.ndarray, *, progress: bool = False
) -> np.ndarray:
    """``rows`` scored by the pre-trained version, which never learns."""
    scores = np.zeros(len(replayed))
    scoring = _Scoring(replayed, scores, scorer_for(start))
    for i in tqdm(rows.tolist(), desc="frozen", unit=" payments", disable=not progress):
        scoring.add(i)
    scoring.flush()
    return scores


class Retrainer:
    """What ``python -m model_state.retrain`` would do at a time: a challenger fitted on every
    usable label (validated on its last days, then fitted on all of them), against the
    champion on those last days (:class:`model_state.offline.retrain.Verdict`). Challengers are
    fitted once per time and shared by every run that retrains."""

    def __init__(
        self,
        replayed: Replayed,
        delay: float,
        model_dir: Path,
        key: bytes,
        family: train.Family,
        seed: int,
    ) -> None:
        self._replayed, self._delay = replayed, delay
        self._model_dir, self._key = model_dir, key
        self._family, self._seed = family, seed
        self._fitted: dict[float, tuple[float, train.Rows, ModelArtifact] | None] = {}

    def challenger(self, at: float) -> tuple[float, train.Rows, ModelArtifact] | None:
        if at not in self._fitted:
            rows = training_rows(self._replayed, *usable(self._replayed, at, self._delay))
            options: dict[str, Any] = {"seed": self._seed, "family": self._family}
            options["origin"] = "retrained"
            _, metadata, hold_out = train.fit_version(
                rows, self._model_dir, validation_days=VALIDATION_DAYS, **options
            )
            ap = metadata.metrics.get("average_precision")
            if ap is None:  # no fraud, or nothing but fraud, in the last days
                self._fitted[at] = None
                return None
            version = artifact.next_version(self._model_dir)
            model, final, _ = train.fit_version(
                rows, self._model_dir, validation_days=0, version=version, **options
            )
            final = msgspec.structs.replace(final, metrics=metadata.metrics)
            fitted = artifact.make(model, final, key=self._key)
            artifact.write(fitted.payload, fitted.metadata, self._model_dir)
            self._fitted[at] = (ap, hold_out, fitted)
        return self._fitted[at]

    def __call__(self, now: datetime, champion: ModelArtifact) -> ModelArtifact | None:
        fitted = self.challenger(now.timestamp())
        if fitted is None:
            return None
        challenger_ap, hold_out, version = fitted
        scores = [s.probability for s in scorer_for(champion).score_batch([r[1] for r in hold_out])]
        verdict = retrain.Verdict(
            champion=champion.version,
            challenger_ap=challenger_ap,
            champion_ap=float(average_precision_score([r[2] for r in hold_out], scores)),
            tolerance=retrain.DEFAULT_TOLERANCE,
            rows=len(hold_out),
            frauds=sum(r[2] for r in hold_out),
        )
        return version if verdict.accepted else None


# ------------------------------------------------------------------------------ reference


def reference_scores(
    replayed: Replayed,
    test: np.ndarray,
    go_live: float,
    delay: float,
    retrain_every: float | None,
    seed: int,
) -> dict[str, np.ndarray]:
    """The handbook's random forest and logistic regression on its own 15 features, fitted at
    go-live and every ``retrain_every`` seconds after on the usable labels, each scoring the
    payments until the next fit."""
    x = handbook_reference.handbook_features(
        replayed.event_time,
        replayed.card,
        replayed.terminal,
        replayed.features[:, Replayed.column("amount_eur")],
        replayed.is_fraud,
        delay_days=delay / DAY,
    )
    out = {RANDOM_FOREST: np.zeros(len(replayed)), LOGISTIC: np.zeros(len(replayed))}
    fits = {
        RANDOM_FOREST: handbook_reference.fit_random_forest,
        LOGISTIC: handbook_reference.fit_logistic_regression,
    }
    times = replayed.event_time[test]
    end = float(times.max()) + 1.0 if len(times) else go_live
    at = go_live
    while at < end:
        until = at + retrain_every if retrain_every else end
        scoring = test[(times >= at) & (times < until)]
        rows, y = usable(replayed, at, delay)
        if len(scoring) and 0 < y.sum() < len(y):
            for name, fit in fits.items():
                out[name][scoring] = fit(x[rows], y, seed).predict_proba(x[scoring])[:, 1]
        at = until
    return out


# -------------------------------------------------------------------------------- metrics


def metrics_table(
    replayed: Replayed, scores: dict[str, np.ndarray], rows: np.ndarray, *, k: int
) -> dict[str, dict[str, float]]:
    """Per model, over ``rows``: ROC AUC, AP, mean card precision@k per day, Brier score and
    expected calibration error. ``ceiling`` is card precision@k of a perfect ranking."""
    day = replayed.day[rows]
    truth = replayed.is_fraud[rows]
    card = replayed.card[rows]
    table: dict[str, dict[str, float]] = {}
    for name, score in {**scores, "ceiling": replayed.is_fraud.astype(np.float64)}.items():
        s = score[rows]
        row: dict[str, float] = {}
        if name != "ceiling":
            row |= ranking_metrics(truth, s)
            row |= calibration_metrics(truth, s)
        cp = card_precision_at_k(day, card, s, truth, k)
        row[f"card_precision_at_{k}"] = float(cp.mean()) if len(cp) else float("nan")
        cp = handbook_card_precision_at_k(day, card, s, truth, k)
        row[f"handbook_card_precision_at_{k}"] = float(cp.mean()) if len(cp) else float("nan")
        table[name] = row
    return table


# ----------------------------------------------------------------------------- evaluation


def evaluate(
    events: Events,
    truth: dict[str, str | None],
    description: str,
    *,
    seed: int,
    go_live_day: int,
    label_delay: timedelta = timedelta(days=7),
    variants: list[Variant] | None = None,
    shipped: Variant = Variant(),
    family: train.Family = train.DEFAULT_FAMILY,
    publish_every: int = 500,
    retrain_every: timedelta | None = timedelta(days=7),
    k: int = 100,
    references: bool = True,
    progress: bool = False,
) -> Evaluation:
    """Steps 2 to 5 of the module docstring on one stream."""
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = seconds.get(name, 0.0) + now - clock
        clock = now

    replayed = replay_stream(events, truth, progress=progress)
    if not len(replayed):
        raise ValueError(f"evaluate: the stream {description} has no payments")
    lap("replay")
    delay = label_delay.total_seconds()
    go_live = (np.floor(replayed.event_time.min() / DAY) + go_live_day) * DAY
    test = np.flatnonzero(replayed.event_time >= go_live)
    if not len(test):
        raise ValueError(
            f"evaluate: no payment on or after go-live day {go_live_day} in {description}; "
            "give a smaller --go-live-day or a longer stream"
        )
    # From go-live on: every payment scored, every label reported after go-live learned.
    schedule = replayed.schedule
    label_row = -1 - schedule
    keep = np.where(
        schedule >= 0,
        replayed.event_time[np.maximum(schedule, 0)] >= go_live,
        replayed.reported_at[np.maximum(label_row, 0)] > go_live,
    )
    schedule = schedule[keep]
    scores: dict[str, np.ndarray] = {}
    runs: dict[str, OnlineRun] = {}
    with tempfile.TemporaryDirectory(prefix="payscore-eval-") as folder:
        model_dir = Path(folder)
        key = secrets.token_bytes(signing.KEY_BYTES)  # versions live and die in this folder
        rows = training_rows(replayed, *usable(replayed, go_live, delay))
        start = train.train_rows(
            rows, model_dir, key=key, seed=seed, validation_days=VALIDATION_DAYS, family=family
        )
        del rows
        lap("pre-training")
        retrainer = Retrainer(replayed, delay, model_dir, key, family, seed)
        for variant in variants or [shipped]:
            name = variant.name(shipped)
            run = run_online(
                replayed,
                start,
                publish_every,
                schedule=schedule,
                learn=variant.online,
                balanced=variant.balance,
                retrain=retrainer if variant.retrain and retrain_every else None,
                retrain_every=retrain_every or timedelta(days=7),
                progress=progress,
            )
            scores[name], runs[name] = run.scores, run
            lap(name)
    scores[FROZEN] = score_frozen(replayed, start, test, progress=progress)
    lap(FROZEN)
    if references:
        every = retrain_every.total_seconds() if retrain_every else None
        scores |= reference_scores(replayed, test, go_live, delay, every, seed)
        lap("references")
    settings = {
        "stream": description,
        "seed": seed,
        "go_live": datetime.fromtimestamp(go_live, UTC).isoformat(),
        "go_live_day": go_live_day,
        "label_delay_days": delay / DAY,
        "family": family,
        "publish_every": publish_every,
        "retrain": "never"
        if retrain_every is None
        else f"every {retrain_every.total_seconds() / DAY:g} days of event time",
        "k": k,
        "start_version_metrics": start.metadata.metrics,
        "start_rows": start.metadata.rows,
    }
    table = metrics_table(replayed, scores, test, k=k)
    for name, run in runs.items():
        table[name] |= {
            "labels_learned": float(run.labels_learned),
            "labels_per_second": run.labels_per_second,
            "versions_published": float(run.versions_published),
            "retrained": float(run.retrained),
            "retrains_refused": float(run.refused),
        }
    lap("metrics")
    return Evaluation(settings, replayed, test, scores, table, runs, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m model_state.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stream", choices=STREAMS, default="handbook")
    source.add_argument("--history", type=Path, nargs="+", help="files or folders of history")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="one run per seed")
    parser.add_argument("--days", type=int, default=70, help="days of simulated stream")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="customers (handbook: 5000) or cards (generator: 3000)",
    )
    parser.add_argument("--go-live-day", type=int, default=42)
    parser.add_argument(
        "--label-delay-days",
        type=float,
        default=7.0,
        help="labels this long after their payment; also: an unlabelled payment this old counts "
        "as legitimate for training",
    )
    parser.add_argument(
        "--generator-delays",
        action="store_true",
        help="with --stream generator: keep the generator's own label delays",
    )
    parser.add_argument("--online", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--retrain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--ablation", action="store_true", help="also run with each moving part switched off"
    )
    parser.add_argument("--family", choices=train.FAMILIES, default=train.DEFAULT_FAMILY)
    parser.add_argument("--publish-every", type=int, default=500, help="labels per version")
    parser.add_argument("--retrain-days", type=float, default=7.0, help="0: never")
    parser.add_argument("--top-k", type=int, default=100, help="cards checked a day")
    parser.add_argument("--out", type=Path, default=Path("reports/evaluation"))
    args = parser.parse_args(argv)
    if args.label_delay_days < 0:
        parser.error(f"--label-delay-days must be >= 0; got {args.label_delay_days}")
    from model_state.offline.eval_report import write_report  # matplotlib: the `eval` extra

    shipped = Variant(online=args.online, retrain=args.retrain, balance=args.balance)
    variants = ablations(shipped) if args.ablation else [shipped]
    delay = timedelta(days=args.label_delay_days)
    started = time.perf_counter()
    evaluations = []
    for seed in args.seeds if not args.history else args.seeds[:1]:
        if args.history:
            events, truth, text = history_stream(args.history)
        else:
            size = args.size or (5000 if args.stream == "handbook" else 3000)
            events, truth, text = named_stream(
                args.stream, seed, args.days, size, delay, own_delays=args.generator_delays
            )
        evaluation = evaluate(
            events,
            truth,
            text,
            seed=seed,
            go_live_day=args.go_live_day,
            label_delay=delay,
            variants=variants,
            shipped=shipped,
            family=args.family,
            publish_every=args.publish_every,
            retrain_every=timedelta(days=args.retrain_days) if args.retrain_days > 0 else None,
            k=args.top_k,
            progress=True,
        )
        print(f"\n{text}\n{format_table(evaluation.table, args.top_k)}", flush=True)
        evaluations.append(evaluation)
    command = " ".join(["python -m model_state.evaluate", *sys.argv[1:]] if argv is None else
                       ["python -m model_state.evaluate", *argv])  # fmt: skip
    report = write_report(evaluations, args.out, command, time.perf_counter() - started)
    if len(evaluations) > 1:
        mean = mean_table([e.table for e in evaluations])
        print(f"\nmean over seeds {args.seeds}\n{format_table(mean, args.top_k)}")
    print(f"\nreport: {report} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
