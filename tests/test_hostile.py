"""Hostile input: every corpus case gets its outcome, and no input makes the decoder misbehave."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import (
    COUNTRIES,
    CURRENCIES,
    MAX_AMOUNT_MINOR,
    InvalidMessageError,
    LabelDecoder,
    Payment,
    PaymentDecoder,
)
from test_data.hostile import (
    LABEL_CASES,
    PAYMENT_CASES,
    HostileCase,
    dead_letter_cases,
    scored_transaction_ids,
    valid_payment,
)

PAYMENTS = PaymentDecoder()
LABELS = LabelDecoder()
# Any record timestamp from 2026-03-03 to 2099 gives the corpus's outcomes.
RECEIVED_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def outcome(decoder: PaymentDecoder | LabelDecoder, case: HostileCase) -> tuple[str, str]:
    try:
        decoder.decode(case.raw, received_at=RECEIVED_AT)
    except InvalidMessageError as exc:
        return "dead_letter", str(exc)
    return "scored", ""


@pytest.mark.parametrize("case", PAYMENT_CASES, ids=[c.name for c in PAYMENT_CASES])
def test_payment_case_gets_its_outcome(case):
    result, text = outcome(PAYMENTS, case)
    assert result == case.expected, text
    assert case.says in text


@pytest.mark.parametrize("case", LABEL_CASES, ids=[c.name for c in LABEL_CASES])
def test_label_case_gets_its_outcome(case):
    result, text = outcome(LABELS, case)
    assert result == case.expected, text
    assert case.says in text


def test_dead_letters_say_why():
    for case in dead_letter_cases():
        assert case.says, f"{case.name} needs a fragment of its error text"
        assert case.why


def test_the_corpus_covers_what_real_producers_send():
    names = {c.name for c in PAYMENT_CASES}
    assert len(names) == len(PAYMENT_CASES), "case names are unique"
    wanted = [
        "truncated_json", "non_utf8_bytes", "amount_as_string", "missing_transaction_id",
        "extra_field", "nan_literal", "infinity_literal", "amount_1e400", "zero_amount",
        "negative_amount", "unknown_currency", "event_time_1970", "event_time_2999",
        "event_time_without_zone", "huge_payload_2mb_identifier", "huge_amount",
        "duplicate_transaction_id_first", "sql_injection_transaction_id",
        "sql_lookalike_identifiers", "empty_message", "json_null", "json_array",
        "deeply_nested_object", "wrong_schema_version",
    ]  # fmt: skip
    assert not set(wanted) - names


def test_a_duplicated_transaction_id_makes_one_scored_row():
    ids = scored_transaction_ids()
    assert ids["hostile-tx-duplicate"] == 3
    assert all(n == 1 for tx, n in ids.items() if tx != "hostile-tx-duplicate")


def test_sql_is_refused_where_the_charset_forbids_it_and_kept_verbatim_where_allowed():
    by_name = {c.name: c for c in PAYMENT_CASES}
    with pytest.raises(InvalidMessageError, match=r"matching regex .* - at `\$\.transaction_id`"):
        PAYMENTS.decode(by_name["sql_injection_transaction_id"].raw)
    payment = PAYMENTS.decode(by_name["sql_lookalike_identifiers"].raw)
    assert payment.transaction_id == "hostile-tx--DROP.TABLE.scored_payments--"
    assert payment.merchant_id == "DROP_TABLE:scored_payments"


def test_huge_payloads_are_flagged_for_kafka_limits():
    by_name = {c.name: c for c in PAYMENT_CASES}
    assert len(by_name["huge_payload_2mb_identifier"].raw or b"") > 2_000_000
    assert not by_name["huge_payload_2mb_identifier"].fits_kafka_default
    assert by_name["huge_payload_900kb_unknown_field"].fits_kafka_default


def test_duplicate_json_keys_keep_the_last_value():
    by_name = {c.name: c for c in PAYMENT_CASES}
    assert PAYMENTS.decode(by_name["duplicate_json_key"].raw).amount_minor == 7


# -- properties: the decoder returns a valid payment or raises InvalidMessageError, nothing else --


def assert_valid(payment: Payment) -> None:
    assert isinstance(payment, Payment)
    assert 1 <= payment.amount_minor <= MAX_AMOUNT_MINOR
    assert payment.currency in CURRENCIES
    assert payment.country in COUNTRIES
    assert payment.event_time.utcoffset() is not None
    assert (payment.latitude is None) == (payment.longitude is None)
    assert PAYMENTS.decode(msgspec.json.encode(payment)) == payment


def decode_or_dead_letter(raw: bytes) -> Payment | None:
    try:
        payment = PAYMENTS.decode(raw, received_at=RECEIVED_AT)
    except InvalidMessageError as exc:
        reason = str(exc)
    else:
        assert_valid(payment)
        return payment
    assert reason, "an InvalidMessageError says why"
    return None


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=512))
def test_arbitrary_bytes(raw):
    decode_or_dead_letter(raw)


VALID = json.dumps(valid_payment()).encode()


@settings(max_examples=200, deadline=None)
@given(
    at=st.integers(0, len(VALID)),
    cut=st.integers(0, 8),
    insert=st.binary(max_size=8),
)
def test_corrupted_valid_bytes(at, cut, insert):
    decode_or_dead_letter(VALID[:at] + insert + VALID[at + cut :])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()  # NaN and infinities become the NaN/Infinity literals json.dumps writes
    | st.text(max_size=80)
    | st.sampled_from(
        ["EUR", "JPY", "XYZ", "FR", "5411", "pos", "2026-03-02T09:30:00+01:00", "1970-01-01"]
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
FIELDS = [*valid_payment(), "device_id", "schema_version"]


@st.composite
def mutated_payments(draw: Any) -> dict[str, Any]:
    payment = valid_payment()
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "delete", "add"]))
        name = draw(st.sampled_from(FIELDS))
        if action == "set":
            payment[name] = draw(json_values)
        elif action == "delete":
            payment.pop(name, None)
        else:
            payment[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    return payment


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payment=mutated_payments())
def test_mutated_payments(payment):
    decoded = decode_or_dead_letter(json.dumps(payment).encode())
    if decoded is not None:
        assert decoded.transaction_id == payment["transaction_id"]


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=256) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_arbitrary_labels(raw):
    try:
        label = LABELS.decode(raw, received_at=RECEIVED_AT)
    except InvalidMessageError:
        return
    assert label.reported_at.utcoffset() is not None


# -- properties: identifiers end at their last character, and case counts --------------------

ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=60)
ID_FIELDS = ["transaction_id", "card_id", "merchant_id", "terminal_id", "device_id"]
# Every C0 control character, DEL, the C1 controls and the Unicode spaces and line breaks.
unwanted = st.sampled_from(
    [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]
    + [" ", "\u00a0", "\u2028", "\u2029", "\u3000", "\ufeff"]
)


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(ID_FIELDS),
    value=ids,
    bad=unwanted,
    where=st.sampled_from(["end", "start", "inside"]),
)
def test_an_identifier_with_a_control_character_or_space_anywhere_is_refused(
    field: str, value: str, bad: str, where: str
) -> None:
    half = len(value) // 2
    spoiled = {
        "end": value + bad,
        "start": bad + value,
        "inside": value[:half] + bad + value[half:],
    }[where]
    raw = json.dumps(valid_payment(**{field: spoiled})).encode()
    with pytest.raises(InvalidMessageError, match=rf"matching regex .* - at `\$\.{field}`"):
        PAYMENTS.decode(raw, received_at=RECEIVED_AT)


@settings(max_examples=200, deadline=None)
@given(value=ids.filter(lambda v: v.lower() != v.upper()), field=st.sampled_from(ID_FIELDS))
def test_identifiers_that_differ_only_by_case_stay_two_identifiers(value: str, field: str) -> None:
    lower, upper = (
        PAYMENTS.decode(json.dumps(valid_payment(**{field: v})).encode(), received_at=RECEIVED_AT)
        for v in (value.lower(), value.upper())
    )
    assert getattr(lower, field) == value.lower() and getattr(upper, field) == value.upper()
    assert getattr(lower, field) != getattr(upper, field)
