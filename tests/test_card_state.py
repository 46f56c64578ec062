"""The card's packed state (``features/card.py``, *Snapshots*): columns held as arrays, the
snapshot a join of their buffers; snapshots of the release before still resume; integer
columns widen instead of overflowing."""

from __future__ import annotations

import copy
import pickle
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from dataflows.keyed_history import keyed_history, mark_key
from dataflows.messages import Positioned
from features.card import CardHistory
from features.contract import Payment
from features.windows import AmountTiles

# Written by the release before (commit 5871fb2, lists and tuples of tuples, 16-byte marks):
# KeyedHistory(CardHistory, remember=4) fed payment(0) to payment(1199), then snapshot().
RELEASE_9 = Path(__file__).parent / "snapshots" / "card_snapshot_release9.pickle"
# Written by the release before this one's state format (commit 7fcbb1a: packed columns, 64-bit
# id hashes and 32-bit marks): KeyedHistory(CardHistory, remember=64) fed payment(0) to
# payment(1199), then snapshot().
RELEASE_10 = Path(__file__).parent / "snapshots" / "card_snapshot_release10.pickle"


def payment(i: int, amount: int | None = None) -> Payment:
    """The payments the stored snapshot was fed (30.8 days of one card), and later ones."""
    return Payment(
        transaction_id=f"t-{i}",
        card_id="c-1",
        merchant_id=f"m-{i % 7}",
        terminal_id="p-1",
        amount_minor=((i * 7919) % 50_000 if i % 5 else 0) if amount is None else amount,
        currency="EUR" if i % 3 else "USD",
        mcc="5411",
        channel="pos",
        country="FR" if i % 4 else "DE",
        event_time=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=37 * i + (i % 3)),
        latitude=48.8 + i / 1000 if i % 2 else None,
        longitude=2.3 if i % 2 else None,
    )


def positioned(i: int) -> Positioned[Payment]:
    return Positioned(payment(i), 0, i)


def test_a_card_snapshot_of_the_release_before_resumes_with_the_same_features() -> None:
    build = keyed_history(CardHistory, 60, remember=4, mark_key=mark_key(b"k" * 32))
    resumed = build(RELEASE_9.read_bytes())
    fresh = build(None)
    fresh.on_batch([positioned(i) for i in range(1200)])
    later = [positioned(i) for i in range(1196, 1300)]  # 1196-1199: repeats, skipped
    got, _ = resumed.on_batch([copy.deepcopy(p) for p in later])
    want, _ = fresh.on_batch([copy.deepcopy(p) for p in later])
    assert [p.event.transaction_id for p in got] == [f"t-{i}" for i in range(1200, 1300)]
    assert [p.features for p in got] == [p.features for p in want]
    # the card's state, compact (its class not named)
    state, _, _ = pickle.loads(resumed.snapshot(compact=True))
    assert isinstance(state[5], bytes)  # packed now
    assert state == fresh._history.__getstate__()


def test_a_card_snapshot_of_release_10_resumes_with_the_same_features_and_ids() -> None:
    build = keyed_history(CardHistory, 60, remember=64, mark_key=mark_key(b"k" * 32))
    resumed = build(RELEASE_10.read_bytes())
    fresh = build(None)
    fresh.on_batch([positioned(i) for i in range(1200)])
    later = [positioned(i) for i in range(1136, 1300)]  # 1136-1199: repeats, skipped
    reused = Positioned(payment(1150, amount=1), 0, 1150)  # a remembered id, other content
    got, _ = resumed.on_batch([copy.deepcopy(p) for p in [reused, *later]])
    want, _ = fresh.on_batch([copy.deepcopy(p) for p in [reused, *later]])
    assert [p.event.transaction_id for p in got] == [
        "t-1150",
        *(f"t-{i}" for i in range(1200, 1300)),
    ]
    assert got[0].rejected and want[0].rejected
    assert [p.features for p in got] == [p.features for p in want]
    assert [p.rejected for p in got] == [p.rejected for p in want]
    assert pickle.loads(resumed.snapshot(compact=True))[0] == fresh._history.__getstate__()


