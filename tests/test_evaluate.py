"""The evaluation: its metrics, the label delay it applies, and a small run end to end."""

from __future__ import annotations

import itertools
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel, Payment
from model_state import artifact
from model_state.label_kinds import LabelKind, sampled
from model_state.learner import OnlineLearner
from model_state.offline.eval_metrics import (
    card_precision_at_k,
    handbook_card_precision_at_k,
    ranking_metrics,
    weekly_average_precision,
)
from model_state.offline.eval_stream import (
    Replayed,
    learning_schedule,
    replay_stream,
    with_label_delay,
)
from model_state.offline.eval_streams import StreamSpec, replayed
from model_state.offline.evaluate import evaluate, main, metrics_table, run_online, usable
from model_state.offline.train import new_model
from storage.labels import LabelledPayment
from test_data.drift import NEW_PATTERN
from tests.builders import model_metadata

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

# ---------------------------------------------------------------- card precision@k, table-driven

# (case, k, rows as (day, card, score, is_fraud), expected precision per day)
CASES = [
    (
        "top k holds every compromised card",
        2,
        [(0, 1, 0.9, 1), (0, 2, 0.8, 1), (0, 3, 0.1, 0)],
        [1.0],
    ),
    ("one hit in the top k", 2, [(0, 1, 0.9, 1), (0, 2, 0.8, 0), (0, 3, 0.1, 1)], [0.5]),
    (
        "a card counts once, at its highest score",
        2,
        [(0, 1, 0.9, 0), (0, 1, 0.2, 1), (0, 2, 0.8, 0), (0, 3, 0.1, 1)],
        [0.5],
    ),
    (
        "a card's fraud counts on the day it happened",
        1,
        [(0, 1, 0.9, 0), (1, 1, 0.9, 1), (1, 2, 0.1, 0)],
        [0.0, 1.0],
    ),
    ("a day without fraud scores 0", 2, [(0, 1, 0.9, 0), (0, 2, 0.8, 0), (0, 3, 0.7, 0)], [0.0]),
    (
        "fewer cards than k: share over the cards there are",
        100,
        [(0, 1, 0.9, 1), (0, 2, 0.1, 0)],
        [0.5],
    ),
    (
        "tie at the k-th place: tied cards fill the last places by their fraud share",
        2,
        [(0, 1, 0.9, 1), (0, 2, 0.5, 1), (0, 3, 0.5, 0), (0, 4, 0.5, 0)],
        [(1 + 1 / 3) / 2],
    ),
    (
        "all tied: the fraud share of the cards",
        2,
        [(0, 1, 0.5, 1), (0, 2, 0.5, 0), (0, 3, 0.5, 0), (0, 4, 0.5, 0)],
        [0.25],
    ),
    (
        "ties above the k-th place change nothing",
        2,
        [(0, 1, 0.9, 1), (0, 2, 0.9, 0), (0, 3, 0.5, 1)],
        [0.5],
    ),
    ("k = 1 picks the single highest card", 1, [(0, 1, 0.2, 1), (0, 2, 0.3, 0)], [0.0]),
]


@pytest.mark.parametrize(("case", "k", "rows", "expected"), CASES, ids=[c[0] for c in CASES])
def test_card_precision_at_k(case: str, k: int, rows: list, expected: list[float]) -> None:
    day, card, score, fraud = (np.array(column) for column in zip(*rows, strict=True))
    got = card_precision_at_k(day, card, score, fraud.astype(bool), k)
    assert got == pytest.approx(expected)
    # The order of the payments does not matter.
    order = np.random.default_rng(0).permutation(len(rows))
    again = card_precision_at_k(day[order], card[order], score[order], fraud[order] == 1, k)
    assert again == pytest.approx(expected)


