"""Retraining on the labelled payments stored in MySQL, and the learner going on from it."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, select

from dataflows.learning import LearnStep, Lineages, learn_step
from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.learner import OnlineLearner
from model_state.offline.retrain import (
    REFUSED_EXIT_STATUS,
    NotEnoughLabelsError,
    Verdict,
    main,
    retrain,
)
from model_state.offline.retrain import record as record_version
from model_state.offline.train import fit, new_model
from settings.config import Config
from storage import shadow
from storage.labels import LabelledPayment
from storage.rows import scored_payment_row
from storage.tables import model_candidates, model_versions, scored_payments
from storage.versions import version_key
from tests.builders import BASE, TEST_KEY, model_metadata, payment
from tests.test_evaluate_model import as_rows, synthetic

X, Y = synthetic(2500, seed=9)
EVERY = timedelta(minutes=10)  # 2,500 payments over about 17 days


def store(engine: Engine, *, labelled: int = 2000, noisy_before: int = 0) -> None:
    """X's rows as scored payments, one every 10 minutes up to BASE; the first ``labelled``
    labelled with Y (those before ``noisy_before`` with coin flips instead)."""
    coins = np.random.default_rng(1).random(len(X)) < Y.mean()
    rows = []
    for i, (x, y) in enumerate(zip(X.tolist(), Y.tolist(), strict=True)):
        p = payment(transaction_id=f"t-{i}", event_time=BASE - EVERY * (len(X) - i))
        features = dict(zip(FEATURE_NAMES, x, strict=True))
        if i == 7:
            del features["amount_eur"]  # stored by a build with another catalogue
        row = scored_payment_row(
            p, partition=0, offset=i, features=features, probability=0.1, decision="approve",
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
    store(engine)
    record(engine, tmp_path, "v00001.000003", new_model())  # untrained: a coin for a champion
    fitted, verdict = retrain(
        models_engine, tmp_path / "models", key=TEST_KEY, min_frauds=10, family="linear"
    )
    assert fitted is not None and verdict.accepted
    assert verdict.challenger_ap > verdict.champion_ap
    m = fitted.metadata
    assert (m.version, m.parent_version, m.origin) == ("v00002", "v00001.000003", "retrained")
    # Compared on the labelled rows of their last 7 days, then learned from every labelled row
    # but the one lacking a feature.
    times = [BASE - EVERY * (len(X) - i) for i in range(2000)]
    assert verdict.rows == sum(1 for t in times if t >= times[-1] - timedelta(days=7))
    learned = [i for i in range(2000) if i != 7]
    assert (m.rows, m.frauds) == (len(learned), int(Y[learned].sum()))
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
    store(engine, noisy_before=1400)  # it learns from coin flips; the champion from the truth
    record(engine, tmp_path, "v00001.000003", trained_linear())
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
        main(["--min-frauds", "10", "--family", "linear", "--model-dir", str(models)])
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
    main(["--min-frauds", "10", "--family", "linear", "--model-dir", str(models), "--candidate"])
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
    fitted, verdict = retrain(
        models_engine, tmp_path, key=TEST_KEY, window=window, min_frauds=1, family="linear",
        force=True,
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
