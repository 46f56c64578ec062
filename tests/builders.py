"""Small builders for test events and model metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from features.catalog import FEATURE_NAMES
from features.contract import Payment
from model_state.artifact import ModelMetadata

BASE = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 00:00 UTC: on every tile boundary
TEST_KEY = bytes(range(32))  # signs the versions unit tests save and load

_PLAIN = Payment(
    transaction_id="t",
    card_id="c-1",
    merchant_id="m-1",
    terminal_id="p-1",
    amount_minor=1000,
    currency="EUR",
    event_time=BASE,
    mcc="5411",
    channel="pos",
    country="FR",
)


def payment(**changes: Any) -> Payment:
    """A plain EUR 10 card-present payment in Paris time at ``BASE``, with ``changes``."""
    return msgspec.structs.replace(_PLAIN, **changes)


def model_metadata(version: str = "v00001", **changes: Any) -> ModelMetadata:
    """Metadata of a pre-trained version ``version`` of 400 rows, 40 of them frauds."""
    fields: dict[str, Any] = {
        "version": version,
        "parent_version": None,
        "origin": "pretrained",
        "created_at": BASE,
        "feature_names": FEATURE_NAMES,
        "model_description": "test",
        "rows": 400,
        "frauds": 40,
    }
    return ModelMetadata(**(fields | changes))
