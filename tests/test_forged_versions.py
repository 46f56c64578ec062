"""Forged ``model_versions`` rows (issue 20, item 4): a row is what its signed metadata says or
nothing; a refused row hides no valid version wherever it sorts, is logged once with its own
name (bounded), and is passed over by the learner unless labels name it; scoring adopts the
newest valid version within a look-up, and a metric says when it has not.

The integration tests record real, signed versions (a root, deltas learned on it, a second
lineage) on the real server, then write forged rows beside them: validly signed copies of other
versions under other names, added as someone with the flow's account could (it may add
versions), and valid rows whose ordering columns lie, changed in place as only the admin account
can now (``model_versions`` is insert-only for every job account: ``storage/accounts.py``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, insert, select, update

from dataflows.learning import Lineages
from dataflows.model_registry import ModelRegistry
from model_state import artifact
from model_state.artifact import ModelArtifact, ModelMismatchError, VersionRecord
from model_state.checkpoints import _VersionPartition
from model_state.learner import OnlineLearner
from model_state.offline.train import new_boosted_model
from model_state.signing import sign
from model_state.stored_versions import (
    NewerVersionsInMySQL,
    RefusedRows,
    identity_problems,
    short,
)
from storage.rows import model_version_row, utc_naive
from storage.tables import fraud_labels, model_versions
from storage.versions import fetch_version
from tests.builders import TEST_KEY, model_metadata
from tests.test_boosted import BOOSTED
from tests.test_versions_delta import example

NOW = datetime(2026, 11, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------ pure logic


@dataclass
class Row:
    """A model_versions row as the loader reads it (the columns it compares)."""

    version: str
    lineage: int
    sequence: int
    parent_version: str | None
    origin: str
    labels_learned: int
    content_hash: str
    created_at: datetime


def row_of(metadata: artifact.ModelMetadata, **lies: Any) -> Row:
    stored = model_version_row(
        metadata=msgspec.to_builtins(metadata), payload=b"", artifact_path="x"
    )
    fields = {k: stored[k] for k in Row.__dataclass_fields__}
    return Row(**(fields | lies))


SIGNED = model_metadata(
    "v00001.000005",
    parent_version="v00001.000004",
    origin="online",
    labels_learned=50,
    content_hash="ab" * 32,
)


@pytest.mark.parametrize(
    ("lies", "said"),
    [
        ({}, None),
        ({"version": "v00001.000008"}, "named v00001.000008 but its signed"),
        (
            {"sequence": 999_999},
            "lineage and sequence are (1, 999999), its signed version's (1, 5)",
        ),
        ({"lineage": 7}, "lineage and sequence are (7, 5)"),
        ({"parent_version": "v00001.000001"}, "its parent_version is v00001.000001, signed"),
        ({"origin": "retrained"}, "its origin is retrained, signed online"),
        ({"labels_learned": 9}, "its labels_learned is 9, signed 50"),
        ({"content_hash": "cd" * 32}, "its content_hash is cdcd"),
        ({"created_at": datetime(2020, 1, 1)}, "its created_at is"),
    ],
)
def test_every_column_a_row_copies_from_its_signed_metadata_is_compared(
    lies: dict[str, Any], said: str | None
) -> None:
    problems = identity_problems(row_of(SIGNED, **lies), SIGNED)
    if said is None:
        assert problems == []
    else:
        assert len(problems) == 1 and said in problems[0], problems


def test_what_a_refusal_quotes_from_a_row_is_bounded() -> None:
    huge = "v" + "9" * 70_000
    problems = identity_problems(row_of(SIGNED, version=huge), SIGNED)
    assert len(problems[0]) < 300 and "(70,001 characters)" in problems[0]
    assert short("v00001") == "v00001"


class FakeRegistryFetch:
    """Offers a version and says what the look-up saw newest, as the MySQL loader does."""

    def __init__(self) -> None:
        self.offer: ModelArtifact | None = None
        self.newest: tuple[int, int] | None = None

    def __call__(self, after: str | None) -> ModelArtifact | None:
        return self.offer

    def newest_seen(self) -> tuple[int, int] | None:
        return self.newest


def gauge(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None, f"{name} is not exposed"
    return value


def test_the_registry_says_since_when_a_newer_recorded_version_waits() -> None:
    start = ModelArtifact(new_boosted_model(BOOSTED), model_metadata("v00001.000007"), b"")
    fetch = FakeRegistryFetch()
    now, wall = [0.0], [1000.0]
    registry = ModelRegistry(
        start, fetch, refresh_seconds=1, review=0.5, decline=0.9, clock=lambda: now[0],
        newest_seen=fetch.newest_seen, wall_clock=lambda: wall[0],
    )  # fmt: skip

    def look() -> None:
        now[0] += 5
        wall[0] += 5
        registry.current()
        looking = registry._looking
        if looking is not None:
            looking.join(10)

    registry.current()  # the first look-up: nothing newer recorded
    assert gauge("payscore_model_behind_since_timestamp_seconds") == 0
    assert gauge("payscore_model_checked_timestamp_seconds") == 1000.0
    fetch.newest = (1, 999_999)  # a row above everything, that the look-up refused
    look()
    assert gauge("payscore_model_behind_since_timestamp_seconds") == 1005.0
    look()  # still behind: since the first time it was seen so
    assert gauge("payscore_model_behind_since_timestamp_seconds") == 1005.0
    assert gauge("payscore_model_checked_timestamp_seconds") == 1010.0
    fetch.newest = (1, 9)  # the forged row is gone; v00001.000009 is recorded and loads
    fetch.offer = ModelArtifact(start.model, model_metadata("v00001.000009"), b"")
    look()
    assert registry.current().version == "v00001.000009"
    assert gauge("payscore_model_behind_since_timestamp_seconds") == 0


def test_a_refusal_that_holds_the_learner_up_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fetch(after: str | None) -> ModelArtifact | None:
        raise ModelMismatchError("model_versions[v00001.000009] is not what ...", "v00001.000009")

    now = [0.0]
    lineages = Lineages(fetch, refresh_seconds=1, clock=lambda: now[0])
    with pytest.raises(ModelMismatchError):
        lineages.newer_than("v00001.000007", now=True)  # the learner being built stops
    with caplog.at_level(logging.ERROR, logger="dataflows.learning"):
        for _ in range(5):
            now[0] += 2
            assert lineages.newer_than("v00001.000007") is None
    refused = [r for r in caplog.records if getattr(r, "event", "") == "version_refused"]
    assert [r.version for r in refused] == ["v00001.000009"]  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ on MySQL


def signed(record: VersionRecord, root: ModelArtifact) -> ModelArtifact:
    """A published version as the sink records it: signed, and loaded (a delta on ``root``)."""
    metadata = sign(record.metadata, TEST_KEY)
    model = artifact.loads(record.payload, metadata, lambda _: root, where="test")
    return ModelArtifact(model, metadata, record.payload)


def learned_chain(
    start: ModelArtifact, root: ModelArtifact, count: int, first_example: int = 0
) -> list[ModelArtifact]:
    """``count`` online versions learned after ``start`` (on lineage root ``root``), each from
    10 new labels."""
    learner = OnlineLearner(start, publish_every=10)
    out = []
    for k in range(count):
        for i in range(10):
            n = first_example + 10 * k + i
            learner.learn(example(n, n % 4 == 0))
        out.append(signed(learner.publish(NOW), root))
    return out


@dataclass(frozen=True)
class Recorded:
    """Valid versions: root v00001 and v00001.000001..7 learned on it; root v00003 (a retrain)
    and v00003.000001 learned on it."""

    root: ModelArtifact
    chain: list[ModelArtifact]
    retrain: ModelArtifact
    retrained_chain: list[ModelArtifact]

    @property
    def all(self) -> list[ModelArtifact]:
        return [self.root, *self.chain, self.retrain, *self.retrained_chain]

    def named(self, version: str) -> ModelArtifact:
        return next(v for v in self.all if v.version == version)


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    root = artifact.make(new_boosted_model(BOOSTED), model_metadata(), key=TEST_KEY)
    retrain = artifact.make(
        new_boosted_model(BOOSTED), model_metadata("v00003", origin="retrained"), key=TEST_KEY
    )
    return Recorded(
        root, learned_chain(root, root, 7), retrain, learned_chain(retrain, retrain, 1, 500)
    )


def row(of: ModelArtifact, **lies: Any) -> dict[str, Any]:
    """``of``'s model_versions row, with ``lies`` written over its columns."""
    stored = model_version_row(
        metadata=msgspec.to_builtins(of.metadata), payload=of.payload, artifact_path="-"
    )
    return stored | lies


