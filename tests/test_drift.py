"""Drift: the population stability index of the score and the watched features against the
training distribution a version records (``model_state.drift``), and that record's path through
training, retraining, signing and the online learner."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.catalog import FEATURE_NAMES
from features.contract import FraudLabel, Payment
from features.replay import replay
from model_state import artifact
from model_state.drift import (
    DRIFT_FEATURES,
    SCORE,
    DriftMonitor,
    bin_of,
    bins_of,
    psi,
    reference,
)
from model_state.learner import OnlineLearner
from model_state.offline.retrain import challenge
from model_state.offline.train import Rows, examples, matrix, new_model, probabilities, train
from model_state.signing import UntrustedModelError, sign, verify
from storage.labels import LabelledPayment
from test_data.generator import simulate
from test_data.spec import SimulationSpec
from tests.builders import TEST_KEY, model_metadata
from tests.flowrun import KEY_FILE, key_for_tests

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 1, tzinfo=UTC)
SUBJECTS = (SCORE, *DRIFT_FEATURES)


def sample(seed: int, rows: int, levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random features and probabilities; with ``levels``, every value is one of that many
    (ties, as counts and hours have)."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=(rows, len(FEATURE_NAMES)))
    p = rng.beta(0.5, 20.0, size=rows)
    if levels is not None:
        x, p = np.floor(x * levels / 4), np.floor(p * levels) / levels
    return x, p


# -- bins and the reference ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.integers(-3, 3).map(float) | st.floats(-1e6, 1e6, allow_nan=False), min_size=1
    ),
    bins=st.integers(1, 20),
)
def test_bins_split_the_training_values_into_bins_that_each_hold_some(
    values: list[float], bins: int
) -> None:
    v = np.array(values)
    b = bins_of(v, bins)
    edges, shares = np.array(b["edges"]), np.array(b["shares"])
    assert len(edges) <= bins - 1 and len(shares) == len(edges) + 1
    assert (np.diff(edges) > 0).all()  # sorted, no duplicates
    assert set(edges.tolist()) <= set(values) and (edges < v.max()).all()
    assert (shares > 0).all() and shares.sum() == pytest.approx(1.0, abs=1e-12)
    counts = np.bincount(bin_of(edges, v), minlength=len(shares))
    assert shares.tolist() == (counts / len(v)).tolist()
    if len(set(values)) == 1:  # a constant: one bin, PSI 0 whatever comes
        assert b == {"edges": [], "shares": [1.0]}


def test_bins_are_right_closed() -> None:
    edges = np.array([1.0, 2.0])
    assert bin_of(edges, np.array([1.0, 1.5, 2.0, 2.5])).tolist() == [0, 1, 1, 2]


def test_the_reference_watches_the_score_and_the_drift_features_as_json() -> None:
    x, p = sample(1, 2_000, levels=12)
    ref = reference(x, p)
    assert tuple(ref) == SUBJECTS
    assert msgspec.json.decode(msgspec.json.encode(ref)) == ref
    assert all(len(b["shares"]) <= 10 for b in ref.values())


def test_a_reference_refuses_what_json_cannot_hold_or_the_wrong_shape() -> None:
    x, p = sample(1, 100)
    x[3, FEATURE_NAMES.index("hour_of_day")] = np.nan
    with pytest.raises(ValueError, match="1 of 100 training values of hour_of_day are not"):
        reference(x, p)
    with pytest.raises(ValueError, match=r"features of shape \(100, 41\); expected \(rows, 42\)"):
        reference(x[:, 1:], p)
    with pytest.raises(ValueError, match=r"probabilities of shape \(99,\) for 100 rows"):
        reference(x, p[1:])
    with pytest.raises(ValueError, match="no training rows"):
        reference(x[:0], p[:0])


# -- PSI -------------------------------------------------------------------------------------------


def counts(bins: int | None = None) -> st.SearchStrategy[list[int]]:
    """Payments per bin, at least one in all: ``bins`` of them, or 1 to 12."""
    size = {"min_size": bins, "max_size": bins} if bins else {"min_size": 1, "max_size": 12}
    return st.lists(st.integers(0, 1_000), **size).filter(lambda c: sum(c) > 0)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), scale=st.integers(1, 50))
def test_psi_is_a_symmetric_non_negative_divergence_of_shares(
    data: st.DataObject, scale: int
) -> None:
    expected = np.array(data.draw(counts()), dtype=float)
    actual = np.array(data.draw(counts(len(expected))), dtype=float)
    shares = expected / expected.sum()
    value = psi(shares, actual)
    assert value >= 0.0
    # Symmetric: the reference and the window may swap roles.
    assert psi(actual / actual.sum(), expected) == pytest.approx(value, rel=1e-9, abs=1e-12)
    # Only shares count: the same window, ``scale`` times larger.
    assert psi(shares, actual * scale) == pytest.approx(value, rel=1e-9, abs=1e-12)
    # The order of the bins does not matter.
    order = np.random.default_rng(scale).permutation(len(shares))
    assert psi(shares[order], actual[order]) == pytest.approx(value, rel=1e-9, abs=1e-12)
    # Zero for the reference's own shares.
    assert psi(shares, expected) == pytest.approx(0.0, abs=1e-12)


def test_psi_floors_empty_bins_and_says_what_it_expected() -> None:
    # An empty bin on either side counts as share 1e-4: finite.
    assert psi([0.5, 0.5, 0.0], [1, 0, 1]) == pytest.approx(
        (0.5 - 0.5) * 0 + (1e-4 - 0.5) * np.log(1e-4 / 0.5) + (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    )
    with pytest.raises(ValueError, match=r"shares of shape \(2,\) and actual counts of shape"):
        psi([0.5, 0.5], [1, 2, 3])
    with pytest.raises(ValueError, match="add up to 0"):
        psi([0.5, 0.5], [0, 0])
    with pytest.raises(ValueError, match="floor must be > 0"):
        psi([0.5, 0.5], [1, 1], floor=0.0)


# -- the monitor -----------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1_000), levels=st.none() | st.integers(2, 30), data=st.data())
def test_a_window_of_the_training_values_themselves_has_psi_zero(
    seed: int, levels: int | None, data: st.DataObject
) -> None:
    x, p = sample(seed, 1_500, levels)
    monitor = DriftMonitor(reference(x, p), window=1_500, min_payments=1_500)
    order = np.random.default_rng(seed).permutation(len(p))  # any order, any batches
    start = 0
    while start < len(p):
        size = data.draw(st.integers(1, 700))
        rows = order[start : start + size]
        monitor.observe(x[rows], p[rows])
        start += size
    values = monitor.values()
    assert tuple(values) == SUBJECTS
    assert max(values.values()) < 1e-12


@settings(max_examples=150, deadline=None)
@given(
    window=st.integers(1, 60),
    min_payments=st.integers(1, 80),
    batches=st.lists(st.integers(0, 90), max_size=12),
    seed=st.integers(0, 1_000),
)
def test_the_ring_buffer_is_the_last_window_payments(
    window: int, min_payments: int, batches: list[int], seed: int
) -> None:
    ref = reference(*sample(7, 300, levels=6))
    monitor = DriftMonitor(ref, window=window, min_payments=min_payments)
    x, p = sample(seed, sum(batches), levels=8)
    x *= 1.5  # not the reference's distribution: most bins in use, some empty
    seen = 0
    for size in batches:
        monitor.observe(x[seen : seen + size], p[seen : seen + size])
        seen += size
        last = slice(max(0, seen - window), seen)
        brute = {
            s: np.bincount(
                bin_of(
                    np.array(ref[s]["edges"]),
                    p[last] if s == SCORE else x[last, FEATURE_NAMES.index(s)],
                ),
                minlength=len(ref[s]["shares"]),
            ).tolist()
            for s in SUBJECTS
        }
        assert monitor.counts() == brute
        assert monitor.size == min(seen, window) and monitor.observed == seen
        if seen < min_payments:
            assert monitor.values() == {}
        else:
            want = {s: psi(ref[s]["shares"], brute[s]) for s in SUBJECTS}
            assert monitor.values() == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_the_monitor_is_quiet_until_enough_payments_and_skips_what_it_cannot_compute() -> None:
    x, p = sample(3, 2_000)
    ref = reference(x, p)
    ref.pop("hour_of_day")
    ref["a_feature_since_removed"] = {"edges": [], "shares": [1.0]}
    monitor = DriftMonitor(ref, window=1_000)  # min_payments 1,000
    monitor.observe(x[:999], p[:999])
    assert monitor.values() == {}
    monitor.observe(x[999:1000], p[999:1000])
    assert set(monitor.values()) == set(SUBJECTS) - {"hour_of_day"}
    old = DriftMonitor({})  # a version trained before drift was recorded
    old.observe(x, p)
    assert old.subjects == () and old.values() == {}


def test_the_monitor_says_what_is_wrong_with_a_reference_or_a_batch() -> None:
    x, p = sample(3, 10)
    with pytest.raises(ValueError, match="amount_eur: 2 shares for 2 edges; expected 3"):
        DriftMonitor({"amount_eur": {"edges": [1.0, 2.0], "shares": [0.5, 0.5]}})
    with pytest.raises(
        ValueError, match=r"edges \[2.0, 1.0\]; expected finite numbers in strictly"
    ):
        DriftMonitor({"amount_eur": {"edges": [2.0, 1.0], "shares": [0.2, 0.3, 0.5]}})
    with pytest.raises(ValueError, match=r"add up to 0\.9; expected shares >= 0 adding up to 1"):
        DriftMonitor({SCORE: {"edges": [0.1], "shares": [0.4, 0.5]}})
    with pytest.raises(ValueError, match=r"keys \['edges'\]; expected 'edges' and 'shares'"):
        DriftMonitor({SCORE: {"edges": [0.1]}})
    with pytest.raises(ValueError, match="window must be >= 1"):
        DriftMonitor({}, window=0)
    monitor = DriftMonitor(reference(x, p))
    with pytest.raises(ValueError, match=r"DriftMonitor.observe: features of shape \(42,\)"):
        monitor.observe(x[0], p[:1])


# -- a shifted stream ------------------------------------------------------------------------------


def stream_features(seed: int, amount_factor: int = 1) -> np.ndarray:
    """The 42 features of a simulated stream as the project's feature code computes them
    (``features.replay``), every payment's amount times ``amount_factor``."""
    simulation = simulate(SimulationSpec(seed=seed, days=10, cards=800, merchants=160))

    def shifted() -> Iterator[Payment | FraudLabel]:
        for event in simulation.stream:
            if isinstance(event, Payment):
                event = msgspec.structs.replace(
                    event, amount_minor=event.amount_minor * amount_factor
                )
            yield event

    rows = [[f[name] for name in FEATURE_NAMES] for _, f in replay(shifted())]
    return np.array(rows, dtype=np.float64)