def test_card_precision_at_k_rejects_bad_input() -> None:
    one = np.array([0])
    with pytest.raises(ValueError, match="k must be >= 1 card a day; got 0"):
        card_precision_at_k(one, one, one, one.astype(bool), k=0)
    with pytest.raises(ValueError, match=r"one value per payment; got lengths 1, 1, 2, 1"):
        card_precision_at_k(one, one, np.array([0.1, 0.2]), one.astype(bool), k=1)
    with pytest.raises(ValueError, match="must not be NaN"):
        card_precision_at_k(one, one, np.array([math.nan]), one.astype(bool), k=1)


def _brute_force(rows: list[tuple[int, int, float, bool]], k: int) -> list[float]:
    """Every tie order enumerated: the mean precision over them (the expectation)."""
    out = []
    for d in sorted({r[0] for r in rows}):
        best: dict[int, float] = {}
        hit: dict[int, bool] = {}
        for day, card, score, fraud in rows:
            if day == d:
                best[card] = max(best.get(card, -math.inf), score)
                hit[card] = hit.get(card, False) or fraud
        cards = list(best)
        orders = [
            p
            for p in itertools.permutations(cards)
            if all(best[a] >= best[b] for a, b in itertools.pairwise(p))
        ]
        top = min(k, len(cards))
        out.append(sum(sum(hit[c] for c in p[:top]) / top for p in orders) / len(orders))
    return out


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 5),
            st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9]),
            st.booleans(),
        ),
        min_size=1,
        max_size=14,
    ),
    k=st.integers(1, 4),
)
def test_card_precision_at_k_is_the_expectation_over_tie_orders(
    rows: list[tuple[int, int, float, bool]], k: int
) -> None:
    day, card, score, fraud = (np.array(c) for c in zip(*rows, strict=True))
    got = card_precision_at_k(day, card, score, fraud.astype(bool), k)
    assert got == pytest.approx(_brute_force(rows, k))


def test_ranking_metrics_need_both_classes() -> None:
    assert math.isnan(ranking_metrics(np.array([True, True]), np.array([0.1, 0.2]))["roc_auc"])
    m = ranking_metrics(np.array([False, True, False]), np.array([0.1, 0.9, 0.2]))
    assert m == {"roc_auc": 1.0, "average_precision": 1.0}


def test_weekly_average_precision_groups_days_by_seven() -> None:
    day = np.array([0, 6, 7, 13, 14])
    score = np.array([0.9, 0.1, 0.2, 0.8, 0.5])
    fraud = np.array([True, False, True, False, False])
    weeks, ap = weekly_average_precision(day, score, fraud)
    assert weeks.tolist() == [0, 1, 2]
    assert ap[:2].tolist() == [1.0, 0.5]
    assert math.isnan(ap[2])


# ---------------------------------------------------------------- the label delay


def _payment(i: int, card: int, minutes: float) -> Payment:
    return Payment(
        transaction_id=f"t-{i}",
        card_id=f"c-{card}",
        merchant_id=f"m-{i % 2}",
        terminal_id=f"p-{i % 3}",
        amount_minor=500 + 137 * i,
        currency="EUR",
        mcc="5411",
        channel="pos",
        country="FR",
        event_time=T0 + timedelta(minutes=minutes),
    )


payment_specs = st.lists(
    st.tuples(
        st.integers(0, 3),  # card
        st.integers(0, 30 * 24 * 60),  # event time, minutes
        st.integers(0, 12),  # minutes late on arrival
        st.none() | st.booleans(),  # verdict (None: never labelled)
    ),
    min_size=1,
    max_size=30,
)


def _arrival_ordered(specs: list[tuple[int, int, int, bool | None]]) -> list[Payment]:
    ordered = sorted(enumerate(specs), key=lambda item: (item[1][1] + item[1][2], item[0]))
    return [_payment(i, card, minutes) for i, (card, minutes, _, _) in ordered]


