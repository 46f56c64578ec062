"""Online versions are deltas on their lineage root; version numbers never run out; a new
version is loaded beside scoring, not in its way."""

from __future__ import annotations

import gc
import pickle
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest

from dataflows.model_registry import ModelRegistry
from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.checkpoints import _VersionPartition
from model_state.learner import OnlineLearner
from model_state.offline.train import new_boosted_model
from model_state.signing import sign
from storage.labels import LabelledPayment
from storage.versions import Recorded, version_key
from tests.builders import TEST_KEY, model_metadata
from tests.test_boosted import BOOSTED, X

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def example(i: int, fraud: bool) -> LabelledPayment:
    return LabelledPayment(
        transaction_id=f"t{i}",
        card_id="c",
        merchant_id="m",
        terminal_id="p",
        payment_time=0.0,
        reported_at=float(i),
        is_fraud=fraud,
        features=dict(zip(FEATURE_NAMES, X[i].tolist(), strict=True)),
        scored_by="v00001",
    )


def root(tmp_path: Path) -> artifact.ModelArtifact:
    return artifact.save(new_boosted_model(BOOSTED), model_metadata(), tmp_path, key=TEST_KEY)


def published(start: artifact.ModelArtifact, labels: int = 40) -> artifact.VersionRecord:
    learner = OnlineLearner(start, publish_every=labels)
    for i in range(labels):
        learner.learn(example(i, i % 4 == 0))
    return learner.publish(NOW)


def test_an_online_version_holds_kilobytes_and_refers_to_its_root(tmp_path: Path) -> None:
    start = root(tmp_path)
    record = published(start)
    assert len(start.payload) > 500_000  # the forest, by value, once
    assert len(record.payload) < 40_000  # the weights, and a reference to the forest
    assert record.metadata.base_version == "v00001"
    assert record.metadata.base_hash == start.metadata.content_hash
    signed = sign(record.metadata, TEST_KEY)
    artifact.write(record.payload, signed, tmp_path)
    loaded = artifact.load(tmp_path, key=TEST_KEY)  # the newest: the delta, its root resolved
    assert loaded.version == "v00001.000001"
    rows = [dict(zip(FEATURE_NAMES, r, strict=True)) for r in X[:50].tolist()]
    direct = artifact.loads(record.payload, signed, lambda v: start, where="test")
    assert [loaded.model.predict_proba_one(x) for x in rows] == [
        direct.predict_proba_one(x) for x in rows
    ]
    # The learner went on from the root: the same forest, other weights than the root's.
    assert artifact.expansion_of(loaded.model).nodes["value"].tolist() == (
        BOOSTED.nodes["value"].tolist()
    )
    # A learner resumed from the delta publishes deltas on the same root.
    again = published(loaded, labels=3)
    assert again.metadata.base_version == "v00001" and again.metadata.version == "v00001.000002"


def test_a_delta_is_refused_without_its_root_or_with_another(tmp_path: Path) -> None:
    start = root(tmp_path)
    record = published(start)
    signed = sign(record.metadata, TEST_KEY)
    with pytest.raises(artifact.ModelNotFoundError, match="a delta on v00001"):
        artifact.from_bytes(record.payload, signed, where="x", key=TEST_KEY)
    changed = new_boosted_model(BOOSTED)
    changed["LogisticRegression"]._weights["forest"] = 2.0  # another root: another SHA-256
    other = artifact.make(changed, model_metadata(), key=TEST_KEY)
    with pytest.raises(artifact.ModelMismatchError, match="learned on root v00001 with SHA-256"):
        artifact.from_bytes(record.payload, signed, where="x", key=TEST_KEY, bases=lambda v: other)
    forged = sign(msgspec.structs.replace(record.metadata, base_version="v00007"), TEST_KEY)
    with pytest.raises(artifact.ModelMismatchError, match="refers to root v00001, but its signed"):
        artifact.from_bytes(record.payload, forged, where="x", key=TEST_KEY, bases=lambda v: start)


def test_the_version_sink_writes_a_delta_that_loads_from_disk(tmp_path: Path) -> None:
    start = root(tmp_path)
    record = published(start)
    recorded = []

    class Engine:  # what _VersionPartition needs of SQLAlchemy: a transaction to record in
        def begin(self) -> Engine:
            return self

        def __enter__(self) -> Engine:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def dispose(self) -> None:
            return None

    import model_state.checkpoints as checkpoints

    original = checkpoints.record_version
    checkpoints.record_version = lambda connection, row, **kw: (  # type: ignore[assignment]
        recorded.append(row) or Recorded(row["version"], [])
    )
    try:
        _VersionPartition(Engine(), tmp_path, "labels", 0.0, TEST_KEY).write_batch([record])  # type: ignore[arg-type]
    finally:
        checkpoints.record_version = original
    assert recorded and recorded[0]["version"] == "v00001.000001"
    assert artifact.load(tmp_path, key=TEST_KEY).metadata.base_version == "v00001"


