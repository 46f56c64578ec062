"""Retraining on the labelled payments stored in MySQL, and the learner going on from it."""

from __future__ import annotations

import contextlib
import pickle
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from dataflows.learning import LearnStep, Lineages, learn_step
from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.learner import OnlineLearner
from model_state.offline import retrain as retrain_module
from model_state.offline import train
from model_state.offline.retrain import (
    DEFAULT_TOLERANCE,
    REFUSED_EXIT_STATUS,
    NotEnoughLabelsError,
    Validation,
    Verdict,
    judge,
    main,
    mature_split,
    retrain,
    validate,
)
from model_state.offline.retrain import record as record_version
from model_state.offline.train import fit, new_model
from settings.config import Config
from storage import shadow
from storage.engine import make_engine
from storage.labels import LabelledPayment
from storage.rows import scored_payment_row
from storage.tables import model_candidates, model_versions, scored_payments
from storage.versions import version_key
from tests.builders import BASE, TEST_KEY, model_metadata, payment
from tests.test_evaluate_model import as_rows, synthetic

X, Y = synthetic(2500, seed=9)
EVERY = timedelta(minutes=10)  # 2,500 payments over about 17 days


def scored_by(model: object) -> np.ndarray:
    """What the flow stored when ``model`` scored X's rows (the scorer's probability)."""
    return np.array(
        train.probabilities(
            model, [dict(zip(FEATURE_NAMES, x, strict=True)) for x in X.tolist()], 1.0
        )
    )


def store(
    engine: Engine, *, labelled: int = 2000, noisy_before: int = 0, scores: np.ndarray | None = None
) -> None:
    """X's rows as scored payments, one every 10 minutes up to BASE, with ``scores`` as the
    probability the flow stored (default 0.1); the first ``labelled`` labelled with Y (those
    before ``noisy_before`` with coin flips instead)."""
    coins = np.random.default_rng(1).random(len(X)) < Y.mean()
    rows = []
    for i, (x, y) in enumerate(zip(X.tolist(), Y.tolist(), strict=True)):
        p = payment(transaction_id=f"t-{i}", event_time=BASE - EVERY * (len(X) - i))
        features = dict(zip(FEATURE_NAMES, x, strict=True))
        if i == 7:
            del features["amount_eur"]  # stored by a build with another catalogue
        row = scored_payment_row(
            p, partition=0, offset=i, features=features,
            probability=0.1 if scores is None else float(scores[i]), decision="approve",
            reasons=(), model_version="v00001.000003", scored_at=BASE,
        )  # fmt: skip
        known = i < labelled
        row |= {
            "label_is_fraud": bool(coins[i] if i < noisy_before else y) if known else None,
            "label_reported_at": BASE.replace(tzinfo=None) if known else None,
        }
        rows.append(row)
    with engine.begin() as c:
        c.execute(scored_payments.insert(), rows)


def times_of(i: int) -> datetime:
    """When :func:`store` says payment ``i`` was made."""
    return BASE - EVERY * (len(X) - i)


def record(engine: Engine, tmp_path: Path, version: str, model: object) -> None:
    """``model`` as the newest version the flow recorded: the champion."""
    saved = artifact.save(
        model, model_metadata(version, origin="online"), tmp_path / "flow", key=TEST_KEY
    )
    record_version(engine, saved, "-")


def trained_linear() -> object:
    return fit(as_rows(X, Y), new_model(), weight=1.0, epochs=2, seed=9)