def toy_probability(x: np.ndarray) -> np.ndarray:
    """A fixed logistic function of the amount and the card's 24-hour count: a stand-in for a
    model's score (training one would take longer than the rest of this test)."""
    amount = x[:, FEATURE_NAMES.index("amount_eur")]
    count = x[:, FEATURE_NAMES.index("card_count_24h")]
    return 1.0 / (1.0 + np.exp(6.0 - 0.01 * amount - 0.2 * count))


def monitored(ref: dict[str, dict[str, list[float]]], x: np.ndarray) -> dict[str, float]:
    monitor = DriftMonitor(ref, window=10_000)
    for start in range(0, len(x), 500):  # the flow's batches
        batch = x[start : start + 500]
        monitor.observe(batch, toy_probability(batch))
    return monitor.values()


def test_a_stream_whose_amounts_triple_crosses_the_threshold_and_another_seed_does_not() -> None:
    """Reference: 10 days of 800 cards (about 12,000 payments), features from ``features``'
    replay, the score from :func:`toy_probability` (not a trained model, for speed). Then the
    last 10,000 payments of streams of other seeds, one with every amount times 3."""
    train_x = stream_features(seed=11)
    ref = reference(train_x, toy_probability(train_x))
    shifted = monitored(ref, stream_features(seed=12, amount_factor=3))
    same = monitored(ref, stream_features(seed=13))
    print("amounts x3:", {s: round(v, 4) for s, v in shifted.items()})
    print("unshifted: ", {s: round(v, 4) for s, v in same.items()})
    assert shifted["amount_eur"] > 0.25
    assert shifted["card_amount_sum_24h"] > 0.25 and shifted[SCORE] > 0.25
    assert shifted["card_amount_to_mean_30d"] < 0.1  # a ratio of amounts: unmoved
    assert max(same.values()) < 0.1