def test_version_numbers_go_past_every_width_in_numeric_order() -> None:
    model = new_boosted_model(BOOSTED)
    start = artifact.ModelArtifact(
        model, model_metadata("v99999.999999", learner={"frauds": 1.0, "legit": 1.0,
                                                        "expected_fraud_share": 0.5,
                                                        "balance_frauds": 0.0,
                                                        "balance_legit": 0.0}), pickle.dumps(model)
    )  # fmt: skip
    learner = OnlineLearner(start, publish_every=1)
    learner.learn(example(1, True))
    record = learner.publish(NOW)
    assert record.metadata.version == "v99999.1000000"
    assert version_key(record.metadata.version) > version_key("v99999.999999")
    assert version_key("v100000") > version_key("v99999.1000000")
    # 18 digits each: the columns are 64-bit, and the names fit the 64-character id.
    biggest = "v" + "9" * 18 + "." + "9" * 18
    assert version_key(biggest) == (10**18 - 1, 10**18 - 1) and len(biggest) <= 64
    with pytest.raises(ValueError, match="must look like"):
        version_key("v" + "1" * 19)


def test_the_registry_loads_a_new_version_beside_scoring() -> None:
    """A fetch that takes long (a root loading from MySQL) never holds scoring up."""
    start = artifact.ModelArtifact(new_boosted_model(BOOSTED), model_metadata(), b"")
    newer = artifact.ModelArtifact(start.model, model_metadata("v00001.000001"), b"")
    release, entered, left = threading.Event(), threading.Event(), threading.Event()
    calls = []

    def fetch(after: str | None) -> artifact.ModelArtifact | None:
        calls.append(after)
        if len(calls) == 1:
            return None  # the first look-up, at start: nothing newer yet
        entered.set()
        release.wait(120)
        left.set()
        return newer

    now = [0.0]
    registry = ModelRegistry(
        start, fetch, refresh_seconds=1, review=0.5, decline=0.9, clock=lambda: now[0]
    )
    assert registry.current().version == "v00001"  # the first look-up is made in line
    now[0] = 5.0
    assert registry.current().version == "v00001"  # the second starts beside
    assert entered.wait(30)  # it is under way (a thread may start late on a loaded machine)
    now[0] = 10.0  # due again, while it is under way
    for _ in range(100):
        assert registry.current().version == "v00001"
    # No call waited for the look-up (it is held until released), and none started another.
    assert not left.is_set()
    assert len(calls) == 2
    release.set()
    deadline = time.monotonic() + 30
    while registry.current().version != "v00001.000001" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.current().version == "v00001.000001"
    assert np.isfinite(registry.current().score(dict.fromkeys(FEATURE_NAMES, 1.0)).probability)


def test_a_version_signed_before_the_delta_fields_existed_keeps_its_signature() -> None:
    import hashlib
    import hmac

    from model_state.signing import verify

    metadata = model_metadata()
    old = msgspec.to_builtins(msgspec.structs.replace(metadata, signature=""))
    # What the metadata held when it was signed: none of the fields added since.
    del old["base_version"], old["base_hash"], old["drift_reference"]
    digest = hmac.new(TEST_KEY, msgspec.json.encode(old, order="sorted"), hashlib.sha256)
    verify(msgspec.structs.replace(metadata, signature=digest.hexdigest()), TEST_KEY, where="x")
    # A delta's root is signed: naming another root, or none, breaks the signature.
    delta = sign(msgspec.structs.replace(metadata, base_version="v00001", base_hash="ab"), TEST_KEY)
    verify(delta, TEST_KEY, where="x")
    for changed in ({"base_version": ""}, {"base_version": "v00002"}, {"base_hash": ""}):
        with pytest.raises(Exception, match="signature"):
            verify(msgspec.structs.replace(delta, **changed), TEST_KEY, where="x")


def test_a_flow_started_from_a_delta_records_its_root_first(tmp_path: Path) -> None:
    from dataflows.learning import LearnStep, learn_step

    start = root(tmp_path)
    record = published(start)
    artifact.write(record.payload, sign(record.metadata, TEST_KEY), tmp_path)
    delta = artifact.load(tmp_path, key=TEST_KEY)
    step = learn_step(delta, publish_every=100, publish_seconds=3600, root=start)(None)
    out, _ = step.on_batch([])
    assert [r.metadata.version for r in out] == ["v00001", "v00001.000001"]
    assert step.on_batch([])[0] == []  # once
    # A snapshot taken before roots were announced held one record: it still resumes.
    learner, last, _ = pickle.loads(step.snapshot())
    old = LearnStep(learner, last, 3600, delta.record, None)
    assert [r.metadata.version for r in old.on_batch([])[0]] == ["v00001.000001"]


