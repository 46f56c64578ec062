"""Model artifacts, the scorer and the online learner."""

from __future__ import annotations

import hashlib
import pickle
import random
import stat
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.model_registry import ModelRegistry
from features.catalog import FEATURE_NAMES
from model_state import artifact, signing
from model_state.learner import OnlineLearner
from model_state.offline.train import new_model
from model_state.scorer import Scorer, decide
from storage.labels import LabelledPayment
from tests.builders import TEST_KEY, model_metadata

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def trained(rows: int = 400, seed: int = 1) -> object:
    model = new_model()
    rng = random.Random(seed)
    for _ in range(rows):
        x = {name: rng.random() for name in FEATURE_NAMES}
        model.learn_one(x, x["amount_eur"] + 0.3 * rng.random() > 1.0)
    return model


def test_save_then_load_gives_the_same_model(tmp_path: Path) -> None:
    model = trained()
    saved = artifact.save(model, model_metadata(), tmp_path, key=TEST_KEY)
    loaded = artifact.load(tmp_path, key=TEST_KEY)
    x = dict.fromkeys(FEATURE_NAMES, 0.5)
    assert loaded.version == "v00001"
    assert loaded.model.predict_proba_one(x) == model.predict_proba_one(x)
    assert loaded.metadata.content_hash == saved.metadata.content_hash != ""
    assert loaded.metadata.library_versions["river"].startswith("0.26")
    assert artifact.next_version(tmp_path) == "v00002"


def test_load_without_a_model_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(artifact.ModelNotFoundError, match=r"python -m model_state\.train"):
        artifact.load(tmp_path / "nothing-here", key=TEST_KEY)


def test_load_names_every_mismatch(tmp_path: Path) -> None:
    artifact.save(
        trained(),
        model_metadata(feature_names=("amount_eur", "old_feature")),
        tmp_path,
        key=TEST_KEY,
    )
    (tmp_path / "v00001" / "model.pkl").write_bytes(b"changed")
    with pytest.raises(artifact.ModelMismatchError) as caught:
        artifact.load(tmp_path, key=TEST_KEY)
    text = str(caught.value)
    assert "model.pkl has SHA-256" in text
    assert "the code lacks ['old_feature']" in text
    assert "Retrain with `python -m model_state.train`" in text


class Boom:
    """Unpickling this runs code: what a tampered artifact could do."""

    ran: ClassVar[list[str]] = []

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Boom.ran.append, ("unpickled",))


def test_unsigned_tampered_or_foreign_versions_are_refused_before_unpickling(
    tmp_path: Path,
) -> None:
    saved = artifact.save(trained(), model_metadata(), tmp_path, key=TEST_KEY)
    evil = pickle.dumps(Boom())
    forged = msgspec.structs.replace(
        saved.metadata, content_hash=hashlib.sha256(evil).hexdigest()
    )  # a row rewritten by someone who can write model_versions, but has no key
    unsigned = msgspec.structs.replace(forged, signature="")
    other_key = bytes(32)
    for metadata, key, says in [
        (forged, TEST_KEY, "signature that does not match"),
        (unsigned, TEST_KEY, "is not signed"),
        (saved.metadata, other_key, "signature that does not match"),
    ]:
        with pytest.raises(signing.UntrustedModelError, match=says):
            artifact.from_bytes(evil, metadata, where="model_versions[v00001]", key=key)
    assert Boom.ran == [], "a refused version was unpickled"
    # A version signed with the key loads.
    assert artifact.from_bytes(saved.payload, saved.metadata, where="x", key=TEST_KEY)


