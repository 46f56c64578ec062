"""The label contract after the review queue: an analyst's verdict and every older label."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from features.contract import FraudLabel, InvalidMessageError, LabelDecoder

OLD = (
    b'{"transaction_id":"t-1","card_id":"c-1","is_fraud":true,'
    b'"reported_at":"2026-03-06T08:00:25Z","schema_version":1}'
)


def test_an_older_label_is_still_valid_and_has_no_analyst() -> None:
    label = LabelDecoder().decode(OLD)
    assert label.analyst is None
    assert label.note is None


def test_an_analysts_label_round_trips_with_its_analyst_and_note() -> None:
    label = FraudLabel(
        transaction_id="t-1",
        card_id="c-1",
        is_fraud=False,
        reported_at=datetime(2026, 3, 6, 8, tzinfo=UTC),
        analyst="alice",
        note="customer confirmed",
    )
    decoded = LabelDecoder().decode(msgspec.json.encode(label))
    assert decoded == label
    assert (decoded.analyst, decoded.note) == ("alice", "customer confirmed")


def test_a_label_without_analyst_is_encoded_as_before_minus_its_defaults() -> None:
    label = LabelDecoder().decode(OLD)
    assert msgspec.json.decode(msgspec.json.encode(label)) == {
        "transaction_id": "t-1",
        "card_id": "c-1",
        "is_fraud": True,
        "reported_at": "2026-03-06T08:00:25Z",
    }


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (b',"reviewer":"alice"', "Object contains unknown field `reviewer`"),
        (b',"analyst":"al ice"', "at `$.analyst`"),
        (b',"note":' + b'"' + b"x" * 2001 + b'"', "at `$.note`"),
    ],
)
def test_unknown_fields_and_bad_analysts_are_refused(extra: bytes, error: str) -> None:
    with pytest.raises(InvalidMessageError, match=error.replace("$", r"\$")):
        LabelDecoder().decode(OLD[:-1] + extra + b"}")