@pytest.mark.integration
def test_the_scoring_registry_passes_over_a_version_it_cannot_load(engine, tmp_path: Path) -> None:
    """A bad row (here: signed with another key) is refused and passed over in the same
    look-up: the newest good version below it is found; MySQL on the shipped schema, deltas
    resolved from their root's row."""
    from model_state.offline.retrain import record
    from model_state.stored_versions import NewerVersionsInMySQL

    start = root(tmp_path / "a")
    record(engine, start, "-")
    delta = published(start)
    record(engine, artifact.ModelArtifact(None, sign(delta.metadata, TEST_KEY), delta.payload), "-")
    bad = artifact.make(new_boosted_model(BOOSTED), model_metadata("v00002"), key=b"k" * 32)
    record(engine, bad, "-")
    fetch = NewerVersionsInMySQL("unused", engine, key=TEST_KEY)
    found = fetch("v00001")  # v00002 passed over: the delta, loaded with its root from MySQL
    assert found is not None and found.version == "v00001.000001"
    x = dict(zip(FEATURE_NAMES, X[0].tolist(), strict=True))
    assert np.isfinite(found.model.predict_proba_one(x)[True])
    # The learner passes over it too: of another lineage, no label names it
    # (tests/test_forged_versions.py: when the learner stops instead).
    learner_fetch = NewerVersionsInMySQL("unused", engine, key=TEST_KEY)
    learned = learner_fetch("v00001")
    assert learned is not None and learned.version == "v00001.000001"


def test_the_flows_registry_watches_without_waiting_for_payments() -> None:
    start = artifact.ModelArtifact(new_boosted_model(BOOSTED), model_metadata(), b"")
    newer = artifact.ModelArtifact(start.model, model_metadata("v00001.000001"), b"")
    offers = iter([None, None, newer])
    registry = ModelRegistry(
        start, lambda after: next(offers, None), refresh_seconds=0.05, review=0.5, decline=0.9,
        watch=True,
    )  # fmt: skip
    assert registry.current().version == "v00001"  # the first look-up, in line: nothing newer
    deadline = time.monotonic() + 30
    while registry._scorer.version != "v00001.000001" and time.monotonic() < deadline:
        time.sleep(0.01)  # no payment, no call to current(): the watcher looks on its own
    assert registry.current().version == "v00001.000001"


def test_the_registrys_watcher_ends_once_the_registry_is_gone() -> None:
    """A flow run inside a test's process must not leave a thread polling a dropped database."""
    start = artifact.ModelArtifact(new_boosted_model(BOOSTED), model_metadata(), b"")
    registry = ModelRegistry(
        start, lambda after: None, refresh_seconds=0.02, review=0.5, decline=0.9, watch=True
    )
    before = set(threading.enumerate())
    registry.current()
    started = set(threading.enumerate()) - before
    (watcher,) = [t for t in started if t.name == "payscore-model-watch"]
    del registry
    gc.collect()
    watcher.join(timeout=5)
    assert not watcher.is_alive()


@pytest.mark.integration
def test_rolling_back_to_an_online_version_is_a_lineage_that_loads_and_learns_on(
    engine, models_engine, tmp_path: Path
) -> None:
    """``python -m model_state.shadow promote`` of an online version (a delta on its root): the
    new lineage loads from MySQL (as every process's registry finds it) and from the model
    folder (as a restarted flow starts), scores as the promoted version did, and the learner
    goes on from it with deltas on the same root."""
    from model_state.offline.retrain import record
    from model_state.offline.shadow import promote
    from model_state.stored_versions import NewerVersionsInMySQL

    folder = tmp_path / "models"
    start = root(folder)
    record(engine, start, "-")
    delta = published(start)
    signed = artifact.ModelArtifact(None, sign(delta.metadata, TEST_KEY), delta.payload)
    record(engine, signed, "-")
    artifact.write(signed.payload, signed.metadata, folder)
    later = published(artifact.load(folder, key=TEST_KEY), labels=80)  # v00001.000002
    record(engine, artifact.ModelArtifact(None, sign(later.metadata, TEST_KEY), later.payload), "-")

    made = promote(  # as python -m model_state.shadow promote does
        models_engine, folder, "v00001.000001", key=TEST_KEY, by="test", note="rollback"
    )
    assert made.version == "v00002"
    from_mysql = NewerVersionsInMySQL("unused", engine, key=TEST_KEY)("v00001.000002")
    from_disk = artifact.load(folder, key=TEST_KEY)
    assert from_mysql is not None and from_mysql.version == from_disk.version == "v00002"
    assert from_disk.metadata.parent_version == "v00001.000001"
    assert from_disk.metadata.base_version == "v00001"  # still a delta on the first root
    x = dict(zip(FEATURE_NAMES, X[0].tolist(), strict=True))
    rolled_back = artifact.load(folder, "v00001.000001", key=TEST_KEY).model
    for model in (from_mysql.model, from_disk.model):
        assert model.predict_proba_one(x) == rolled_back.predict_proba_one(x)
    on = published(from_disk)
    assert on.metadata.version == "v00002.000001"
    assert on.metadata.base_version == "v00001"