def test_model_folders_are_private(tmp_path: Path) -> None:
    saved = artifact.save(trained(), model_metadata(), tmp_path / "new" / "models", key=TEST_KEY)
    for folder in (tmp_path / "new" / "models", tmp_path / "new" / "models" / saved.version):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_the_signing_key_file_is_private_and_well_formed(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "model.key"
    key = signing.read_key(path, create=True)
    assert signing.read_key(path) == key and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        signing.read_key(path)
    with pytest.raises(FileNotFoundError, match=r"python -m model_state\.train"):
        signing.read_key(tmp_path / "missing.key")
    # a folder named by mistake: said so (it was "readable by others: chmod 600" before)
    with pytest.raises(IsADirectoryError, match=r"keys \(PAYSCORE_MODEL_KEY_FILE\) is a directory"):
        signing.read_key(tmp_path / "keys")


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00binary", b"\x30\x82\x01\x0a" + bytes(range(60)), "é".encode() * 32],
    ids=["binary", "der_private_key", "utf8_not_hex"],
)
def test_a_key_file_that_is_not_text_is_named_with_what_it_expects(
    tmp_path: Path, content: bytes
) -> None:
    """Another key's file named by mistake (a DER private key, any binary): a ValueError naming
    the file and what it must hold (a bare UnicodeDecodeError named neither)."""
    path = tmp_path / "model.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ValueError, match=rf"model signing key {path} must hold 64 hex digits"):
        signing.read_key(path)


def test_a_model_naming_code_that_is_gone_is_a_clear_mismatch() -> None:
    # What a version pickled before model_state.offline.train.Basis moved to model_state.basis
    # looks like.
    payload = pickle.dumps(Decimal("1")).replace(b"decimal", b"gonemod")
    digest = hashlib.sha256(payload).hexdigest()
    meta = model_metadata(content_hash=digest, library_versions=artifact.library_versions())
    meta = signing.sign(meta, TEST_KEY)
    with pytest.raises(artifact.ModelMismatchError, match=r"v00001 at here .*unpickling it failed"
                       r" with ModuleNotFoundError: No module named 'gonemod'"):  # fmt: skip
        artifact.from_bytes(payload, meta, where="here", key=TEST_KEY)


def test_versions_are_never_overwritten(tmp_path: Path) -> None:
    saved = artifact.save(trained(), model_metadata(), tmp_path, key=TEST_KEY)
    assert artifact.write(b"other", saved.metadata, tmp_path) is False
    assert (tmp_path / "v00001" / "model.pkl").read_bytes() == saved.payload


@pytest.mark.parametrize(
    ("p", "decision"),
    [
        (0.0, "approve"),
        (0.4999, "approve"),
        (0.5, "review"),
        (0.8999, "review"),
        (0.9, "decline"),
        (1.0, "decline"),
    ],
)
def test_decide(p: float, decision: str) -> None:
    assert decide(p, review=0.5, decline=0.9) == decision


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(-50, 50), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES))
)
def test_scorer_probability_is_the_models_and_reasons_push_up(values: list[float]) -> None:
    model = MODEL
    x = dict(zip(FEATURE_NAMES, values, strict=True))
    score = Scorer(model, "v1", review=0.5, decline=0.9).score(x)
    assert score.probability == pytest.approx(model.predict_proba_one(x)[True], rel=1e-9, abs=1e-12)
    assert 0.0 <= score.probability <= 1.0
    assert len(score.reasons) <= 3
    scaler, linear = model.steps.values()
    scaled = scaler.transform_one(x)
    pushes = {n: linear.weights.get(n, 0.0) * v for n, v in scaled.items()}
    assert all(pushes[r] > 0 for r in score.reasons)
    assert [pushes[r] for r in score.reasons] == sorted(
        (pushes[r] for r in score.reasons), reverse=True
    )
    top = sorted((v for v in pushes.values() if v > 0), reverse=True)[:3]
    assert sorted(pushes[r] for r in score.reasons) == sorted(top)


MODEL = trained()


def test_prior_correction_divides_the_odds_by_the_weight() -> None:
    x = dict.fromkeys(FEATURE_NAMES, 0.7)
    plain = Scorer(MODEL, "v1", review=0.5, decline=0.9).score(x).probability
    corrected = Scorer(MODEL, "v1", review=0.5, decline=0.9, positive_weight=4.0).score(x)
    odds = plain / (1 - plain)
    assert corrected.probability == pytest.approx((odds / 4) / (1 + odds / 4))


def example(txn: str, fraud: bool) -> LabelledPayment:
    return LabelledPayment(
        transaction_id=txn,
        card_id="c",
        merchant_id="m",
        terminal_id="t",
        payment_time=0.0,
        reported_at=1.0,
        is_fraud=fraud,
        features=dict.fromkeys(FEATURE_NAMES, 1.0 if fraud else 0.0),
        scored_by="v00001",
    )