class SpyLearner(OnlineLearner):
    """Records every example it learns."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.seen: list[LabelledPayment] = []

    def learn(self, example: LabelledPayment, *args: Any, **kwargs: Any) -> None:
        self.seen.append(example)
        super().learn(example, *args, **kwargs)


def _start() -> artifact.ModelArtifact:
    model = new_model()
    rng = random.Random(3)
    for _ in range(200):
        x = {name: rng.random() for name in FEATURE_NAMES}
        model.learn_one(x, x["amount_eur"] > 0.8)
    return artifact.ModelArtifact(model, model_metadata(rows=200, frauds=40), b"")


START = _start()


def _clock(replayed: Replayed) -> dict[int, float]:
    """Each payment row's stream clock: the latest event time up to and including it."""
    clock, seen = {}, -math.inf
    for entry in replayed.schedule.tolist():
        if entry >= 0:
            seen = max(seen, replayed.event_time[entry])
            clock[entry] = seen
    return clock


@settings(max_examples=120, deadline=None)
@given(specs=payment_specs, delay_minutes=st.integers(0, 10 * 24 * 60), every=st.integers(1, 4))
def test_a_label_is_learned_exactly_when_the_clock_reaches_its_delay(
    specs: list[tuple[int, int, int, bool | None]], delay_minutes: int, every: int
) -> None:
    payments = _arrival_ordered(specs)
    verdicts = {
        f"t-{i}": verdict for i, (_, _, _, verdict) in enumerate(specs) if verdict is not None
    }
    delay = timedelta(minutes=delay_minutes)
    replayed = replay_stream(with_label_delay(payments, verdicts, delay), {})
    clock = _clock(replayed)
    position = {entry: n for n, entry in enumerate(replayed.schedule.tolist())}
    learned_rows = [-1 - e for e in replayed.schedule.tolist() if e < 0]
    assert len(learned_rows) == len(set(learned_rows))  # at most once
    for row in learned_rows:
        available = replayed.event_time[row] + delay.total_seconds()
        assert replayed.reported_at[row] == pytest.approx(available)
        assert replayed.verdict[row] == verdicts[replayed.transaction_ids[row]]
        learned_at = position[-1 - row]
        for p, t in clock.items():
            if position[p] > learned_at:
                assert t >= available  # never learned before it is available ...
            elif position[p] > position[row]:
                assert t < available  # ... nor later than it must be
    # A label due before the stream ends is learned; one due later never comes.
    last = max(clock.values())
    for row, txn in enumerate(replayed.transaction_ids):
        due = replayed.event_time[row] + delay.total_seconds()
        assert (row in learned_rows) == (txn in verdicts and due <= last and row != len(clock) - 1)

    # The online run learns exactly these labels in this order, each before the payments after it.
    spy = SpyLearner(START, every)
    run = run_online(replayed, START, every, learner=spy)
    assert [e.transaction_id for e in spy.seen] == [
        replayed.transaction_ids[r] for r in learned_rows
    ]
    for p, t in clock.items():
        assert all(e.reported_at <= t for e in spy.seen[: run.learned_before[p]])
    assert run.versions_published == len(learned_rows) // every


