"""Rows for the tables of :mod:`storage.tables`, built from what the flow produces.

Times are converted to naive UTC for ``DATETIME(6)`` columns; a payment's own UTC offset is
kept in ``utc_offset_minutes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from features.bounded import bounded
from features.contract import Payment
from rules.decisions import Outcome, model_alone
from storage.feature_vector import pack as pack_features
from storage.versions import version_key


def utc_naive(moment: datetime) -> datetime:
    """``moment`` in UTC without tzinfo, as MySQL's DATETIME stores it."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def scored_payment_row(
    payment: Payment,
    *,
    partition: int,
    offset: int,
    features: dict[str, float],
    probability: float,
    decision: str,
    reasons: tuple[str, ...] | None,
    model_version: str,
    scored_at: datetime,
    appended_at: float | None = None,
    shadow_version: str | None = None,
    shadow_probability: float | None = None,
    outcome: Outcome | None = None,
    ruleset_version: int | None = None,
) -> dict[str, Any]:
    """``reasons``: ``None`` when the scorer did not rank them (an approval: stored as an empty
    list, computed on demand, :func:`reasons_on_demand`); ``appended_at``: the payment's Kafka
    record timestamp (POSIX seconds), if it had one; ``shadow_*``: the challenger shadowing the
    champion and its probability, if one did; ``outcome``: what the analysts' rules made of the
    model's ``decision`` with ``ruleset_version`` (:mod:`rules.decisions`): ``decision`` is then
    stored as ``model_decision`` and the outcome's decision as the final ``decision``."""
    if outcome is None:
        outcome = model_alone(decision)  # type: ignore[arg-type]
    offset_delta = payment.event_time.utcoffset()
    return {
        "transaction_id": payment.transaction_id,
        "card_id": payment.card_id,
        "merchant_id": payment.merchant_id,
        "terminal_id": payment.terminal_id,
        "amount_minor": payment.amount_minor,
        "currency": payment.currency,
        "event_time": utc_naive(payment.event_time),
        "utc_offset_minutes": int(offset_delta.total_seconds() // 60) if offset_delta else 0,
        "fraud_probability": probability,
        "decision": outcome.decision,
        "model_decision": decision,
        "decided_by": outcome.decided_by,
        "rules_fired": list(outcome.rules_fired),
        "shadow_hits": list(outcome.shadow_hits),
        "rule_reasons": list(outcome.reasons),
        "ruleset_version": ruleset_version,
        "reason_codes": list(reasons) if reasons is not None else [],
        "model_version": model_version,
        "features": features,
        "feature_vector": pack_features(features),
        "kafka_partition": partition,
        "kafka_offset": offset,
        "scored_at": utc_naive(scored_at),
        "appended_at": (
            datetime.fromtimestamp(appended_at, UTC).replace(tzinfo=None)
            if appended_at is not None
            else None
        ),
        "shadow_version": shadow_version,
        "shadow_probability": shadow_probability,
        "mcc": payment.mcc,
        "channel": payment.channel,
        "country": payment.country,
        "device_id": payment.device_id,
        "latitude": payment.latitude,
        "longitude": payment.longitude,
    }


def reasons_on_demand(decision: str, reason_codes: Sequence[str]) -> bool:
    """Whether a stored row's reason codes are left to be computed on demand: an approval stores
    none (nobody reads them as it is scored), ``python -m review.explain`` and the review pages
    compute them from its stored features and model version. An approval stored with reasons (a
    rule fired on it) shows them; one whose payment had none computes an empty list again."""
    return decision == "approve" and not reason_codes


def dead_letter_row(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: str,
    received_at: datetime | None,
    dead_lettered_at: datetime,
    headers: bytes | None = None,
) -> dict[str, Any]:
    return {
        "topic": topic,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "message_key": key,
        "raw_value": value,
        "message_headers": headers,
        "error": bounded(error),
        "received_at": utc_naive(received_at) if received_at else None,
        "dead_lettered_at": utc_naive(dead_lettered_at),
    }


def refused_row_letter(topic: str) -> Callable[[Mapping[str, Any], str], dict[str, Any]]:
    """For the payments sink: a scored row MySQL refused becomes a dead letter of its payment's
    position, holding the row as JSON and MySQL's reason, and its record time (the row's
    ``appended_at``, naive UTC)."""

    def letter(row: Mapping[str, Any], reason: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        appended = row.get("appended_at")
        return dead_letter_row(
            topic=topic,
            partition=int(row["kafka_partition"]),
            offset=int(row["kafka_offset"]),
            key=str(row.get("card_id", "")).encode(),
            value=_row_json.encode(dict(row)),
            error=reason,
            received_at=appended.replace(tzinfo=UTC) if isinstance(appended, datetime) else None,
            dead_lettered_at=now,
        )

    return letter


def _encode_extra(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise NotImplementedError(f"cannot encode {type(value).__name__} in a dead letter")


_row_json = msgspec.json.Encoder(enc_hook=_encode_extra)


def model_version_row(
    *, metadata: dict[str, Any], payload: bytes, artifact_path: str
) -> dict[str, Any]:
    """A ``model_versions`` row; ``metadata`` is the version's metadata as a JSON-able dict."""
    lineage, sequence = version_key(metadata["version"])
    return {
        "version": metadata["version"],
        "lineage": lineage,
        "sequence": sequence,
        "parent_version": metadata["parent_version"],
        "created_at": utc_naive(datetime.fromisoformat(metadata["created_at"])),
        "origin": metadata["origin"],
        "labels_learned": metadata["labels_learned"],
        "content_hash": metadata["content_hash"],
        "artifact_path": artifact_path,
        "metadata": metadata,
        "artifact": payload,
    }