def store(engine: Engine, *rows: dict[str, Any]) -> None:
    with engine.begin() as c:
        c.execute(insert(model_versions), list(rows))


def forged(copy_of: ModelArtifact, name: str) -> dict[str, Any]:
    """A row named ``name`` (its lineage and sequence too) holding a validly signed copy of
    another version: the attack of the issue."""
    lineage, _, sequence = name[1:].partition(".")
    return row(copy_of, version=name, lineage=int(lineage), sequence=int(sequence or 0))


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.version  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "event", "") == "version_refused"
    ]


class Looking:
    """A scoring registry on the test's database, whose look-ups the test starts."""

    def __init__(self, engine: Engine, start: ModelArtifact) -> None:
        self.fetch = NewerVersionsInMySQL("-", engine, key=TEST_KEY)
        self.now = [0.0]
        self.registry = ModelRegistry(
            start, self.fetch, refresh_seconds=1, review=0.5, decline=0.9,
            clock=lambda: self.now[0], newest_seen=self.fetch.newest_seen,
        )  # fmt: skip

    def look(self) -> str:
        """One look-up; the version scoring after it."""
        self.now[0] += 5
        self.registry.current()
        looking = self.registry._looking
        if looking is not None:
            looking.join(30)
        return self.registry.current().version


@pytest.mark.integration
def test_the_issues_three_forged_rows_no_longer_freeze_scoring(
    engine: Engine, recorded: Recorded, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """v00001.000001..7 recorded; then a copy of .000005 named .000008 (the learner's next
    name), a copy of .000007 named .999999 and a copy of the root named v00099. Before the fix
    the look-up found the .999999 row, loaded .000007 from it and scored on with .000007 in
    silence. Now each forged row is refused and logged once, the metric says scoring is behind
    the newest recorded row, the learner's .000008 finds the forged row in its place (which the
    flow's account may not remove: model_versions is insert-only for it), says so, and is
    recorded under the next free name, .000009, with its labels (review 20, item 1: never
    credited to the forged row); the learner's .000009 then goes to .000010, which scores within
    one look-up."""
    chain = recorded.chain
    store(engine, row(recorded.root), *(row(v) for v in chain))
    store(
        engine,
        forged(chain[4], "v00001.000008"),
        forged(chain[6], "v00001.999999"),
        forged(recorded.root, "v00099"),
    )
    looking = Looking(engine, chain[6])
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert looking.look() == "v00001.000007"
    assert sorted(refusals(caplog)) == ["v00001.000008", "v00001.999999", "v00099"]
    assert gauge("payscore_model_behind_since_timestamp_seconds") > 0  # the alert's metric

    # The learner records .000008 (where the forged row stands) and .000009, as the flow does,
    # with the flow's account; each has learned labels, claimed in fraud_labels.
    sink = _VersionPartition(engine, tmp_path, "labels", 0.0, TEST_KEY)
    learner = OnlineLearner(chain[6], publish_every=10)
    published = []
    for k in range(2):
        for i in range(10):
            labelled = example(200 + 10 * k + i, i % 3 == 0)
            learner.learn(
                msgspec.structs.replace(labelled, label_partition=0, label_offset=10 * k + i)
            )
        published.append(learner.publish(NOW))
    claim_labels_at(engine, [(0, offset) for offset in range(20)])
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        sink.write_batch(published)
        adopted = looking.look()
    assert adopted == "v00001.000010"
    blocked = [r for r in caplog.records if getattr(r, "event", "") == "version_blocked"]
    assert [r.version for r in blocked] == ["v00001.000008"]  # type: ignore[attr-defined]
    assert "recorded as v00001.000009 instead" in blocked[0].getMessage()
    assert refusals(caplog) == []  # logged once: not again at the later look-ups
    with engine.connect() as c:  # the forged row stays (an audit row); the labels say who learned
        still = fetch_version(c, "v00001.000008")
        marked = dict(
            c.execute(select(fraud_labels.c.kafka_offset, fraud_labels.c.learned_version)).all()
        )
    assert still is not None and still.metadata["version"] == "v00001.000005"
    assert marked == {o: "v00001.000009" if o < 10 else "v00001.000010" for o in range(20)}
    assert not (tmp_path / "v00001.000008").exists()  # disk holds no version MySQL lacks
    assert (tmp_path / "v00001.000009").is_dir() and (tmp_path / "v00001.000010").is_dir()
    learners = NewerVersionsInMySQL("-", engine, key=TEST_KEY)
    assert learners("v00001.000007") is not None  # loads; the forged rows are passed over


def claim_labels_at(engine: Engine, positions: list[tuple[int, int]]) -> None:
    """Claimed label rows at these (partition, offset)s of topic ``labels``."""
    with engine.begin() as c:
        c.execute(
            insert(fraud_labels),
            [
                {
                    "topic": "labels",
                    "kafka_partition": partition,
                    "kafka_offset": offset,
                    "transaction_id": f"t{offset}",
                    "card_id": "c",
                    "is_fraud": False,
                    "reported_at": utc_naive(NOW),
                    "first_seen_at": utc_naive(NOW),
                    "status": "claimed",
                }
                for partition, offset in positions
            ],
        )


@dataclass(frozen=True)
class Case:
    name: str
    forge: Callable[[Engine, Recorded], None]  # writes the forged rows
    adopted: str  # what scoring from v00001.000001 adopts
    refused: list[str]  # the rows logged as refused, once each


def _forge_above(engine: Engine, r: Recorded) -> None:
    store(engine, forged(r.retrained_chain[0], "v00009.000001"))


def _forge_between(engine: Engine, r: Recorded) -> None:
    store(engine, forged(r.root, "v00002"), forged(r.chain[2], "v00001.000050"))


def _forge_below(engine: Engine, r: Recorded) -> None:
    store(engine, forged(r.chain[6], "v00000.000009"))


def _forge_a_root(engine: Engine, r: Recorded) -> None:
    """v00003 (the retrain's root) rewritten as a signed copy of v00001: its delta refers to a
    root that is not what it says, and is refused with it."""
    with engine.begin() as c:
        c.execute(
            update(model_versions)
            .where(model_versions.c.version == "v00003")
            .values(metadata=msgspec.to_builtins(r.root.metadata), artifact=r.root.payload)
        )


def _lie_in_the_columns(engine: Engine, r: Recorded) -> None:
    """Valid rows whose name matches their metadata, but whose lineage or sequence lie."""
    with engine.begin() as c:
        mv = model_versions
        c.execute(update(mv).where(mv.c.version == "v00001.000003").values(lineage=8))
        c.execute(update(mv).where(mv.c.version == "v00003.000001").values(sequence=999_999))


def _many_above(engine: Engine, r: Recorded) -> None:
    """More forged rows above the valid ones than one page of the look-up reads."""
    store(engine, *(forged(r.chain[k % 7], f"v{9 + k:05d}") for k in range(40)))


def _forge_between_under_refused_ones(engine: Engine, r: Recorded) -> None:
    _forge_a_root(engine, r)
    _forge_between(engine, r)


CASES = [
    Case("above", _forge_above, "v00003.000001", ["v00009.000001"]),
    Case("between", _forge_between, "v00003.000001", []),  # below the newest: never looked at
    Case(
        "between, under refused ones",
        _forge_between_under_refused_ones,
        "v00001.000007",
        ["v00003.000001", "v00003", "v00002", "v00001.000050"],
    ),
    Case("below", _forge_below, "v00003.000001", []),
    Case("a forged root", _forge_a_root, "v00001.000007", ["v00003.000001", "v00003"]),
    Case("columns lie", _lie_in_the_columns, "v00003", ["v00001.000003", "v00003.000001"]),
    Case("a page of them", _many_above, "v00003.000001", [f"v{9 + k:05d}" for k in range(40)]),
]


@pytest.fixture
def all_recorded(engine: Engine, recorded: Recorded) -> Engine:
    store(engine, *(row(v) for v in recorded.all))
    return engine


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_refused_row_hides_no_valid_version_wherever_it_sorts(
    case: Case,
    all_recorded: Engine,
    admin_engine: Engine,
    recorded: Recorded,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = all_recorded
    case.forge(admin_engine, recorded)
    looking = Looking(engine, recorded.chain[0])
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert looking.look() == case.adopted
    assert sorted(refusals(caplog)) == sorted(case.refused)
    if case.refused:  # and what scoring passed over is said in full, within bounds
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert all(len(m) < 1_000 for m in messages), max(messages, key=len)


@pytest.mark.integration
def test_the_scoring_registry_adopts_the_newest_valid_version_within_its_refresh(
    all_recorded: Engine, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    """The flow's own set-up: the watcher thread looks every refresh; forged rows above and
    between; a valid version recorded later is scoring after the next look-up (counted in
    look-ups, not seconds: on a loaded machine one look-up can take seconds)."""
    engine = all_recorded
    _forge_above(engine, recorded)
    _forge_between(engine, recorded)
    fetch = NewerVersionsInMySQL("-", engine, key=TEST_KEY)
    looks: list[list[Any]] = []  # [when it started, the version it found], one per look-up

    def look(after: str | None) -> ModelArtifact | None:
        entry: list[Any] = [time.monotonic(), None]
        looks.append(entry)
        found = fetch(after)
        entry[1] = found.version if found is not None else None
        return found

    registry = ModelRegistry(
        recorded.chain[0], look, refresh_seconds=0.5, review=0.5, decline=0.9, watch=True,
        newest_seen=fetch.newest_seen,
    )  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert registry.current().version == "v00003.000001"  # the first look-up, in line
        later = learned_chain(recorded.retrained_chain[0], recorded.retrain, 1, 900)[0]
        assert later.version == "v00003.000002"
        store(engine, row(later))
        stored = time.monotonic()
        while registry.current().version != "v00003.000002" and time.monotonic() - stored < 60:
            time.sleep(0.05)
    assert registry.current().version == "v00003.000002"
    # Found by a look-up under way when it was recorded, or by the next one: none passed it by.
    found = [i for i, (_, version) in enumerate(looks) if version == "v00003.000002"]
    first_after = next((i for i, (t, _) in enumerate(looks) if t >= stored), len(looks))
    assert found and found[0] <= first_after, looks
    assert refusals(caplog) == ["v00009.000001"]  # once, though the watcher looked many times


def mark_learned(engine: Engine, version: str) -> None:
    """A label learned by ``version``, as record_version marks it."""
    with engine.begin() as c:
        c.execute(
            insert(fraud_labels),
            [
                {
                    "topic": "labels", "kafka_partition": 0, "kafka_offset": 1,
                    "transaction_id": "t1", "card_id": "c1", "is_fraud": True,
                    "reported_at": utc_naive(NOW), "status": "claimed",
                    "learned_version": version, "first_seen_at": utc_naive(NOW),
                }
            ],
        )  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize("labelled", [False, True])
def test_the_learner_passes_over_a_refused_row_even_if_labels_name_it(
    all_recorded: Engine, admin_engine: Engine, recorded: Recorded, labelled: bool
) -> None:
    """A learner resumed at v00003 finds v00003.000001 with a lying sequence. Whether labels
    name it or not, it is passed over (review 20, item 1: before, labels naming it stopped the
    learner, so that a forged row credited with labels kept the flow from starting): it is no
    state to go on from, and the labels it is said to hold are in no version that loads, so
    the learner learns them again on v00003 (knows() does not skip them)."""
    engine = all_recorded
    _lie_in_the_columns(admin_engine, recorded)
    _forge_above(engine, recorded)  # refused too, and of another lineage: passed over
    if labelled:
        mark_learned(engine, "v00003.000001")
    lineages = Lineages(NewerVersionsInMySQL("-", engine, key=TEST_KEY), refresh_seconds=0)
    assert lineages.newer_than("v00003", now=True) is None  # nothing newer that loads
    assert lineages.newer_than("v00003") is None
    learner = OnlineLearner(recorded.retrain, publish_every=10)
    replayed = msgspec.structs.replace(example(1, True), learned_version="v00003.000001")
    assert not learner.knows(replayed)
    older = Lineages(NewerVersionsInMySQL("-", engine, key=TEST_KEY), refresh_seconds=0)
    found = older.newer_than("v00001.000002", now=True)  # of lineage 1: v00003.000001's are not
    assert found is not None and found.version == "v00003"


@pytest.mark.integration
def test_a_refused_row_rewritten_in_its_place_is_tried_again_and_an_identical_one_is_not(
    all_recorded: Engine,
    admin_engine: Engine,
    recorded: Recorded,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = all_recorded
    _lie_in_the_columns(admin_engine, recorded)
    looking = Looking(engine, recorded.chain[0])
    with caplog.at_level(logging.ERROR):
        assert looking.look() == "v00003"
        with admin_engine.begin() as c:  # deleted and written again as it was: refused, quiet
            mv = model_versions
            c.execute(mv.delete().where(mv.c.version == "v00003.000001"))
        store(engine, row(recorded.retrained_chain[0], sequence=999_999))
        assert looking.look() == "v00003"
        assert sorted(refusals(caplog)) == ["v00001.000003", "v00003.000001"]
        with admin_engine.begin() as c:  # repaired (by the admin account): it loads
            c.execute(update(mv).where(mv.c.version == "v00003.000001").values(sequence=1))
        assert looking.look() == "v00003.000001"


@pytest.mark.integration
def test_refused_rows_are_logged_once_per_process_by_all_its_loaders(
    all_recorded: Engine, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    engine = all_recorded
    _forge_above(engine, recorded)
    counted: list[tuple[str, str]] = []
    shared = RefusedRows(lambda name, why: counted.append((name, why)))
    scoring = NewerVersionsInMySQL("-", engine, key=TEST_KEY, refused=shared)
    learning = NewerVersionsInMySQL("-", engine, key=TEST_KEY, refused=shared)
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert scoring("v00003") is not None and learning("v00003") is not None
    assert refusals(caplog) == ["v00009.000001"]
    assert counted == [("v00009.000001", "identity")]