@settings(max_examples=80, deadline=None)
@given(
    specs=payment_specs,
    delay_minutes=st.integers(0, 10 * 24 * 60),
    every_days=st.integers(1, 9),
)
def test_a_retrain_learns_only_labels_learnable_before_it_and_scoring_goes_on_from_it(
    specs: list[tuple[int, int, int, bool | None]], delay_minutes: int, every_days: int
) -> None:
    payments = _arrival_ordered(specs)
    verdicts = {f"t-{i}": v for i, (_, _, _, v) in enumerate(specs) if v is not None}
    replayed = replay_stream(
        with_label_delay(payments, verdicts, timedelta(minutes=delay_minutes)), {}
    )
    calls: list[datetime] = []
    champions: list[str] = []

    def retrain(
        now: datetime, champion: artifact.ModelArtifact, *live: np.ndarray
    ) -> artifact.ModelArtifact:
        calls.append(now)
        champions.append(champion.version)
        untrained = new_model()  # scores 0.5 whatever the payment
        version = f"v{len(calls) + 1:05d}"
        return artifact.ModelArtifact(untrained, model_metadata(version, origin="retrained"), b"")

    every = timedelta(days=every_days)
    run = run_online(replayed, START, 10_000, retrain=retrain, retrain_every=every)
    # A retrain happens at the first payment on or after each boundary a payment reaches ...
    first = float(replayed.event_time.min())
    learned: list[int] = []
    expected: list[tuple[list[int], float]] = []
    boundary = first + every.total_seconds()
    retrained_at: dict[int, bool] = {}
    for entry in replayed.schedule.tolist():
        if entry < 0:
            learned.append(-1 - entry)
            continue
        now = float(replayed.event_time[entry])
        if now >= boundary:
            expected.append((list(learned), now))
            while boundary <= now:
                boundary += every.total_seconds()
        retrained_at[entry] = bool(expected)
    assert [now.timestamp() for now in calls] == [now for _, now in expected]
    # ... after every label reported by then was learned, and none reported later ...
    at = {float(replayed.event_time[e]): e for e in reversed(replayed.schedule.tolist()) if e >= 0}
    for rows, now in expected:
        assert run.learned_before[at[now]] == len(rows)
        assert all(replayed.reported_at[r] <= now for r in rows)
    # ... and every later payment is scored by the retrained version.
    assert all(run.scores[row] == 0.5 for row, after in retrained_at.items() if after)
    assert run.retrained == len(calls)
    assert run.versions[1 : 1 + len(calls)] == [f"v{i + 2:05d}" for i in range(len(calls))]
    # Each challenger meets the version scoring at the time: the last one retrained.
    assert champions == [START.version, *run.versions[1 : len(calls)]][: len(calls)]


@settings(max_examples=120, deadline=None)
@given(
    specs=payment_specs,
    labels=st.lists(
        st.tuples(st.integers(0, 35), st.booleans(), st.booleans(), st.integers(0, 40)),
        max_size=40,
    ),
)
def test_labels_in_the_stream_are_learned_once_after_their_payment(
    specs: list[tuple[int, int, int, bool | None]],
    labels: list[tuple[int, bool, bool, int]],
) -> None:
    """Generator delays: labels come in the stream, early, late, twice, unknown, wrong card."""
    stream: list[Payment | FraudLabel] = list(_arrival_ordered(specs))
    cards = {f"t-{i}": f"c-{card}" for i, (card, _, _, _) in enumerate(specs)}
    for txn, fraud, wrong_card, where in labels:
        label = FraudLabel(
            transaction_id=f"t-{txn}",
            card_id="c-other" if wrong_card else cards.get(f"t-{txn}", "c-0"),
            is_fraud=fraud,
            reported_at=T0 + timedelta(days=40),
        )
        stream.insert(min(where, len(stream)), label)
    replayed = replay_stream(stream, {})
    spy = SpyLearner(START, 2)
    run_online(replayed, START, 2, learner=spy)
    learned = [e.transaction_id for e in spy.seen]
    assert len(learned) == len(set(learned))
    scored_before: set[str] = set()
    first_label: dict[str, FraudLabel] = {}  # the first a join accepts
    for event in stream:
        if isinstance(event, Payment):
            scored_before.add(event.transaction_id)
        elif (
            event.transaction_id in scored_before
            and event.transaction_id not in first_label
            and event.card_id == cards[event.transaction_id]
        ):
            first_label[event.transaction_id] = event
    expected = list(first_label)
    assert sorted(learned) == sorted(expected)
    assert replayed.skipped_labels == len(labels) - len(learned)