# -- the reference in model versions ---------------------------------------------------------------

SPEC = SimulationSpec(seed=3, days=8, cards=300, merchants=60)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Rows]:
    """A ``boosted`` version trained as ``python -m model_state.train`` does, and its rows."""
    folder = tmp_path_factory.mktemp("models")
    train(SPEC, folder, key=TEST_KEY, validation_days=2, epochs=1)
    simulation = simulate(SPEC)
    return folder, examples(simulation.stream, simulation.truth)


def test_a_trained_version_records_its_training_distribution_under_its_signature(
    trained: tuple[Path, Rows],
) -> None:
    folder, rows = trained
    version = artifact.load(folder, key=TEST_KEY)  # the signature holds
    ref = version.metadata.drift_reference
    assert tuple(ref) == SUBJECTS
    # It is the distribution of every training row, scored by the version itself.
    x, _ = matrix(rows)
    p = probabilities(version.model, [r[1] for r in rows], version.metadata.positive_weight)
    monitor = DriftMonitor(ref, window=len(rows), min_payments=len(rows))
    monitor.observe(x, np.array(p))
    assert max(monitor.values().values()) < 1e-9
    # The reference is signed: changing it breaks the signature.
    moved = {**ref, "amount_eur": {"edges": [1.0], "shares": [0.5, 0.5]}}
    with pytest.raises(UntrustedModelError, match="signature that does not match"):
        verify(
            msgspec.structs.replace(version.metadata, drift_reference=moved), TEST_KEY, where="x"
        )