def test_a_packed_card_round_trips_and_its_state_is_one_buffer_of_numbers() -> None:
    card = CardHistory()
    for i in range(1200):
        card.observe(payment(i))
    state = card.__getstate__()
    assert len(state) == 7 and isinstance(state[5], bytes) and isinstance(state[6], str)
    assert state[0] is None  # the default lateness
    again = pickle.loads(pickle.dumps(card))
    copied = copy.deepcopy(card)
    for i in range(1200, 1260):
        want = card.observe(payment(i))
        assert again.observe(payment(i)) == want
        assert copied.observe(payment(i)) == want


def test_amounts_beyond_machine_integers_widen_the_columns_and_stay_exact() -> None:
    """Cents past 32 bits widen the tiles to 64; past 64 bits (no valid payment has those) the
    columns become lists and the state takes the earlier releases' form; sums stay exact."""
    card = CardHistory()
    amounts = [2**40, 3, 2**70, 2**70, 5, 2**66, 7]
    for i, amount in enumerate(amounts):
        features = card.observe(payment(5 * i + 1, amount))
    assert features["card_amount_max_30d"] == 2**70 / 100
    assert features["card_amount_sum_30d"] == sum(amounts[:-1]) / 100
    daily = card._tiles[-1]  # every payment but the last folded (3 h apart): exact ints
    assert sum(daily.total) == sum(amounts[:-1]) and max(daily.peak) == 2**70
    assert len(card.__getstate__()) == 17  # lists inside: the loose form
    restored = pickle.loads(pickle.dumps(card))
    assert restored.observe(payment(99)) == card.observe(payment(99))


def test_tiles_widen_when_a_count_or_a_total_would_overflow() -> None:
    tiles = AmountTiles(300)
    for _ in range(70_000):  # past 16-bit counts in one tile
        tiles.add(10.0, 1)
    assert tiles.codes == "qqqqq"
    tiles.add(400.0, 2**62)
    tiles.add(450.0, 2**62)  # the tile's total passes 2**63
    assert tiles.codes == "" and isinstance(tiles.total, list)
    assert tiles.aggregate_from(0) == (70_002, 70_002, 70_000 + 2**63, 2**62)
    restored = AmountTiles(300)
    restored.restore(tiles.state())
    assert restored.aggregate_from(1) == (2, 2, 2**63, 2**62)
    tiles.add(700.0, 1)  # a new tile on lists
    assert tiles.aggregate_from(2) == (1, 1, 1, 1)


def test_a_day_of_more_than_65535_payments_of_one_country_widens_its_count() -> None:
    card = CardHistory(lateness=0.0)  # each payment folds the one before: a short tail
    start = datetime(2026, 3, 1, tzinfo=UTC)
    n = 66_000
    for i in range(n):
        card.observe(replace(payment(0, 100), event_time=start + timedelta(seconds=i)))
    assert card._country_count.typecode == "q" and list(card._country_count) == [n - 1]
    assert card._tiles[-1].codes == "qqqqq"
    restored = pickle.loads(pickle.dumps(card))
    probe = replace(payment(0, 100), event_time=start + timedelta(seconds=n))
    features = card.observe(probe)
    assert restored.observe(probe) == features
    assert features["card_count_24h"] == n


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 40 * 24 * 60),  # minutes after the start: out of order too
            st.sampled_from([0, 1, 255, 256, 65_535, 65_536, 2**24 - 1, 2**24, 2**31, 2**40]),
            st.integers(0, 9),  # merchant
            st.sampled_from(["FR", "DE", "JP"]),
        ),
        max_size=60,
    ),
    lateness=st.sampled_from([0.0, 900.0, 3600.0]),
    cut=st.integers(0, 60),
)
def test_a_narrow_snapshot_restores_every_width_and_gives_the_same_features(
    steps: list[tuple[int, int, int, str]], lateness: float, cut: int
) -> None:
    """Amounts at every boundary of the snapshot's widths (1, 2, 3, 4 and 8 bytes), zeros
    (paid below count), several amounts a tile (peaks kept), a lateness other than the
    default: a restored card's state and features are the original's."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    card = CardHistory(lateness)

    def step(i: int) -> Payment:
        minutes, amount, merchant, country = steps[i]
        return replace(
            payment(i, amount),
            merchant_id=f"m-{merchant}",
            country=country,
            event_time=start + timedelta(minutes=minutes),
        )

    for i in range(min(cut, len(steps))):
        card.observe(step(i))
    restored = pickle.loads(pickle.dumps(card, pickle.HIGHEST_PROTOCOL))
    assert restored.__getstate__() == card.__getstate__()
    for i in range(min(cut, len(steps)), len(steps)):
        assert restored.observe(step(i)) == card.observe(step(i))
    assert restored.__getstate__() == card.__getstate__()


def test_a_day_count_too_large_for_64_bits_with_its_country_gives_the_loose_form() -> None:
    """A day count is stored as ``count * countries + position``; past 64 bits (2**63 payments
    of a day, never in practice) the card gives the earlier releases' tuples, and restores."""
    card = CardHistory(lateness=0.0)
    for i in range(12):  # three countries folded (lateness 0: every payment but the last)
        card.observe(replace(payment(i), country=("FR", "DE", "JP")[i % 3]))
    card._country_count = array("q", card._country_count)
    card._country_count[0] = 2**63 - 1
    state = card.__getstate__()
    assert len(state) == 17  # the loose form
    restored = pickle.loads(pickle.dumps(card))
    assert list(restored._country_count) == list(card._country_count)
    assert restored.observe(payment(50)) == card.observe(payment(50))