@pytest.mark.integration
def test_a_challenger_better_than_the_champion_starts_a_new_lineage(
    engine: Engine, models_engine: Engine, tmp_path: Path
) -> None:
    champion = new_model()  # untrained: a coin for a champion
    store(engine, scores=scored_by(champion))
    record(engine, tmp_path, "v00001.000003", champion)
    fitted, verdict = retrain(
        models_engine, tmp_path / "models", key=TEST_KEY, min_frauds=10, family="linear",
        maturity=timedelta(days=7),
    )  # fmt: skip
    assert fitted is not None and verdict.accepted
    assert verdict.challenger_ap > verdict.champion_ap
    m = fitted.metadata
    assert (m.version, m.parent_version, m.origin) == ("v00002", "v00001.000003", "retrained")
    # Compared on the most recent mature labels: the 7 days that end 7 days (the label delay)
    # before the newest stored payment; then learned from every labelled row but the one
    # lacking a feature.
    newest = BASE - EVERY
    times = [BASE - EVERY * (len(X) - i) for i in range(2000) if i != 7]
    stop = newest - timedelta(days=7)
    assert verdict.rows == sum(1 for t in times if stop - timedelta(days=7) <= t < stop)
    learned = [i for i in range(2000) if i != 7 and times_of(i) <= newest - timedelta(days=7)]
    assert (m.rows, m.frauds) == (len(learned), int(Y[learned].sum()))  # mature ones only
    assert m.metrics["average_precision"] == verdict.challenger_ap
    assert m.metrics["champion_average_precision"] == verdict.champion_ap
    assert (
        artifact.load(tmp_path / "models", key=TEST_KEY).version == "v00002"
    )  # where the flow starts from
    with engine.connect() as c:
        stored = c.execute(
            select(model_versions.c.origin, model_versions.c.artifact).where(
                model_versions.c.version == "v00002"
            )
        ).one()
    assert stored.origin == "retrained"
    assert repr(pickle.loads(stored.artifact)) == repr(fitted.model)


