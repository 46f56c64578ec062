"""Reasons only where someone reads them (issue 23, item 1).

The flow ranks reason codes only for payments it does not approve and for the rows a caller
marks; an approval is stored without any, and its reasons are computed on demand from its stored
features and model version (``review.explain``). These tests hold that

- on demand, an approval's reasons are exactly what the scorer gives with every row explained,
  for thousands of generated payments and real trained versions of every family;
- the probability is the same, bit for bit, whichever rows are explained, and the same as the
  scorer computed it before reasons became optional (the split summed in the same order);
- ``python -m review.explain`` prints them for stored payments, a version loaded from MySQL.
"""

from __future__ import annotations

import io
import math
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.utils.math import sigmoid
from sqlalchemy import Engine, create_engine, insert, select

from dataflows.messages import Positioned
from dataflows.scoring import score
from features.catalog import FEATURE_NAMES
from features.replay import replay
from model_state import artifact
from model_state.artifact import ModelArtifact
from model_state.offline.train import examples, train_rows
from model_state.scorer import Scorer, explainer_for
from review.explain import Explainers, ShownReasons, explain_command, reasons_shown
from settings.config import Config
from storage.rows import model_version_row
from storage.sink import MySQLSinkPartition
from storage.tables import model_versions, scored_payments
from test_data.generator import simulate
from test_data.spec import SimulationSpec
from tests.flowrun import KEY_FILE, key_for_tests

ROOT = Path(__file__).resolve().parent.parent
BATCH = 500  # as the flow's Kafka batches reach the score step


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