@settings(max_examples=120, deadline=None)
@given(
    specs=payment_specs,
    delay_minutes=st.integers(0, 10 * 24 * 60),
    at_minutes=st.integers(0, 31 * 24 * 60),
)
def test_a_model_trained_at_a_time_learns_only_what_it_could_know(
    specs: list[tuple[int, int, int, bool | None]], delay_minutes: int, at_minutes: int
) -> None:
    payments = _arrival_ordered(specs)
    verdicts = {f"t-{i}": v for i, (_, _, _, v) in enumerate(specs) if v is not None}
    delay = timedelta(minutes=delay_minutes)
    replayed = replay_stream(with_label_delay(payments, verdicts, delay), {})
    at = (T0 + timedelta(minutes=at_minutes)).timestamp()
    rows, y = usable(replayed, at, delay.total_seconds())
    assert len(rows) == len(y)
    for r, fraud in zip(rows.tolist(), y.tolist(), strict=True):
        assert replayed.event_time[r] < at  # made before
        if replayed.verdict[r] >= 0 and replayed.reported_at[r] <= at:  # its label, as reported
            assert fraud == bool(replayed.verdict[r])
        else:  # no label by then: legitimate once older than the delay, never a fraud
            assert replayed.event_time[r] <= at - delay.total_seconds()
            assert not fraud
    # Nothing usable is left out.
    for r in range(len(replayed)):
        made = replayed.event_time[r] < at
        known = replayed.verdict[r] >= 0 and replayed.reported_at[r] <= at
        old = replayed.event_time[r] <= at - delay.total_seconds()
        assert (r in rows.tolist()) == bool(made and (known or old))


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay must be >= 0; got -1 day"):
        list(with_label_delay([], {}, timedelta(days=-1)))


# ---------------------------------------------------------------- end to end


def test_metrics_table_has_every_model_and_the_ceiling() -> None:
    payments = [_payment(i, i % 3, i * 600) for i in range(40)]
    truth = {f"t-{i}": "card_testing" for i in (3, 17, 30)}
    replayed = replay_stream(payments, truth)
    score = replayed.is_fraud * 0.5 + 0.1
    rows = np.arange(len(replayed))
    table = metrics_table(replayed, {"a": score, "b": np.full(len(replayed), 0.3)}, rows, k=2)
    assert set(table) == {"a", "b", "ceiling"}
    assert table["a"]["average_precision"] == 1.0
    assert table["ceiling"]["card_precision_at_2"] == table["a"]["card_precision_at_2"]


def test_evaluation_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    main(
        [
            "--stream", "generator", "--size", "300", "--days", "30", "--go-live-day", "17",
            "--seeds", "3", "4", "--label-delay-days", "7", "--publish-every", "200",
            "--top-k", "20", "--ablation", "--out", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    for model in ("online", "online, no SGD", "online, no retrain", "online, no balance guard",
                  "frozen", "RF (handbook features)", "LR (handbook features)"):  # fmt: skip
        assert f"| {model} |" in printed
    assert "mean over 2 streams" in printed
    for name in ("report.md", "metrics.json", "precision_recall.png", "reliability.png",
                 "scores-0.npz", "scores-1.npz"):  # fmt: skip
        assert (out / name).stat().st_size > 0
    assert (out / "metrics_over_time.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "metrics.json").read_text())
    assert len(saved["runs"]) == 2
    for run in saved["runs"]:
        online = run["metrics"]["online"]
        assert 0.0 <= online["average_precision"] <= 1.0
        assert 0.0 <= online["brier"] <= 1.0 and 0.0 <= online["ece"] <= 1.0
        assert online["labels_learned"] > 0 and online["labels_per_second"] > 0
        assert run["metrics"]["online, no SGD"]["labels_learned"] == 0
        assert run["metrics"]["online, no retrain"]["retrained"] == 0
        assert run["stream"]["payments_from_go_live"] < run["stream"]["payments"]
    assert "average_precision_sd" in saved["mean"]["online"]


def _handbook_cp_brute(rows: list[tuple[int, int, float, bool]], k: int) -> list[float]:
    """The handbook's definition, directly: per day, cards not found before, by best score."""
    found: set[int] = set()
    out = []
    for d in sorted({r[0] for r in rows}):
        best: dict[int, float] = {}
        hit: dict[int, bool] = {}
        for day, card, score, fraud in rows:
            if day == d and card not in found:
                best[card] = max(best.get(card, -math.inf), score)
                hit[card] = hit.get(card, False) or fraud
        top = sorted(best, key=lambda c: (-best[c], c))[:k]
        detected = [c for c in top if hit[c]]
        out.append(len(detected) / k)
        found.update(detected)
    return out


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 9), st.sampled_from([0.1, 0.5, 0.9, 0.3]),
                  st.booleans()),
        min_size=1, max_size=60,
    ),
    k=st.integers(1, 5),
    seed=st.integers(0, 1000),
)  # fmt: skip
def test_handbook_card_precision_is_the_handbooks_definition_in_any_row_order(
    rows: list[tuple[int, int, float, bool]], k: int, seed: int
) -> None:
    shuffled = rows.copy()
    random.Random(seed).shuffle(shuffled)
    day, card, score, fraud = (np.array(c) for c in zip(*shuffled, strict=True))
    got = handbook_card_precision_at_k(day, card, score, fraud.astype(bool), k)
    assert got.tolist() == pytest.approx(_handbook_cp_brute(rows, k))
    assert ((got >= 0) & (got <= 1)).all()


