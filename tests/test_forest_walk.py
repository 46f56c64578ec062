"""The compiled kernels give exactly what the NumPy code gave: the forest walk reaches the NumPy
walk's leaves, the Saabas sums are SciPy's, the top reasons a stable sort's, and the learner's
batch expansion learns what learning one label at a time learns."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.catalog import FEATURE_NAMES
from model_state.artifact import ModelArtifact, ModelMetadata
from model_state.learner import OnlineLearner
from model_state.scorer import top_positive
from storage.labels import LabelledPayment
from tests.test_boosted import BOOSTED, LEARNED, as_dict

# Values around the tails' floors, zeros, huge amounts and the values the features take.
values = (
    st.floats(-5, 5e6, allow_nan=False)
    | st.sampled_from([0.0, 1.0, 2.5, *(floor for _, floor in BOOSTED.tails)])
    | st.floats(0, 1)
)
rows = st.lists(
    st.lists(values, min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(rows=rows)
def test_the_compiled_walk_reaches_the_numpy_walks_leaves(rows: list[list[float]]) -> None:
    x = np.array(rows)
    assert BOOSTED.tails, "the test model must have tail columns (missing values)"
    np.testing.assert_array_equal(BOOSTED.leaves(x), BOOSTED.leaves_numpy(x))


@settings(max_examples=100, deadline=None)
@given(rows=rows)
def test_the_compiled_saabas_sums_are_scipys_bit_for_bit(rows: list[list[float]]) -> None:
    at = BOOSTED.leaves(np.array(rows))
    compiled, sparse = BOOSTED.saabas(at), BOOSTED.saabas_sparse(at)
    assert compiled.tobytes() == sparse.tobytes()


@settings(max_examples=60, deadline=None)
@given(rows=rows)
def test_expanding_a_batch_gives_each_rows_own_columns(rows: list[list[float]]) -> None:
    dicts = [as_dict(r) for r in rows]
    assert BOOSTED.expand_many(dicts) == [BOOSTED(d) for d in dicts]


def example(i: int, row: list[float], is_fraud: bool) -> LabelledPayment:
    return LabelledPayment(
        transaction_id=f"t{i}",
        card_id="c",
        merchant_id="m",
        terminal_id="p",
        payment_time=1e9 + i,
        reported_at=1e9 + i + 10,
        is_fraud=is_fraud,
        features=as_dict(row),
        scored_by="v00001",
        label_partition=0,
        label_offset=i,
    )


@settings(max_examples=25, deadline=None)
@given(rows=rows, frauds=st.lists(st.booleans(), min_size=30, max_size=30))
def test_learning_a_prepared_batch_is_learning_one_label_at_a_time(
    rows: list[list[float]], frauds: list[bool]
) -> None:
    start = START
    examples = [example(i, r, f) for i, (r, f) in enumerate(zip(rows, frauds, strict=False))]
    one, batch = OnlineLearner(start, 1000), OnlineLearner(start, 1000)
    for e in examples:
        one.learn(e)
    for e, columns in zip(examples, batch.prepare(examples) or [], strict=True):
        batch.learn(e, columns)
    last_one, last_batch = one._last_step, batch._last_step
    assert dict(last_one.weights) == dict(last_batch.weights)
    assert last_one.intercept == last_batch.intercept
    assert batch.learned_total == one.learned_total == len(examples)


# A lineage root holding the learned boosted test model.
START = ModelArtifact(
    copy.deepcopy(LEARNED),
    ModelMetadata(
        version="v00001",
        parent_version=None,
        origin="test",
        created_at=datetime.now(UTC),
        feature_names=FEATURE_NAMES,
        model_description=repr(LEARNED),
        rows=800,
        frauds=40,
        positive_weight=3.0,
    ),
    b"",
)


@settings(max_examples=300, deadline=None)
@given(
    push=st.lists(
        st.lists(
            st.sampled_from([-1.0, -0.0, 0.0, 0.5, 1.0, 2.0]) | st.floats(-3, 3),
            min_size=6,
            max_size=6,
        ),
        min_size=1,
        max_size=20,
    ),
    k=st.integers(1, 4),
)
def test_the_compiled_top_reasons_are_a_stable_sorts(push: list[list[float]], k: int) -> None:
    """Largest positive first; among equal values the earlier column, as sorted() keeps them."""
    got = top_positive(np.array(push), k).tolist()
    for row, top in zip(push, got, strict=True):
        ranked = sorted(range(len(row)), key=lambda j: row[j], reverse=True)[:k]
        expected = [j for j in ranked if row[j] > 0]
        assert top == expected + [-1] * (k - len(expected))