def test_a_snapshot_s_header_stays_small_when_a_tile_level_is_empty() -> None:
    """The lengths and offsets are one narrow column: an empty level (here the 5-minute one)
    gave its offset as the whole tile index once, 24 bytes more a card."""
    card = CardHistory()
    for i in range(0, 1200, 25):  # a payment every 15 h 25 min: no 5-minute tile left
        card.observe(payment(i))
    assert len(card._tiles[0]) == 0
    assert card.state_parts()["header and framing"] < 80


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 40 * 24 * 60),
            st.sampled_from([0, 1, 255, 65_536, 2**24, 10**12]),
            st.integers(0, 9),
            st.sampled_from(["FR", "DE", "JP"]),
        ),
        max_size=60,
    ),
    cut=st.integers(0, 60),
)
def test_a_card_step_snapshots_fast_or_compact_and_either_resumes_the_same_card(
    steps: list[tuple[int, int, int, str]], cut: int
) -> None:
    """``PAYSCORE_CARD_SNAPSHOTS``: the step's snapshots take the card's fast form (its columns
    joined as they are) or its compact form (each column narrowed); a step built either way
    resumes either, with the same state and the same features afterwards."""
    start = datetime(2026, 3, 1, tzinfo=UTC)

    def step(i: int) -> Positioned[Payment]:
        minutes, amount, merchant, country = steps[i]
        event = replace(
            payment(i, amount),
            merchant_id=f"m-{merchant}",
            country=country,
            event_time=start + timedelta(minutes=minutes),
        )
        return Positioned(event, 0, i)

    fast = keyed_history(CardHistory, 60, remember=8, mark_key=mark_key(b"k" * 32))
    small = keyed_history(CardHistory, 60, remember=8, mark_key=mark_key(b"k" * 32), compact=True)
    original = fast(None)
    original.on_batch([step(i) for i in range(min(cut, len(steps)))])
    quick, narrow = original.snapshot(), original.snapshot(compact=True)
    assert pickle.loads(quick)[0] == original._history.fast_state()
    assert pickle.loads(narrow)[0] == original._history.__getstate__()
    built_compact = small(None)
    assert built_compact.snapshot() == built_compact.snapshot(compact=True)
    rest = [step(i) for i in range(min(cut, len(steps)), len(steps))]
    want, _ = original.on_batch(copy.deepcopy(rest))
    for build in (fast, small):
        for snap in (quick, narrow):
            resumed = build(snap)
            assert resumed._history.__getstate__() == pickle.loads(narrow)[0]
            got, _ = resumed.on_batch(copy.deepcopy(rest))
            assert [p.features for p in got] == [p.features for p in want]