# ---------------------------------------------------------------- labels as banks send them


class KindSpy(OnlineLearner):
    """Records every label it learns with its kind and weight."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.seen: list[tuple[str, str, float, float]] = []

    def learn(self, example: LabelledPayment, *args: Any, **kwargs: Any) -> None:
        kind = kwargs.get("kind", LabelKind.EXPLICIT)
        self.seen.append((example.transaction_id, kind.value, kwargs.get("weight", 1.0),
                          example.reported_at))  # fmt: skip
        super().learn(example, *args, **kwargs)


@settings(max_examples=120, deadline=None)
@given(
    specs=payment_specs,
    report_minutes=st.integers(0, 20 * 24 * 60),
    implicit_minutes=st.integers(1, 12 * 24 * 60),
    rate=st.sampled_from([1.0, 0.5, 0.2]),
)
def test_implicit_negatives_are_learned_once_and_late_frauds_as_corrections(
    specs: list[tuple[int, int, int, bool | None]],
    report_minutes: int,
    implicit_minutes: int,
    rate: float,
) -> None:
    """Frauds only, reported a while after their payment; a payment with no report within the
    label delay is learned as legitimate once; a fraud reported later is a correction."""
    payments = _arrival_ordered(specs)
    frauds = {f"t-{i}": True for i, (_, _, _, v) in enumerate(specs) if v}
    replayed = replay_stream(
        with_label_delay(payments, frauds, timedelta(minutes=report_minutes)), {}
    )
    delay = implicit_minutes * 60.0
    schedule = learning_schedule(replayed, delay)
    spy = KindSpy(START, 3)
    run = run_online(
        replayed, START, 3, schedule=schedule, implicit_after=delay, learner=spy, sample_rate=rate
    )
    clock = _clock(replayed)
    last = max(clock.values())
    seen = {}
    for txn, kind, weight, reported in spy.seen:
        assert (txn, kind) not in seen, "a label of a kind is learned once"
        seen[txn, kind] = (weight, reported)
    for row, txn in enumerate(replayed.transaction_ids):
        due = replayed.event_time[row] + delay
        reported = replayed.reported_at[row]  # NaN: no report came
        in_time = reported <= due
        implicit_due = not in_time and due <= last and row != len(clock) - 1
        kept = sampled(txn, rate)
        # implicit: exactly the payments with no report by the label delay (if kept)
        assert ((txn, "implicit") in seen) == (implicit_due and kept)
        if (txn, "implicit") in seen:
            assert seen[txn, "implicit"] == (pytest.approx(1 / rate), pytest.approx(due))
        # a fraud reported after it was learned as legitimate is a correction, every one
        if replayed.verdict[row] == 1:
            assert ((txn, "correction") in seen) == implicit_due
            assert ((txn, "explicit") in seen) == (not implicit_due)
            assert all(w == 1.0 for (t, k), (w, _) in seen.items() if t == txn and k != "implicit")
    assert run.kinds.get("correction", 0) == sum(1 for _, k in seen if k == "correction")
    assert run.labels_learned == len(spy.seen)
    assert run.learned_after_last_payment == 0  # nothing comes after the last payment here


def test_a_legitimate_label_after_an_implicit_negative_is_a_duplicate() -> None:
    payments = [_payment(i, 0, i * 24 * 60) for i in range(6)]
    stream = list(with_label_delay(payments, {"t-0": False}, timedelta(days=3)))
    replayed = replay_stream(stream, {})
    schedule = learning_schedule(replayed, 1 * 86_400.0)
    spy = KindSpy(START, 100)
    run = run_online(replayed, START, 100, schedule=schedule, implicit_after=86_400.0, learner=spy)
    assert [(t, k) for t, k, _, _ in spy.seen if t == "t-0"] == [("t-0", "implicit")]
    assert run.duplicates == 1


def _evaluated(cache: Path | None) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    spec = StreamSpec("handbook", 5, days=30, size=150)
    stream = replayed(spec, cache)
    result = evaluate(
        stream, spec.describe(), seed=5, go_live_day=18, publish_every=60,
        retrain_every=timedelta(days=4), k=10, cache=cache,
        stream_key=spec.key() if cache else "",
    )  # fmt: skip
    return result.scores, result.table


def test_a_cached_evaluation_gives_the_figures_of_a_fresh_one(tmp_path: Path) -> None:
    """The replay, the fits and the references' scores read back from the cache give every
    score bit for bit (timings and rates aside)."""
    cache = tmp_path / "cache"
    fresh = _evaluated(None)
    cold = _evaluated(cache)
    assert len(list(cache.glob("replay-*.npz"))) == 1 and list(cache.glob("fit-*.pickle"))
    warm = _evaluated(cache)
    timing = {"labels_per_second"}
    for scores, table in (cold, warm):
        assert scores.keys() == fresh[0].keys()
        for name, values in fresh[0].items():
            np.testing.assert_array_equal(scores[name], values, err_msg=name)
        for model, row in fresh[1].items():
            assert {k: v for k, v in table[model].items() if k not in timing} == {
                k: v for k, v in row.items() if k not in timing
            }


def test_a_replay_read_from_the_cache_is_the_fresh_replay(tmp_path: Path) -> None:
    spec = StreamSpec("handbook", 2, days=10, size=80, labels="frauds", drift_start_day=6)
    fresh = replayed(spec, None)
    replayed(spec, tmp_path)
    again = replayed(spec, tmp_path)
    for name in ("features", "is_fraud", "event_time", "card", "terminal", "verdict",
                 "reported_at", "schedule", "scenario"):  # fmt: skip
        np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name), err_msg=name)
    assert again.transaction_ids == fresh.transaction_ids and again.card_ids == fresh.card_ids
    assert again.scenario_names == fresh.scenario_names and NEW_PATTERN in fresh.scenario_names
    assert (fresh.verdict != 0).all()  # frauds only: no legitimate label


def test_frauds_only_with_drift_reports_the_new_pattern_and_the_labels_by_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            "--stream", "handbook", "--size", "150", "--days", "30", "--go-live-day", "18",
            "--seeds", "5", "--publish-every", "60", "--retrain-days", "4", "--top-k", "10",
            "--labels", "frauds", "--implicit-days", "3", "--drift", "20", "--no-references",
            "--no-cache", "--out", str(tmp_path / "frauds"),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "frauds only, reported 1 to 60 days after" in printed
    assert "implicit" in printed and "in time to matter" in printed
    assert "days to half in top 10" in printed
    saved = json.loads((tmp_path / "frauds" / "metrics.json").read_text())["runs"][0]
    assert saved["metrics"]["online"]["learned_implicit"] > 0
    assert set(saved["drift"]) >= {"online", "frozen"}
    assert len(saved["weekly_average_precision"]["online"]) == 2  # days 18-24 and 25-29


def test_the_gate_scores_a_payment_made_before_go_live_by_the_champions_lineage_root(
    tmp_path: Path,
) -> None:
    """A champion published by the learner (a delta on its root) is judged on the hold-out's
    unscored payments by its root, the version before any online step; a root by itself."""
    import msgspec

    from model_state.offline.evaluate import FitCache, Retrainer

    went_live = artifact.ModelArtifact(new_model(), model_metadata("v00001"), b"")
    stream = replayed(StreamSpec("handbook", 7, days=2, size=20), None)
    retrainer = Retrainer(
        stream, 7 * 86_400.0, tmp_path, b"k" * 32, "linear", 7, FitCache(None, ""),
        went_live=went_live,
    )  # fmt: skip
    online = artifact.ModelArtifact(
        new_model(),
        msgspec.structs.replace(
            model_metadata("v00001.000004"), base_version="v00001", origin="online"
        ),
        b"",
    )
    assert retrainer.root_of(online) is went_live
    assert retrainer.root_of(went_live) is went_live
    other = artifact.ModelArtifact(new_model(), model_metadata("v00009"), b"")
    assert retrainer.root_of(other) is None  # not a version this evaluation made


def test_the_previous_step_runs_as_a_whole_run_with_that_step_would(tmp_path: Path) -> None:
    """``--previous-step`` adds the online model with the step it had before issue 22 item 4
    beside the shipped one: its scores are those of a run made with that step
    (``--online-optimizer sgd:0.0003 --no-hold-forest``: the same fits, retrains and gate), and
    the shipped run's are its own."""
    common = [
        "--stream", "generator", "--size", "300", "--days", "30", "--go-live-day", "17",
        "--seeds", "3", "--publish-every", "200", "--top-k", "20", "--no-references",
        "--drift", "--cache", str(tmp_path / "cache"), "--no-judge", "--hold-forest",
        "--online-optimizer", "adagrad:0.05",
    ]  # fmt: skip
    # --no-judge: judged, both steps' versions may be refused and score as the same root
    main([*common, "--previous-step", "--out", str(tmp_path / "both")])
    main([*common, "--out", str(tmp_path / "new")])
    main([*common[:-3], "--online-optimizer", "sgd:0.0003", "--no-hold-forest",
          "--out", str(tmp_path / "old")])  # fmt: skip
    both = np.load(tmp_path / "both" / "scores-0.npz")
    new = np.load(tmp_path / "new" / "scores-0.npz")
    old = np.load(tmp_path / "old" / "scores-0.npz")
    assert np.array_equal(both["online, previous step"], old["online"])
    assert np.array_equal(both["online"], new["online"])
    assert not np.array_equal(both["online"], old["online"])
    saved = json.loads((tmp_path / "both" / "metrics.json").read_text())
    assert "roc_auc_other" in saved["runs"][0]["metrics"]["online"]


def test_the_report_gives_the_days_the_judge_first_led_and_adopted(tmp_path: Path) -> None:
    """A lineage that lasts (no retrain) and learns a new pattern from labels a day old: the
    judge finds the learned weights ahead of the root's and scoring takes them, on the days the
    report gives (the first lead never after the first adoption); a step not judged has none."""
    main([
        "--stream", "generator", "--size", "300", "--days", "30", "--go-live-day", "17",
        "--seeds", "3", "--publish-every", "200", "--top-k", "20", "--no-references",
        "--retrain-days", "0", "--label-delay-days", "1", "--online-optimizer", "adagrad:0.05",
        "--hold-forest", "--drift", "--ablation", "--ablation-parts", "judge",
        "--legit-sample-rate", "1",  # every label: the judge needs a lineage's worth of them
        "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    judged = saved["runs"][0]["metrics"]["online"]
    assert judged["versions_adopted"] >= 1
    assert 17 <= judged["first_evidence_day"] <= judged["first_adopted_day"] < 30
    plain = saved["runs"][0]["metrics"]["online, versions not judged"]
    assert "first_adopted_day" not in plain and "first_evidence_day" not in plain
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"own weights from day {judged['first_adopted_day']:.1f}" in report