def test_online_versions_carry_their_roots_reference(trained: tuple[Path, Rows]) -> None:
    folder, _ = trained
    root = artifact.load(folder, key=TEST_KEY)

    def label(txn: str, fraud: bool) -> LabelledPayment:
        return LabelledPayment(
            transaction_id=txn, card_id="c", merchant_id="m", terminal_id="t",
            payment_time=0.0, reported_at=1.0, is_fraud=fraud,
            features=dict.fromkeys(FEATURE_NAMES, 1.0), scored_by=root.version,
        )  # fmt: skip

    learner = OnlineLearner(root, publish_every=1)
    learner.learn(label("t1", True))
    record = learner.publish(NOW)
    assert record.metadata.drift_reference == root.metadata.drift_reference
    online = artifact.from_bytes(
        record.payload, sign(record.metadata, TEST_KEY), where="x", key=TEST_KEY,
        bases=lambda _: root,
    )  # fmt: skip
    # A learner going on from the online version carries the same reference on.
    again = OnlineLearner(online, publish_every=1)
    again.learn(label("t2", False))
    assert again.publish(NOW).metadata.drift_reference == root.metadata.drift_reference
    # A learner pickled before drift was recorded publishes none.
    del again.drift_reference
    again.learn(label("t3", False))
    assert again.publish(NOW).metadata.drift_reference == {}


def test_a_retrained_version_records_its_rows_reference(
    trained: tuple[Path, Rows], tmp_path: Path
) -> None:
    _, rows = trained
    fitted, _ = challenge(
        rows, None, tmp_path, key=TEST_KEY, version="v00002", family="linear", force=True,
        now=max(row[0] for row in rows), maturity=timedelta(0),
    )  # fmt: skip
    assert fitted is not None
    assert tuple(fitted.metadata.drift_reference) == SUBJECTS
    verify(fitted.metadata, TEST_KEY, where="x")


def test_a_version_signed_before_drift_was_recorded_keeps_its_signature() -> None:
    metadata = model_metadata(base_version="v00001", base_hash="ab")  # a delta, signed then
    old = msgspec.to_builtins(msgspec.structs.replace(metadata, signature=""))
    del old["drift_reference"]
    digest = hmac.new(TEST_KEY, msgspec.json.encode(old, order="sorted"), hashlib.sha256)
    verify(msgspec.structs.replace(metadata, signature=digest.hexdigest()), TEST_KEY, where="x")


def test_if_missing_trains_again_when_the_newest_version_records_no_reference(
    tmp_path: Path,
) -> None:
    artifact.save(new_model(), model_metadata(), tmp_path, key=key_for_tests())  # fits the code
    env = os.environ | {"PAYSCORE_MODEL_KEY_FILE": str(KEY_FILE)}
    args = ["-m", "model_state.train", "--if-missing", "--days", "8", "--cards", "300",
            "--validation-days", "2", "--epochs", "1", "--family", "linear", "--no-compare",
            "--model-dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the newest model v00001 in" in done.stdout
    assert "records no drift reference" in done.stdout
    newest = artifact.load(tmp_path, key=key_for_tests())
    assert newest.version == "v00002" and tuple(newest.metadata.drift_reference) == SUBJECTS
