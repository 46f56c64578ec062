"""The label claim as one JSON document a statement (:func:`storage.labels.claim_labels`)
against the four statements it replaced (``test_data/claims_before.py``), on the real server:
the same batches, replays, implicit negatives and versions in between leave byte-identical
ledger, payment and implicit rows, and hand the learner byte-identical labels (each pickled
alone, as it crosses to the learner's process; the outcomes equal besides)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, insert

from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel
from storage import labels
from storage.engine import ConcurrentChangeError
from storage.feature_vector import pack
from storage.implicit import claim_implicit
from storage.labels import Claimed, ReadLabel, claim_labels
from storage.sink import MySQLSinkPartition
from storage.tables import fraud_labels, implicit_labels, review_verdicts, scored_payments
from test_data.claims_before import claim_labels_before
from tests.test_labels import T0, _row

NAIVE_T0 = T0.replace(tzinfo=None)
NOW = datetime(2026, 5, 1, 8, 30, 0, 123456, tzinfo=UTC)
FULL = {name: (i * 0.37 - 3.1) * (1 if i % 3 else -1e-7) for i, name in enumerate(FEATURE_NAMES)}
# Payments by how their features are stored: the packed vector says them all (the usual row),
# or only the JSON can (no vector, a partial dict, another catalogue's vector, a NaN packed).
STORED: dict[str, tuple[str, dict[str, float], bytes | None]] = {
    "t1": ("c-1", FULL, pack(FULL)),
    "t2": ("c-1", {**FULL, "amount_eur": 0.0, "card_count_1h": -0.0}, None),
    "t3": ("c-2", FULL, pack(FULL)),
    "t4": ("c-1", {"amount_eur": 1.0}, pack({"amount_eur": 1.0})),
    "t5": ("c-2", {**FULL, "amount_eur": 1e300}, b"\x09" + pack(FULL)[1:]),
    "t6": ("c-1", {**FULL, "amount_eur": 7.0}, pack({**FULL, "amount_eur": 7.0})),
    "t7": ("c-1", FULL, pack(FULL)),
}
IDS = [*STORED, "t8"]  # t8 is never stored


@pytest.fixture
def stored(engine: Engine, review_engine: Engine) -> Engine:
    rows = []
    for offset, (t, (card, features, vector)) in enumerate(STORED.items()):
        row = _row(t, card)
        row.update(
            features=features,
            feature_vector=vector,
            kafka_offset=offset,
            event_time=NAIVE_T0 + timedelta(hours=offset),
        )
        rows.append(row)
    MySQLSinkPartition(engine, scored_payments).write_batch(rows)
    with review_engine.begin() as c:  # alice's verdicts on t1 and t2 (fraud, 7 days on)
        c.execute(
            insert(review_verdicts),
            [
                {
                    "transaction_id": t, "card_id": "c-1", "analyst": "alice", "is_fraud": True,
                    "decided_at": NAIVE_T0 + timedelta(days=7), "model_version": "v00001",
                    "model_decision": "review", "model_probability": 0.5,
                    "labels_topic": "labels",
                }
                for t in ("t1", "t2")
            ],
        )  # fmt: skip
    return engine


Step = tuple[str, Any]  # ("claim", [(txn, card, fraud, days, analyst, replay_of)]), ...


def steps() -> st.SearchStrategy[list[Step]]:
    label = st.tuples(
        st.sampled_from(IDS),
        st.sampled_from(["c-1", "c-2"]),
        st.booleans(),
        st.sampled_from([-1.0, 7.0, 8.5]),  # -1: reported before the payment
        st.sampled_from([None, "alice", "bob"]),
        st.integers(min_value=0, max_value=30),  # > 0: replay that earlier message instead
    )
    claim = st.tuples(st.just("claim"), st.lists(label, min_size=1, max_size=8))
    implicit = st.tuples(st.just("implicit"), st.integers(min_value=1, max_value=3))
    learned = st.tuples(st.just("learned"), st.integers(min_value=0, max_value=30))
    return st.lists(st.one_of(claim, claim, implicit, learned), min_size=1, max_size=7)


def play(
    c: Connection,
    claim: Callable[..., Claimed],
    script: list[Step],
    sample_rate: float,
) -> tuple[list[tuple[object, list[bytes]]], list[tuple[Any, ...]]]:
    """Run ``script`` in the transaction of ``c``; the outcomes with each label for the learner
    pickled alone, and every row after."""
    outcomes: list[tuple[object, list[bytes]]] = []
    read: list[ReadLabel] = []
    implicit = 0
    for kind, arg in script:
        if kind == "claim":
            batch: list[ReadLabel] = []
            for t, card, fraud, days, analyst, replay in arg:
                if replay and replay <= len(read) and read[replay - 1] not in batch:
                    batch.append(read[replay - 1])  # the same message read again (a replay)
                    continue
                label = FraudLabel(
                    transaction_id=t, card_id=card, is_fraud=fraud,
                    reported_at=T0 + timedelta(days=days), analyst=analyst,
                )  # fmt: skip
                batch.append(ReadLabel(label, len(read) % 2, 100 + len(read)))
                read.append(batch[-1])
            outcome = claim(
                c, "labels", batch, expired=lambda r: r.offset % 3 == 0, now=NOW,
                sample_rate=sample_rate,
            )  # fmt: skip
            outcomes.append((outcome, [pickle.dumps(x, 5) for x in outcome.learnable]))
        elif kind == "implicit":  # the oldest unlabelled payments, as the flow claims them
            implicit += 1
            done = claim_implicit(
                c, claim=implicit, cutoff=T0 + timedelta(days=30), delay=timedelta(days=1),
                sample_rate=sample_rate, limit=arg, now=NOW,
            )  # fmt: skip
            outcomes.append((done, [pickle.dumps(x, 5) for x in done.learnable]))
        else:  # a version learned the label at that position (the version sink's mark)
            c.exec_driver_sql(
                f"UPDATE {fraud_labels.name} SET learned_version = 'v00002' "
                "WHERE kafka_offset = %s AND status = 'claimed' AND learned_version IS NULL",
                (100 + arg,),
            )
    rows = []
    for table, order in (
        (fraud_labels.name, "topic, kafka_partition, kafka_offset"),
        (scored_payments.name, "transaction_id"),
        (implicit_labels.name, "transaction_id, kind"),
    ):
        rows += [(table, *r) for r in c.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order}")]
    return outcomes, rows


WAYS: dict[str, Callable[..., Claimed]] = {"before": claim_labels_before, "now": claim_labels}


def played(engine: Engine, claim: Callable[..., Claimed], script: list[Step], rate: float) -> Any:
    """:func:`play` in a transaction rolled back after (every way starts from the same rows);
    a refusal is an outcome too."""
    with engine.connect() as c:
        transaction = c.begin()
        try:
            return play(c, claim, script, rate)
        except Exception as exc:  # compared: both ways must refuse alike
            return ("refused", type(exc).__name__)
        finally:
            transaction.rollback()


@pytest.mark.integration
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=steps(), rate=st.sampled_from([1.0, 0.5]))
def test_the_claim_leaves_the_rows_and_labels_the_four_statements_left(
    stored: Engine, script: list[Step], rate: float
) -> None:
    before, now = (played(stored, WAYS[way], script, rate) for way in ("before", "now"))
    assert before[0] != "refused", before
    assert now[1] == before[1], "other ledger, payment or implicit rows"
    assert now[0] == before[0], "other outcomes, or other labels for the learner"


@pytest.mark.integration
def test_features_come_from_the_vector_or_the_json_as_the_json_says(stored: Engine) -> None:
    """Every stored kind of row hands the learner the features its JSON holds."""
    reads = [
        ReadLabel(
            FraudLabel(
                transaction_id=t, card_id=card, is_fraud=True, reported_at=T0 + timedelta(days=7)
            ),
            0,
            i,
        )
        for i, (t, (card, _, _)) in enumerate(STORED.items())
    ]
    with stored.begin() as c:
        outcome = claim_labels(c, "labels", reads, now=NOW)
    assert {x.transaction_id: x.features for x in outcome.learnable} == {
        t: features for t, (_, features, _) in STORED.items()
    }


@pytest.mark.integration
def test_a_payment_claimed_meanwhile_as_implicit_makes_the_claim_run_again(
    stored: Engine,
) -> None:
    """Between the read and the mark another transaction claims the payment as an implicit
    negative: the mark finds it changed, the claim refuses (and runs again, as the label join
    does), leaving nothing; run again it claims the fraud as a correction."""
    read = ReadLabel(
        FraudLabel(transaction_id="t1", card_id="c-1", is_fraud=True,
                   reported_at=T0 + timedelta(days=7)),
        0, 0,
    )  # fmt: skip

    def implicit_meanwhile() -> None:
        with stored.begin() as other:
            claim_implicit(
                other, claim=1, cutoff=T0 + timedelta(days=30), delay=timedelta(days=1),
                sample_rate=1.0, limit=1, now=NOW,
            )  # fmt: skip

    with stored.connect() as c:
        run = c.exec_driver_sql

        def read_then_implicit(statement: str, *args: Any, **kwargs: Any) -> Any:
            out = run(statement, *args, **kwargs)
            if statement == labels._READ:  # the claim's read, whole: then the other
                out = out.all()
                implicit_meanwhile()
            return out

        c.exec_driver_sql = read_then_implicit  # type: ignore[method-assign]
        with pytest.raises(ConcurrentChangeError, match="1 of 1 payments"), c.begin():
            claim_labels(c, "labels", [read], now=NOW)
    with stored.begin() as c:
        assert c.exec_driver_sql(f"SELECT COUNT(*) FROM {fraud_labels.name}").scalar() == 0
        again = claim_labels(c, "labels", [read], now=NOW)
    assert again.corrections == 1 and [x.kind.value for x in again.learnable] == ["correction"]


def test_the_ledger_document_has_every_column_of_the_ledger() -> None:
    assert list(labels._LEDGER_TYPES) == [c.name for c in fraud_labels.columns]