def test_learner_publishes_numbered_versions_every_n_labels() -> None:
    start = artifact.ModelArtifact(MODEL, model_metadata(), pickle.dumps(MODEL))
    learner = OnlineLearner(start, publish_every=3)
    published = []
    for i in range(7):
        learner.learn(example(f"t{i}", i % 3 == 0))
        if learner.due:
            published.append(learner.publish(NOW))
    assert [p.metadata.version for p in published] == ["v00001.000001", "v00001.000002"]
    assert published[1].metadata.parent_version == "v00001.000001"
    assert published[1].metadata.labels_learned == 6
    assert learner.pending == 1
    restored = pickle.loads(published[1].payload)
    assert restored.predict_proba_one(dict.fromkeys(FEATURE_NAMES, 1.0))
    # the learner never changed the start model it was given
    assert pickle.dumps(MODEL) == start.payload
    resumed = OnlineLearner(
        artifact.ModelArtifact(MODEL, model_metadata("v00001.000002"), b""), publish_every=1
    )
    resumed.learn(example("t9", True))
    assert resumed.publish(NOW).metadata.version == "v00001.000003"
    with pytest.raises(ValueError, match="nothing learned since"):
        OnlineLearner(start, 1).publish(NOW)
    assert len(pickle.dumps(learner)) < 20_000


@settings(max_examples=200, deadline=None)
@given(offers=st.lists(st.integers(0, 30) | st.none(), max_size=30))
def test_registry_versions_only_move_forward(offers: list[int | None]) -> None:
    start = artifact.ModelArtifact(MODEL, model_metadata("v00001.000010"), b"")
    feed = iter(offers)

    def fetch(after: str) -> artifact.ModelArtifact | None:
        n = next(feed, None)
        if n is None:
            return None
        return artifact.ModelArtifact(MODEL, model_metadata(f"v00001.{n:06d}"), b"")

    now = [0.0]
    registry = ModelRegistry(
        start, fetch, refresh_seconds=1, review=0.5, decline=0.9, clock=lambda: now[0]
    )
    seen = []
    for _ in offers:
        seen.append(registry.current().version)
        now[0] += 1
    assert seen == sorted(seen)
    assert all(v >= "v00001.000010" for v in seen)


def test_registry_asks_at_most_once_per_refresh_interval() -> None:
    asked = []
    start = artifact.ModelArtifact(MODEL, model_metadata(), b"")
    now = [0.0]
    registry = ModelRegistry(
        start,
        lambda after: asked.append(after),
        refresh_seconds=5,
        review=0.5,
        decline=0.9,
        clock=lambda: now[0],
    )
    for step in range(20):
        now[0] = step * 0.5
        registry.current()
    deadline = time.monotonic() + 30
    while len(asked) < 2 and time.monotonic() < deadline:  # the second look-up runs beside
        time.sleep(0.01)
    assert len(asked) == 2  # at 0 s (the first call) and at 5 s


def test_metadata_round_trips_through_json() -> None:
    m = model_metadata(metrics={"roc_auc": 0.9})
    assert msgspec.json.decode(msgspec.json.encode(m), type=artifact.ModelMetadata) == m


def test_a_version_saved_where_one_of_its_name_exists_is_refused_not_reported_saved(
    tmp_path: Path,
) -> None:
    """Two ``python -m model_state.train`` (or evaluations) at once on one folder both named
    their version ``v00001`` (``artifact.next_version``): the second's write found the folder
    taken and did nothing, and ``save`` returned its model all the same, reported saved, its
    figures printed for a model no folder holds. Now it is refused, naming the version and the
    folder, and the first one's stays."""
    first = artifact.save(trained(), model_metadata(), tmp_path, key=TEST_KEY, new=True)
    with pytest.raises(artifact.VersionExistsError, match=r"v00001 exists already in .*"):
        artifact.save(new_model(), model_metadata(), tmp_path, key=TEST_KEY, new=True)
    assert (tmp_path / "v00001" / "model.pkl").read_bytes() == first.payload