@pytest.fixture(scope="module")
def versions(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained version of each family: ``boosted`` is the session's (``model_dir``); ``basis``
    and ``linear`` are trained the same way on the same kind of history."""
    spec = SimulationSpec(seed=5, days=14, cards=800, merchants=160)
    sim = simulate(spec)
    rows = examples(sim.stream, sim.truth)
    folders = {"boosted": model_dir}
    for family in ("basis", "linear"):
        folders[family] = tmp_path_factory.mktemp(family)
        train_rows(
            rows, folders[family], key=key_for_tests(), seed=5, family=family,
            validation_days=3, epochs=1,
        )  # fmt: skip
    return folders


@pytest.fixture(scope="module")
def stream() -> list[Positioned[Any]]:
    """Thousands of payments of another history, with the features the flow gives them."""
    sim = simulate(SimulationSpec(seed=23, days=5, cards=1000, merchants=200))
    return [
        Positioned(payment, 0, i, features)
        for i, (payment, features) in enumerate(replay(sim.stream))
    ]


def loaded(folder: Path) -> ModelArtifact:
    return artifact.load(folder, key=key_for_tests())


def flows_scorer(version: ModelArtifact, probabilities: Sequence[float]) -> Scorer:
    """The scorer the flow's registry makes, with thresholds that leave about a tenth of
    ``probabilities`` in review or decline (generated traffic is mostly legitimate)."""
    review, decline = np.quantile(probabilities, [0.9, 0.98]).tolist()
    return Scorer(
        version.model,
        version.version,
        review=review,
        decline=decline,
        positive_weight=version.metadata.positive_weight,
        drift_reference=version.metadata.drift_reference,
    )


def in_batches(rows: Sequence[Any], size: int = BATCH) -> list[Sequence[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def todays_probabilities(model: Any, positive_weight: float, rows: Sequence[dict]) -> list[float]:
    """The probability as the scorer computed it before reasons became optional (every row
    split and explained): the batch's split summed by NumPy for the ``boosted`` family, each
    payment's contributions summed in order for the others; River's sigmoid."""
    explain = explainer_for(model)
    log_weight = math.log(positive_weight)
    batch = getattr(explain, "batch", None)
    if batch is None:
        out = []
        for x in rows:
            contributions, offset = explain(x)
            out.append(float(sigmoid(sum(contributions.values()) + offset - log_weight)))
        return out
    log_odds = batch(rows).sum(axis=1) + (explain.offset - log_weight)  # type: ignore[attr-defined]
    with np.errstate(over="ignore"):
        p = np.where(
            log_odds < -30, 0.0, np.where(log_odds > 30, 1.0, 1.0 / (1.0 + np.exp(-log_odds)))
        )
    return p.tolist()


@pytest.mark.parametrize("family", ["boosted", "basis", "linear"])
def test_an_approvals_reasons_on_demand_are_what_the_flow_would_have_stored(
    family: str, versions: dict[str, Path], stream: list[Positioned[Any]]
) -> None:
    version = loaded(versions[family])
    features = [p.features for p in stream]
    probe = Scorer(version.model, version.version, review=1.0, decline=1.0,
                   positive_weight=version.metadata.positive_weight)  # fmt: skip
    scorer = flows_scorer(version, probe.probabilities(features))
    # The flow's score step, batch by batch: the rows it stores.
    stored = [row for batch in in_batches(stream) for row in score(scorer, list(batch))]
    # What it would have stored with every payment explained.
    everything = [s for b in in_batches(features) for s in scorer.score_batch(b, explain=True)]
    approved = [i for i, s in enumerate(everything) if s.decision == "approve"]
    assert len(stream) >= 5_000
    assert len(approved) >= 3_000 and len(stream) - len(approved) >= 300

    assert [r["decision"] for r in stored] == [s.decision for s in everything]
    assert [bits(r["fraud_probability"]) for r in stored] == [
        bits(s.probability) for s in everything
    ]
    for row, full in zip(stored, everything, strict=True):
        assert full.reasons is not None and len(full.reasons) <= 3
        expected = [] if full.decision == "approve" else list(full.reasons)
        assert row["reason_codes"] == expected, row["transaction_id"]

    # On demand, one approval at a time as the review page asks: the version loaded from its
    # folder (signature checked), the stored features (as JSON gives them back).
    explainers = Explainers(versions[family], key_for_tests(), create_engine("sqlite://"))
    for i in approved:
        back = msgspec.json.decode(msgspec.json.encode(stored[i]["features"]))
        assert explainers.reasons(version.version, [back]) == [everything[i].reasons], i
    # And a whole page of them at once gives the same.
    page = [stored[i]["features"] for i in approved[:50]]
    assert explainers.reasons(version.version, page) == [
        everything[i].reasons for i in approved[:50]
    ]
    # Some approval has reasons to show (not all empty).
    assert sum(1 for i in approved if everything[i].reasons) > len(approved) // 2


@pytest.mark.parametrize("family", ["boosted", "basis", "linear"])
def test_the_probability_is_todays_whichever_rows_are_explained_on_a_stream(
    family: str, versions: dict[str, Path], stream: list[Positioned[Any]]
) -> None:
    version = loaded(versions[family])
    weight = version.metadata.positive_weight
    features = [p.features for p in stream]
    scorer = Scorer(version.model, version.version, review=0.2, decline=0.6, positive_weight=weight)
    today = [
        bits(p)
        for b in in_batches(features)
        for p in todays_probabilities(version.model, weight, b)
    ]
    rng = np.random.default_rng(3)
    for explain in (False, True, "random"):
        got = [
            bits(s.probability)
            for b in in_batches(features)
            for s in scorer.score_batch(
                b, explain=rng.random(len(b)) < 0.1 if explain == "random" else explain
            )
        ]
        assert got == today, explain
    assert [bits(p) for b in in_batches(features) for p in scorer.probabilities(b)] == today


# Random payments: values around the forest's tail floors, zeros, huge amounts, negatives.
values = (
    st.floats(-5, 5e6, allow_nan=False)
    | st.sampled_from([0.0, 1.0, 2.5, 49.99, 220.0])
    | st.floats(0, 1)
)
rows = st.lists(
    st.lists(values, min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
    min_size=1,
    max_size=40,
)


@pytest.fixture(scope="module")
def boosted(model_dir: Path) -> ModelArtifact:
    return loaded(model_dir)


@settings(max_examples=150, deadline=None)
@given(rows=rows, data=st.data())
def test_the_probability_is_bit_identical_explained_or_not(
    boosted: ModelArtifact, rows: list[list[float]], data: st.DataObject
) -> None:
    """Any payments, any explain mask: the probability's bits do not depend on which rows are
    explained, and are today's (the full split, summed in the same order)."""
    x = [dict(zip(FEATURE_NAMES, r, strict=True)) for r in rows]
    mask = data.draw(st.lists(st.booleans(), min_size=len(x), max_size=len(x)))
    weight = data.draw(st.sampled_from([1.0, 3.0]))
    review = data.draw(st.floats(0.0, 1.0))
    scorer = Scorer(boosted.model, "v", review=review, decline=max(review, 0.9),
                    positive_weight=weight)  # fmt: skip
    today = [bits(p) for p in todays_probabilities(boosted.model, weight, x)]
    some = scorer.score_batch(x, explain=mask)
    every = scorer.score_batch(x, explain=True)
    assert [bits(s.probability) for s in some] == today
    assert [bits(s.probability) for s in every] == today
    assert [bits(p) for p in scorer.probabilities(x)] == today
    for s, e, m, one in zip(some, every, mask, x, strict=True):
        assert s.decision == e.decision
        assert s.reasons == (e.reasons if m or s.decision != "approve" else None)
        assert scorer.reasons([one]) == [e.reasons]  # on demand, alone, as in a batch


@settings(max_examples=100, deadline=None)
@given(rows=rows, data=st.data())
def test_a_split_ranks_later_what_score_batch_ranks_at_once(
    boosted: ModelArtifact, rows: list[list[float]], data: st.DataObject
) -> None:
    """The flow splits a batch once and marks the rows to explain after the rules (which need
    the probabilities) have decided: for any payments and any marks, one split ranked with any
    masks, one after the other, gives what ``score_batch`` gives with each mask."""
    x = [dict(zip(FEATURE_NAMES, r, strict=True)) for r in rows]
    review = data.draw(st.floats(0.0, 1.0))
    scorer = Scorer(boosted.model, "v", review=review, decline=max(review, 0.9))
    split = scorer.split_batch(x)
    plain = scorer.score_batch(x)
    assert split.probabilities == [s.probability for s in plain]
    assert split.decisions == [s.decision for s in plain]
    for _ in range(3):
        mask = data.draw(st.lists(st.booleans(), min_size=len(x), max_size=len(x)))
        assert split.scores(mask) == scorer.score_batch(x, explain=mask)
    assert split.scores(True) == scorer.score_batch(x, explain=True)


@pytest.mark.parametrize("family", ["boosted", "basis", "linear"])
def test_a_split_of_every_family_ranks_what_score_batch_does(
    family: str, versions: dict[str, Path], stream: list[Positioned[Any]]
) -> None:
    version = loaded(versions[family])
    features = [p.features for p in stream[:600]]
    probabilities = [s.probability for s in flows_scorer(version, [0.5]).score_batch(features)]
    scorer = flows_scorer(version, probabilities)
    rng = np.random.default_rng(11)
    for b in in_batches(features, 97):
        mask = (rng.random(len(b)) < 0.2).tolist()
        split = scorer.split_batch(b)
        assert split.scores(mask) == scorer.score_batch(b, explain=mask)
        assert [s.reasons or () for s in split.scores(True)] == scorer.reasons(b)


def test_an_explain_mask_of_the_wrong_length_is_refused(boosted: ModelArtifact) -> None:
    scorer = Scorer(boosted.model, "v", review=0.5, decline=0.9)
    x = [dict.fromkeys(FEATURE_NAMES, 1.0)] * 3
    with pytest.raises(
        ValueError, match="explain: expected one flag for each of the 3 rows, got 2"
    ):
        scorer.score_batch(x, explain=[True, False])
    assert scorer.score_batch([], explain=[]) == []


def test_the_pages_show_stored_reasons_and_compute_an_approvals(
    model_dir: Path, stream: list[Positioned[Any]]
) -> None:
    version = loaded(model_dir)
    x = stream[7].features
    (expected,) = Scorer(version.model, version.version, review=1.0, decline=1.0,
                         positive_weight=version.metadata.positive_weight).reasons([x])  # fmt: skip
    assert expected
    rows = [
        SimpleNamespace(transaction_id=t, decision=d, reason_codes=r, model_version=v)
        for t, d, r, v in [
            ("stored", "review", ["amount_eur"], version.version),
            ("rule-hit", "approve", ["is_night"], version.version),
            ("approved", "approve", [], version.version),
            ("gone", "approve", [], version.version),  # deleted between the page's reads
        ]
    ]
    features = {"stored": x, "rule-hit": x, "approved": x}
    explainers = Explainers(model_dir, key_for_tests(), create_engine("sqlite://"))
    shown = reasons_shown(explainers, rows, features)
    assert shown["stored"] == ShownReasons(("amount_eur",), on_demand=False)
    assert shown["rule-hit"] == ShownReasons(("is_night",), on_demand=False)
    assert shown["approved"] == ShownReasons(expected, on_demand=True)
    assert shown["gone"] == ShownReasons((), True, "its stored features were not found")
    # A version that cannot be loaded: tests/test_review_integration.py (MySQL is asked).


@pytest.mark.integration
def test_the_command_prints_an_approvals_reasons_from_a_version_in_mysql(
    engine: Engine, review_engine: Engine, database_config: Config, model_dir: Path,
    stream: list[Positioned[Any]], tmp_path: Path,
) -> None:  # fmt: skip
    """Stored as the flow stores them (its score step, the bulk sink); the version only in
    ``model_versions``; ``python -m review.explain`` prints the reasons the flow would have
    stored, on demand for approvals and as stored for the others, reading as the review
    queue's account."""
    version = loaded(model_dir)
    with engine.begin() as c:
        c.execute(
            insert(model_versions),
            [model_version_row(metadata=msgspec.to_builtins(version.metadata),
                               payload=version.payload, artifact_path="elsewhere")],
        )  # fmt: skip
    payments = stream[:2_000]
    features = [p.features for p in payments]
    scorer = flows_scorer(version, Scorer(version.model, version.version, review=1.0,
                          decline=1.0).probabilities(features))  # fmt: skip
    rows = [row for batch in in_batches(payments) for row in score(scorer, list(batch))]
    MySQLSinkPartition(engine, scored_payments).write_batch(rows)
    everything = [s for b in in_batches(features) for s in scorer.score_batch(b, explain=True)]
    expected = {r["transaction_id"]: s for r, s in zip(rows, everything, strict=True)}

    empty = tmp_path / "no-versions-here"
    empty.mkdir()
    explainers = Explainers(empty, key_for_tests(), review_engine)
    ids = list(expected)
    out, err = io.StringIO(), io.StringIO()
    command = [*ids, "no-such-payment"]
    assert explain_command(explainers, review_engine, command, out=out, err=err) == 1
    assert err.getvalue() == "no-such-payment: no scored payment with this transaction id\n"
    lines = out.getvalue().splitlines()
    assert len(lines) == len(ids)
    for txid, line in zip(ids, lines, strict=True):
        s = expected[txid]
        how = "on demand" if s.decision == "approve" else "stored"
        assert line == (
            f"{txid}  {s.decision}  {version.version}  "
            f"reasons: {', '.join(s.reasons or ()) or 'none'}  ({how})"
        )
    # --recompute: every stored reason agrees with a fresh computation.
    out = io.StringIO()
    assert explain_command(explainers, review_engine, ids, recompute=True, out=out, err=err) == 0
    assert "stored differ" not in out.getvalue()

    # The real command, on one approval and one payment in review or decline.
    approval = next(t for t, s in expected.items() if s.decision == "approve" and s.reasons)
    flagged = next(t for t, s in expected.items() if s.decision != "approve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    env |= {
        "PAYSCORE_ANALYST_MYSQL_URL": database_config.analyst_mysql_dsn,
        "PAYSCORE_MODEL_DIR": str(empty),
        "PAYSCORE_MODEL_KEY_FILE": str(KEY_FILE),
    }
    run = subprocess.run(
        [sys.executable, "-m", "review.explain", approval, flagged, "--contributions"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert printed[0] == (
        f"{approval}  approve  {version.version}  "
        f"reasons: {', '.join(expected[approval].reasons or ())}  (on demand)"
    )
    assert sum(1 for line in printed if line.startswith("    ")) == 2 * len(FEATURE_NAMES)
    with engine.connect() as c:
        stored = c.execute(
            select(scored_payments.c.reason_codes).where(
                scored_payments.c.transaction_id == approval
            )
        ).scalar_one()
    assert stored == []
