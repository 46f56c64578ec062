"""The dead-letter metric's ``reason`` is named where the letter is made, never read from its text.

It used to be chosen by a phrase anywhere in the error, which quotes the producer's field names:
an unknown field named "MySQL refused" counted as ``refused_by_mysql``, one named "transaction
id" as ``reused_id``. The decoder now names what a message broke (``InvalidMessageError.kind``),
the card step ``reused_id`` and the payments sink ``refused_by_mysql`` (its other kind is in
``tests/test_reused_ids_integration.py``).
"""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from dataflows.messages import DeadLetter, MessageDecoder, Positioned, rejected_letter
from dataflows.scoring import counted_dead_letter_row
from features.contract import Invalid, LabelDecoder, Payment, PaymentDecoder
from test_data.hostile import LABEL_CASES, PAYMENT_CASES, dead_letter_cases, valid_payment

DECODE = MessageDecoder(PaymentDecoder(), LabelDecoder())
KINDS = frozenset(get_args(Invalid))
# Field names that hold the phrases the metric's text matching looked for.
HOSTILE_NAMES = (
    "MySQL refused",
    "transaction id",
    "stored for card",
    "has no value",
    "after the record reached Kafka",
    "malformed JSON",
    "missing required field",
    "duplicate field",
    "Expected",
)


def message(value: bytes | None) -> KafkaSourceMessage:
    return KafkaSourceMessage(
        key=b"c", value=value, topic="payments", partition=1, offset=5, timestamp=(1, 1_777 * 10**9)
    )


def counted(source: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "payscore_dead_letters_total", {"source": source, "reason": reason}
    )
    return value or 0.0


def everything_counted(source: str) -> dict[str, float]:
    return {kind: counted(source, kind) for kind in KINDS | {"reused_id", "refused_by_mysql"}}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_an_unknown_field_named_like_another_reason_is_counted_as_an_unknown_field(
    name: str,
) -> None:
    letter = DECODE.payment(message(msgspec.json.encode(valid_payment() | {name: 1})))
    assert isinstance(letter, DeadLetter) and name in letter.error
    before = everything_counted("payments")
    counted_dead_letter_row("payments", letter)
    after = everything_counted("payments")
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {
        "unknown_field": 1.0
    }


@given(name=st.text(min_size=1, max_size=80).filter(lambda n: n not in Payment.__struct_fields__))
@settings(max_examples=200, deadline=None)
def test_any_unknown_field_name_is_an_unknown_field(name: str) -> None:
    letter = DECODE.payment(message(msgspec.json.encode(valid_payment() | {name: 1})))
    assert isinstance(letter, DeadLetter) and letter.kind == "unknown_field", letter.error


def test_every_hostile_case_has_a_kind_that_agrees_with_what_its_error_says() -> None:
    """Every dead-letter case of the corpus gets a kind of the contract's; where the corpus says
    which rule a case breaks, the kind says the same (msgspec's wording, pinned)."""
    said = {
        "unknown field": "unknown_field",
        "missing required field": "missing_field",
        "duplicate field": "duplicate_field",
        "after the record reached Kafka": "future_time",
        "no value": "empty",
        "truncated": "malformed_json",
        "malformed": "malformed_json",
        "Invalid UTF-8": "malformed_json",
        "Expected `": "wrong_type",
        "must lie between": "invalid",
        "Invalid enum value": "invalid",
        "ISO 4217": "invalid",
    }
    for cases, decode in ((PAYMENT_CASES, DECODE.payment), (LABEL_CASES, DECODE.label)):
        for case in dead_letter_cases(cases):
            letter = decode(message(case.raw))
            assert isinstance(letter, DeadLetter), case.name
            assert letter.kind in KINDS, (case.name, letter.kind)
            for words, kind in said.items():
                if case.says.startswith(words) or f" {words}" in case.says:
                    assert letter.kind == kind, (case.name, case.says, letter.kind)


def test_a_reused_id_is_counted_as_one_whatever_its_reason_says() -> None:
    decoded = DECODE.payment(message(msgspec.json.encode(valid_payment())))
    assert isinstance(decoded, Positioned)
    decoded.rejected = "MySQL refused: malformed JSON (a reason of any words)"
    before = everything_counted("reused_ids")
    counted_dead_letter_row("reused_ids", rejected_letter(decoded, "payments"))
    after = everything_counted("reused_ids")
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {"reused_id": 1.0}
