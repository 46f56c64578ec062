"""Forged ``model_versions`` rows may delay adoption, never stop the flow (review 20, items 1,
2, 4 and 7; the reviewer's repro tests, on the shared services). The attacker is the model
tools' account, which may add rows to ``model_versions`` and ``model_candidates``:

1. rows forged at the learner's next names: each version is recorded under the next free name,
   its labels credited to that name, never to the forged row; the learner is built again
   (a restart) without stopping, even on a database where labels were credited to forged rows
   before the fix;
4. a forged row's lineage does not name the next promotion;
7. a refused challenger is logged once, as a refused row is (event, metric, its own table);
2. a flood of forged rows: each later look-up reads light pages and verifies a bounded number
   of rows; a refused row is verified once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, event, func, insert, select, update

from dataflows import metrics
from dataflows.learning import Lineages, learn_step
from model_state import artifact
from model_state.checkpoints import _VersionPartition
from model_state.learner import OnlineLearner
from model_state.offline.shadow import promote
from model_state.stored_versions import VERIFY_BUDGET, NewerVersionsInMySQL, RefusedRows
from storage.rows import model_version_row
from storage.shadow import record_action
from storage.tables import fraud_labels, model_candidates, model_versions, scored_payments
from storage.versions import fetch_version
from test_data.generator import simulate
from test_data.spec import SimulationSpec
from tests.builders import TEST_KEY
from tests.flowrun import flow_env, key_for_tests, produce, run_flow
from tests.test_forged_versions import (  # noqa: F401 (the module-scoped fixture)
    NOW,
    Looking,
    Recorded,
    claim_labels_at,
    forged,
    recorded,
    refusals,
    row,
    store,
)
from tests.test_versions_delta import example

pytestmark = pytest.mark.integration


def publish(learner: OnlineLearner, versions: int, first_offset: int) -> list:
    """``versions`` versions of ``learner``, each from 10 labels at offsets of topic ``labels``
    from ``first_offset`` on."""
    out = []
    for k in range(versions):
        for i in range(10):
            offset = first_offset + 10 * k + i
            labelled = example(300 + offset, i % 3 == 0)
            learner.learn(msgspec.structs.replace(labelled, label_partition=0, label_offset=offset))
        out.append(learner.publish(NOW))
    return out


def learned_by(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as c:
        return dict(
            c.execute(select(fraud_labels.c.kafka_offset, fraud_labels.c.learned_version)).all()
        )


def test_versions_blocked_by_forged_rows_go_to_the_next_free_name_and_the_flow_restarts(
    engine: Engine,
    models_engine: Engine,
    recorded: Recorded,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 1. Before: the labels were credited to the forged .000008/.000009 and building the
    learner again raised ModelMismatchError (the flow exited 1, on every start)."""
    chain = recorded.chain
    store(engine, row(recorded.root), *(row(v) for v in chain))  # valid v00001 .. v00001.000007
    store(models_engine, *(forged(chain[4], f"v00001.{n:06d}") for n in (8, 9, 10)))

    sink = _VersionPartition(engine, tmp_path, "labels", 0.0, TEST_KEY)
    learner = OnlineLearner(chain[6], publish_every=10)
    claim_labels_at(engine, [(0, offset) for offset in range(30)])
    with caplog.at_level(logging.ERROR):
        sink.write_batch(publish(learner, 2, 0))
    # .000008 -> .000011 (past the three forged rows), .000009 -> .000012 (past it too)
    marked = learned_by(engine)
    assert {o: marked[o] for o in range(20)} == {
        o: "v00001.000011" if o < 10 else "v00001.000012" for o in range(20)
    }
    blocked = [r for r in caplog.records if getattr(r, "event", "") == "version_blocked"]
    assert sorted(r.version for r in blocked) == ["v00001.000008", "v00001.000009"]  # type: ignore[attr-defined]
    with engine.connect() as c:
        stored = fetch_version(c, "v00001.000012")
    assert stored is not None and stored.metadata["parent_version"] == "v00001.000011"
    assert Looking(engine, chain[6]).look() == "v00001.000012"  # scoring goes on

    # The learner at work finds .000012 (its own, renamed) and names its next version after it.
    lineages = Lineages(NewerVersionsInMySQL("-", engine, key=TEST_KEY), refresh_seconds=0)
    step = learn_step(chain[6], publish_every=10, publish_seconds=30.0, lineages=lineages)(None)
    assert step._learner.version == "v00001.000012"  # built: it goes on from the newest
    step._learner = learner  # as if it had been running all along (at .000009, with more)
    step._adopt_newer()
    assert step._learner is learner and learner.version == "v00001.000012"
    sink.write_batch(publish(learner, 1, 20))
    assert {marked for o, marked in learned_by(engine).items() if o >= 20} == {"v00001.000013"}

    # A database attacked before the fix: labels credited to a forged row. A restart builds.
    with engine.begin() as c:
        fl = fraud_labels
        c.execute(update(fl).where(fl.c.kafka_offset == 25).values(learned_version="v00001.000010"))
    for resume in (None, step.snapshot()):
        build = learn_step(
            chain[6],
            publish_every=10,
            publish_seconds=30.0,
            lineages=Lineages(NewerVersionsInMySQL("-", engine, key=TEST_KEY), refresh_seconds=5),
            root=recorded.root,
        )
        assert build(resume)._learner.version == "v00001.000013"