def a_worse_challenger(
    engine: Engine, tmp_path: Path, database_config: Config, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Stored rows a retrain can only fit badly, a champion that learned the truth, and the
    retrain command's settings; the model folder it writes to."""
    champion = trained_linear()
    # it learns from coin flips; the champion from the truth, and the flow stored its scores
    store(engine, noisy_before=1400, scores=scored_by(champion))
    record(engine, tmp_path, "v00001.000003", champion)
    key_file = tmp_path / "model.key"
    key_file.write_text(TEST_KEY.hex())
    key_file.chmod(0o600)
    monkeypatch.setenv("PAYSCORE_MODELS_MYSQL_URL", database_config.models_mysql_dsn)
    monkeypatch.setenv("PAYSCORE_MODEL_KEY_FILE", str(key_file))
    return tmp_path / "models"


@pytest.mark.integration
def test_a_challenger_worse_than_the_champion_changes_nothing(
    engine: Engine, tmp_path: Path, database_config: Config, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    models = a_worse_challenger(engine, tmp_path, database_config, monkeypatch)
    with pytest.raises(SystemExit) as refused:
        main(["--min-frauds", "10", "--family", "linear", "--model-dir", str(models),
              "--label-delay-days", "7"])  # fmt: skip
    assert refused.value.code == REFUSED_EXIT_STATUS
    out = capsys.readouterr().out
    assert "retrain refused, the champion stays: average precision on the last" in out
    assert artifact.list_versions(models) == []
    with engine.connect() as c:
        assert c.execute(select(model_versions.c.version)).scalars().all() == ["v00001.000003"]


@pytest.mark.integration
def test_a_refused_challenger_kept_as_a_candidate_changes_no_version(
    engine: Engine, tmp_path: Path, database_config: Config, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """--candidate keeps the retrain, refused by the gate here, where it may shadow the
    champion (model_candidates) and publishes nothing."""
    models = a_worse_challenger(engine, tmp_path, database_config, monkeypatch)
    main(["--min-frauds", "10", "--family", "linear", "--model-dir", str(models), "--candidate",
          "--label-delay-days", "7"])  # fmt: skip
    out = capsys.readouterr().out
    assert "kept v00002 as a candidate" in out and "average precision on the last" in out
    assert artifact.list_versions(models) == []
    with engine.connect() as c:
        assert c.execute(select(model_versions.c.version)).scalars().all() == ["v00001.000003"]
        kept = c.execute(select(model_candidates.c.version, model_candidates.c.verdict)).one()
        assert shadow.fetch_any(c, "v00002") is not None
    assert kept.version == "v00002" and "challenger" in kept.verdict


@pytest.mark.integration
def test_a_forced_retrain_learns_every_row_of_its_window(
    engine: Engine, models_engine: Engine, tmp_path: Path
) -> None:
    store(engine)
    with pytest.raises(NotEnoughLabelsError, match=r"0 labelled payments stored in the last 0"):
        retrain(
            models_engine, tmp_path, key=TEST_KEY, window=timedelta(hours=0), min_frauds=1,
            family="linear",
        )  # fmt: skip
    window = timedelta(minutes=10_000)
    with pytest.raises(NotEnoughLabelsError, match=r"0 of the 501 labelled payments are mature"):
        retrain(
            models_engine, tmp_path, key=TEST_KEY, window=window, min_frauds=1, family="linear",
            force=True,
        )  # fmt: skip
    fitted, verdict = retrain(
        models_engine, tmp_path, key=TEST_KEY, window=window, min_frauds=1, family="linear",
        force=True, maturity=timedelta(0),
    )  # fmt: skip
    assert fitted is not None and str(verdict) == "not compared with the champion (forced)"
    # The newest payment, t-2499, is 10 minutes before BASE: the window starts at t-1499.
    assert fitted.metadata.rows == 2000 - 1499
    assert fitted.version == "v00001"  # nothing recorded yet: the first lineage


@pytest.mark.integration
def test_a_retrain_refuses_too_few_frauds(
    engine: Engine, models_engine: Engine, tmp_path: Path
) -> None:
    store(engine)
    frauds = int(Y[:2000].sum()) - int(Y[7])
    with pytest.raises(NotEnoughLabelsError, match=rf"{frauds} of them frauds; at least 5000"):
        retrain(models_engine, tmp_path, key=TEST_KEY, min_frauds=5000, family="linear")
    assert artifact.list_versions(tmp_path) == []


def labelled(i: int) -> LabelledPayment:
    return LabelledPayment(
        transaction_id=f"t-{i}", card_id="c", merchant_id="m", terminal_id="p",
        payment_time=BASE.timestamp(), reported_at=BASE.timestamp(), is_fraud=i % 3 == 0,
        features=dict(zip(FEATURE_NAMES, X[i].tolist(), strict=True)), scored_by="v00001",
    )  # fmt: skip


def version(name: str, origin: str) -> artifact.ModelArtifact:
    model = new_model()
    return artifact.ModelArtifact(model, model_metadata(name, origin=origin), pickle.dumps(model))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_learner_goes_on_from_a_retrained_version() -> None:
    asked: list[str] = []
    retrained = version("v00002", "retrained")
    newest: list[artifact.ModelArtifact | None] = [None]

    def fetch(after: str | None) -> artifact.ModelArtifact | None:
        asked.append(after)
        return newest[0]

    clock = Clock()
    build = learn_step(
        version("v00001", "pretrained"),
        publish_every=2,
        publish_seconds=60,
        lineages=Lineages(fetch, refresh_seconds=30, clock=clock),
    )
    step: LearnStep = build(None)
    out, _ = step.on_batch([labelled(0), labelled(1)])
    assert [r.metadata.version for r in out] == ["v00001", "v00001.000001"]
    newest[0] = retrained
    clock.now = 10  # not yet time to ask again
    out, _ = step.on_batch([labelled(2), labelled(3)])
    assert [r.metadata.version for r in out] == ["v00001.000002"]
    clock.now = 31
    out, _ = step.on_batch([labelled(4), labelled(5)])
    assert [(r.metadata.version, r.metadata.parent_version) for r in out] == [
        ("v00002.000001", "v00002")
    ]
    # Once when built, then at most every 30 s: the newest version after the learner's own.
    assert asked == ["v00001", "v00001.000002"]
    # Recovery resumes the adopted lineage.
    resumed = build(step.snapshot())
    out, _ = resumed.on_batch([labelled(6), labelled(7)])
    assert [r.metadata.version for r in out] == ["v00002.000002"]


def test_versions_are_ordered_as_numbers_not_as_names() -> None:
    names = ["v00001", "v00001.000999", "v00001.1000000", "v00002", "v00002.000001", "v00010"]
    assert sorted(reversed(names), key=version_key) == names
    learner = OnlineLearner(version("v00002", "retrained"), publish_every=1)
    learner.learn(labelled(0))
    assert learner.publish(datetime.now(UTC)).metadata.version == "v00002.000001"


@pytest.mark.parametrize(
    ("challenger", "champion", "accepted"),
    [(0.80, 0.80, True), (0.795, 0.80, True), (0.79, 0.80, True), (0.789, 0.80, False)],
)
def test_a_challenger_may_rank_below_the_champion_by_the_tolerance(
    challenger: float, champion: float, accepted: bool
) -> None:
    verdict = Verdict(
        champion="v1", challenger_ap=challenger, champion_ap=champion, tolerance=0.01,
        rows=100, frauds=10,
    )  # fmt: skip
    assert verdict.accepted is accepted


# -- the gate: the most recent mature labels, ranked as the flow ranked them ---------------------


def _validated(rows: int = 600, seed: int = 2) -> tuple[train.Rows, Validation]:
    """A validation of a linear challenger on synthetic rows, one every 10 minutes."""
    x, y = synthetic(rows, seed=seed)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    data = [
        (t0 + EVERY * i, dict(zip(FEATURE_NAMES, xi, strict=True)), bool(yi))
        for i, (xi, yi) in enumerate(zip(x.tolist(), y.tolist(), strict=True))
    ]
    now = data[-1][0] + timedelta(hours=12)
    validation = validate(
        data, Path("-"), now=now, maturity=timedelta(hours=12), validation_days=1, family="linear"
    )
    return data, validation


def test_the_hold_out_is_the_most_recent_mature_days() -> None:
    data, validation = _validated()
    now = data[-1][0] + timedelta(hours=12)
    stop = now - timedelta(hours=12)
    expected = [i for i, r in enumerate(data) if stop - timedelta(days=1) <= r[0] < stop]
    assert validation.hold_out_index == expected
    learn, hold_out = mature_split(data, now=now, maturity=timedelta(hours=12), validation_days=1)
    assert hold_out == expected and learn == list(range(expected[0]))


def test_the_champion_is_judged_by_what_the_flow_scored_not_by_what_it_knows_now() -> None:
    """The champion as it is has learned the hold-out's labels since (here: a perfect model, by
    name); what the flow stored when it scored those payments is what it knew then."""
    data, validation = _validated()
    truth = np.array([r[2] for r in data], dtype=float)
    knows_now = np.where(truth > 0, 0.99, 0.01)
    champion = artifact.ModelArtifact(new_model(), model_metadata("v00001.000009"), b"")
    coin = np.random.default_rng(5).random(len(data))
    then = judge(validation, champion, 0.0, live=coin.tolist())
    assert then.champion_ap < validation.average_precision and then.accepted
    better_then = judge(validation, champion, 0.0, live=knows_now.tolist())
    assert better_then.champion_ap == 1.0 and not better_then.accepted
    # a payment scored before the flow went live: the champion scores it as it is
    partial = [None] * len(data)
    assert (
        judge(validation, champion, 0.0, live=partial).champion_ap
        == judge(validation, champion, 0.0).champion_ap
    )


def test_payments_made_before_go_live_are_scored_by_a_version_that_learned_none_of_them() -> None:
    """The first retrain after go-live holds out the last mature week before go-live, whose
    labels the champion learned online since: scored by the champion as it is, it would be
    judged on what it learned there (issue 22). ``unscored`` scores those rows instead; rows
    with a stored probability keep it."""
    data, validation = _validated()
    learned_since = fit(data, new_model(), weight=1.0, epochs=1, seed=0)  # knows the labels
    champion = artifact.ModelArtifact(learned_since, model_metadata("v00001.000009"), b"")
    went_live = artifact.ModelArtifact(new_model(), model_metadata("v00001"), b"")
    before_go_live = [None] * len(data)
    as_it_is = judge(validation, champion, 0.0, live=before_go_live)
    fair = judge(validation, champion, 0.0, live=before_go_live, unscored=went_live)
    assert fair.champion_ap == judge(validation, went_live, 0.0, live=before_go_live).champion_ap
    assert fair.champion_ap < as_it_is.champion_ap
    assert fair.champion == "v00001.000009"  # still the champion's verdict
    stored = np.random.default_rng(5).random(len(data)).tolist()
    assert (
        judge(validation, champion, 0.0, live=stored, unscored=went_live).champion_ap
        == judge(validation, champion, 0.0, live=stored).champion_ap
    )


@pytest.mark.parametrize(
    ("challenger", "champion", "accepted"),
    [(0.80, 0.80, True), (0.8001, 0.80, True), (0.7999, 0.80, False)],
)
def test_by_default_a_challenger_ranking_worse_is_refused(
    challenger: float, champion: float, accepted: bool
) -> None:
    verdict = Verdict(
        champion="v1", challenger_ap=challenger, champion_ap=champion,
        tolerance=DEFAULT_TOLERANCE, rows=100, frauds=10,
    )  # fmt: skip
    assert verdict.accepted is accepted


@settings(max_examples=150, deadline=None)
@given(
    days=st.lists(st.floats(0.0, 80.0), min_size=1, max_size=200),
    frauds=st.lists(st.booleans(), min_size=200, max_size=200),
)
def test_the_warm_up_is_left_out_only_when_enough_frauds_come_after_it(
    days: list[float], frauds: list[bool]
) -> None:
    t = np.array(days) * 86_400.0
    y = np.array(frauds[: len(days)], dtype=bool)
    now, maturity = 70 * 86_400.0, 7 * 86_400.0
    keep = train.training_mask(t, y, first=0.0, now=now, maturity=maturity)
    mature = t <= now - maturity
    after = mature & (t >= train.WARM_UP_DAYS * 86_400.0)
    long_enough = after.any() and np.ptp(t[after]) >= train.WARM_UP_MIN_SPAN_DAYS * 86_400.0
    if int(y[after].sum()) >= train.WARM_UP_MIN_FRAUDS and not y[after].all() and long_enough:
        np.testing.assert_array_equal(keep, after)
    else:
        np.testing.assert_array_equal(keep, mature)  # never a payment younger than the delay


def test_the_warm_up_stays_until_what_comes_after_it_spans_two_weeks() -> None:
    """Many frauds (360 a day): 1,800 mature ones five days after the warm-up do not leave it
    out (a fit of five days would refuse to learn); fifteen days of them do."""
    t = np.arange(0, 60 * 86_400, 60, dtype=np.float64)
    y = np.arange(len(t)) % 4 == 0
    for days_after, left_out in ((5, False), (15, True)):
        now = (train.WARM_UP_DAYS + days_after + 7) * 86_400.0
        keep = train.training_mask(t, y, first=0.0, now=now, maturity=7 * 86_400.0)
        assert bool(keep[t < train.WARM_UP_DAYS * 86_400.0].any()) is not left_out


def test_a_retrain_leaves_out_the_warm_up_of_a_long_history() -> None:
    """60 days of payments, 48 frauds a day: the training set starts 30 days after the first."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(minutes=10)

    def history(days: int) -> train.Rows:
        return [(t0 + step * i, {}, i % 3 == 0) for i in range(days * 144)]

    rows, zero = history(60), timedelta(0)
    end = rows[-1][0]
    kept = train.training_set(rows, first=t0, now=end, maturity=zero)
    assert kept[0][0] == t0 + timedelta(days=30) and len(kept) == 30 * 144
    young = history(50)  # 20 days after the warm-up: 960 frauds, too few
    assert train.training_set(young, first=t0, now=young[-1][0], maturity=zero) == young
    # a week's label delay: the last week's payments are not mature yet
    long = history(70)
    late = long[-1][0]
    recent = train.training_set(long, first=t0, now=late, maturity=timedelta(days=7))
    assert recent[-1][0] <= late - timedelta(days=7) and recent[0][0] == t0 + timedelta(days=30)


@pytest.mark.integration
def test_two_retrains_at_once_each_record_their_own_lineage(
    engine: Engine, models_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two retrains at once (a scheduled one and an operator's, or two hosts): before, both chose
    the same new lineage, and the second to finish stopped at its insert with a traceback,
    ``(1062, "Duplicate entry ... for key 'PRIMARY'")``, its work lost. Now the second waits
    for the first (a MySQL named lock) and then starts a lineage after it."""
    champion = new_model()
    store(engine, scores=scored_by(champion))
    record(engine, tmp_path, "v00001.000003", champion)
    url = models_engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url) for _ in range(2)]
    ready = threading.Barrier(2)
    # Both fitted before either records, as two retrains of real size are (minutes of fitting):
    # each waits here for the other, up to 5 s (a retrain that waits for the other's lock
    # never comes, and the one holding it goes on).
    fitted_both = threading.Barrier(2)
    recording = retrain_module.record

    def record_after_both(*args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            fitted_both.wait(timeout=5)
        recording(*args, **kwargs)

    monkeypatch.setattr(retrain_module, "record", record_after_both)
    fitted: list[str] = []
    failed: list[str] = []

    def run(i: int) -> None:
        ready.wait()
        try:
            made, _ = retrain(
                engines[i], tmp_path / f"models-{i}", key=TEST_KEY, min_frauds=10,
                family="linear", maturity=timedelta(days=7), force=True,
            )  # fmt: skip
            assert made is not None
            fitted.append(made.version)
        except Exception as exc:
            failed.append(f"{type(exc).__name__}: {str(exc)[:300]}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for e in engines:
            e.dispose()
    assert failed == []
    assert sorted(fitted) == ["v00002", "v00003"]
    with engine.connect() as c:
        recorded = c.execute(select(model_versions.c.version)).scalars().all()
    assert sorted(recorded) == ["v00001.000003", "v00002", "v00003"]