def test_a_forged_rows_lineage_does_not_name_the_next_promotion(
    engine: Engine,
    models_engine: Engine,
    recorded: Recorded,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Item 4. Before: MAX(lineage) over every row named it v1000000000000000000 (ValueError);
    and a forged row at the next number would stand where the promotion goes."""
    chain = recorded.chain
    store(engine, row(recorded.root), *(row(v) for v in chain))
    store(
        models_engine,
        forged(chain[0], "v999999999999999999"),
        forged(chain[1], "v00002.000001"),  # lineage 2 is taken: the promotion is v00003
    )
    with models_engine.begin() as c:  # a forged candidate's name holds a lineage too
        candidate = row(chain[2]) | {"version": "v00777"}
        columns = set(model_candidates.c.keys())
        c.execute(
            model_candidates.insert(),
            [{k: v for k, v in candidate.items() if k in columns} | {"verdict": "forged"}],
        )
    made = promote(
        models_engine, tmp_path / "models", "v00001.000007", key=TEST_KEY, by="op", note=None
    )
    assert made.version == "v00003", made.version
    assert Looking(engine, chain[6]).look() == "v00003"


def refused_total(reason: str) -> float:
    return REGISTRY.get_sample_value("payscore_model_versions_refused_total", {"reason": reason})


def test_a_refused_challenger_is_logged_once_as_a_refused_row(
    engine: Engine,
    models_engine: Engine,
    recorded: Recorded,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 7. Before: a WARNING at every look-up, no event, no metric, named
    model_versions[v00005]."""
    chain = recorded.chain
    store(engine, row(recorded.root), *(row(v) for v in chain))
    copy = row(chain[0]) | {"version": "v00005"}
    columns = set(model_candidates.c.keys())
    with models_engine.begin() as c:
        c.execute(
            model_candidates.insert(),
            [{k: v for k, v in copy.items() if k in columns} | {"verdict": "forged"}],
        )
        record_action(c, "shadow", "v00005", by="op")
    looking = Looking(engine, chain[6])
    fetch = NewerVersionsInMySQL(
        "-", engine, key=TEST_KEY, refused=RefusedRows(metrics.version_refused)
    )
    looking.registry._fetch_challenger = fetch.challenger
    before = refused_total("identity")
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            looking.look()
    said = [r for r in caplog.records if "v00005" in r.getMessage()]
    assert looking.registry.challenger() is None
    assert len(said) == 1, [f"{r.levelname} {r.getMessage()[:120]}" for r in said]
    assert said[0].levelno == logging.ERROR and refusals(caplog) == ["v00005"]
    assert said[0].getMessage().startswith("model_candidates row v00005 refused")
    assert "model_versions[" not in said[0].getMessage()
    assert refused_total("identity") == before + 1


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on ``engine`` meanwhile."""
    seen: list[str] = []

    def count(*args: object) -> None:
        seen.append(str(args[2])[:40])

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def flood(models_engine: Engine, template: dict, first: int, count: int) -> None:
    with models_engine.begin() as c:
        c.execute(
            insert(model_versions),
            [
                template | {"version": f"v{k:05d}", "lineage": k, "sequence": 0}
                for k in range(first, first + count)
            ],
        )


def test_a_look_up_over_a_flood_of_forged_rows_does_bounded_work(
    engine: Engine,
    models_engine: Engine,
    recorded: Recorded,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 2, with 600 rows rather than 20,000 (the bound is what is checked, not a time).
    Before: every look-up read the rows in pages of 16 with the artifact's MD5, fetched each
    row it did not know whole and verified it, however many: 600 rows cost 38 pages at every
    look-up, and 200 new ones 200 full fetches in one look-up."""
    chain = recorded.chain
    store(engine, row(recorded.root), *(row(v) for v in chain))
    template = model_version_row(
        metadata=msgspec.to_builtins(chain[0].metadata), payload=b"x", artifact_path="-"
    )
    flood(models_engine, template, 10, 600)
    fetch = NewerVersionsInMySQL("-", engine, key=TEST_KEY)
    with caplog.at_level(logging.ERROR):
        first = fetch("v00001.000001")  # at start: every row verified, each once
        assert first is not None and first.version == "v00001.000007"
        assert len(refusals(caplog)) == 600
        with counting(engine) as statements:
            again = fetch("v00001.000001")
        assert again is not None and again.version == "v00001.000007"
        # light pages down to the valid version, then its metadata and its row: no forged row
        # fetched again
        assert len(statements) <= 1 + 2, statements  # 600 rows: one page
        assert fetch.work.verified == 1

        flood(models_engine, template, 5_000, 200)  # 200 more, unknown, above all
        found, looks = None, 0
        while found is None:
            looks += 1
            assert looks <= math.ceil(200 / VERIFY_BUDGET) + 1
            with counting(engine) as statements:
                found = fetch("v00001.000001")
            assert len(statements) <= 1 + 2 * VERIFY_BUDGET + 2, len(statements)  # 800: 1 page
            assert fetch.work.verified <= VERIFY_BUDGET
        assert found.version == "v00001.000007" and looks > 1
        assert len(refusals(caplog)) == 800  # each once
    assert fetch.newest_seen() == (5_199, 0)

    # The light rows a look-up reads are bounded too: with a budget of 100, the 800 known rows
    # take 8 look-ups, each going on where the last stopped, the ninth finds the version.
    shared = RefusedRows()
    small = NewerVersionsInMySQL("-", engine, key=TEST_KEY, refused=shared, scan_budget=100)
    assert small("v00001.000001") is not None  # the first, at start: every row
    looks, found = 0, None
    while found is None:
        looks += 1
        assert looks <= 9
        found = small("v00001.000001")
        assert small.work.scanned <= 100 and small.work.verified <= 1
    assert found.version == "v00001.000007" and looks == 9


def test_the_flow_restarts_after_forged_rows_stood_at_its_next_names(
    topics: dict[str, str], mysql_url: str, engine: Engine, models_engine: Engine, models: Path
) -> None:
    """Item 1, end to end (ops/run_flow.sh, 1 process x 2 workers): the model tools' account
    adds v00001.000001 to .000040, each a validly signed copy of the pre-trained root. The flow
    scores three days and learns their labels; its versions go past the forged names and its
    labels are credited to none of them. Before: they were, and the next run of the flow exited
    1 (ModelMismatchError as the learner was built)."""
    root = artifact.load(models, key=key_for_tests())  # the pre-trained v00001
    forged_names = {f"v00001.{n:06d}" for n in range(1, 41)}
    store(models_engine, *(forged(root, name) for name in sorted(forged_names)))

    sim = simulate(SimulationSpec(seed=21, days=6, cards=300, merchants=60))
    payments = list(sim.payments())
    cut = payments[0].event_timestamp + 3 * 86_400
    first = [p for p in payments if p.event_timestamp < cut]
    later = [p for p in payments if p.event_timestamp >= cut]
    first_ids = {p.transaction_id for p in first}
    labels = [label for label in sim.labels() if label.transaction_id in first_ids]
    env = flow_env(
        topics, mysql_url, models, publish_every_labels="50", label_wait_seconds="5",
        label_retry_seconds="1",
    )  # fmt: skip
    produce(topics, first)
    produce(topics, labels)
    run_flow(env, processes=1, workers=2)
    with engine.connect() as c:
        credited = set(c.execute(select(fraud_labels.c.learned_version).distinct()).scalars())
    credited.discard(None)
    assert credited and not credited & forged_names, sorted(credited)

    produce(topics, later)
    run_flow(env, processes=1, workers=2)  # before: exit 1
    with engine.connect() as c:
        stored = c.execute(select(func.count()).select_from(scored_payments)).scalar_one()
    assert stored == len(payments)
