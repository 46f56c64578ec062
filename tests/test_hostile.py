"""Hostile input: every corpus case gets its outcome, and no input makes the decoder misbehave."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pytest
from babel.core import get_global
from babel.numbers import get_territory_currencies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import (
    COUNTRIES,
    CURRENCIES,
    MAX_AMOUNT_MINOR,
    NOT_FOR_PAYMENTS,
    InvalidMessageError,
    LabelDecoder,
    Payment,
    PaymentDecoder,
)
from features.json_keys import repeated_key
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
    assert ids["hostile-tx-crc32"] == 2  # the CRC-32 twins: the second a reused id
    assert all(
        n == 1 for tx, n in ids.items() if tx not in ("hostile-tx-duplicate", "hostile-tx-crc32")
    )


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


def test_a_key_named_twice_is_refused_whichever_value_would_win():
    by_name = {c.name: c for c in PAYMENT_CASES}
    for name in ("duplicate_json_key", "duplicate_json_key_escaped"):
        with pytest.raises(InvalidMessageError, match=r"duplicate field `amount_minor` .* at `\$`"):
            PAYMENTS.decode(by_name[name].raw)
    with pytest.raises(InvalidMessageError, match="duplicate field `transaction_id`"):
        PAYMENTS.decode(by_name["duplicate_transaction_id_key"].raw)


# -- currencies: every ISO 4217 fund and special code is refused, every legal tender taken ------

# The codes the review named (ISO 4217's funds, metals, units of account, bond units, test and
# "no currency"); NOT_FOR_PAYMENTS is derived from CLDR and must hold every one of them.
ISO_FUNDS_AND_SPECIALS = (
    *("USN", "BOV", "CHE", "CHW", "CLF", "COU", "MXV", "UYI", "UYW"),  # funds
    *("XTS", "XXX", "XAU", "XAG", "XPD", "XPT", "XDR", "XBA", "XBB", "XBC", "XBD", "XSU", "XUA"),
)  # fmt: skip


def test_the_refused_currencies_hold_every_iso_fund_and_special_code() -> None:
    assert set(ISO_FUNDS_AND_SPECIALS) <= NOT_FOR_PAYMENTS
    assert not NOT_FOR_PAYMENTS & CURRENCIES
    # Real money keeps going, the CFA and CFP francs and the East Caribbean dollar among it.
    assert {"EUR", "USD", "CHF", "CLP", "MXN", "UYU", "BOB", "COP", "XOF", "XAF", "XPF", "XCD"} <= (
        CURRENCIES
    )


@pytest.mark.parametrize("code", sorted(NOT_FOR_PAYMENTS | set(ISO_FUNDS_AND_SPECIALS)))
def test_every_fund_and_special_code_is_refused_as_a_payment_currency(code: str) -> None:
    raw = json.dumps(valid_payment(currency=code)).encode()
    with pytest.raises(InvalidMessageError, match=rf"got '{code}' \(an ISO 4217 fund or special"):
        PAYMENTS.decode(raw, received_at=RECEIVED_AT)


@pytest.mark.parametrize("code", sorted(CURRENCIES))
def test_every_payment_currency_is_legal_tender_somewhere_and_accepted(code: str) -> None:
    tender = {
        c
        for territory in get_global("territory_currencies")
        for c in get_territory_currencies(territory, date.min, date.max, tender=True)
    }
    assert code in tender
    raw = json.dumps(valid_payment(currency=code)).encode()
    assert PAYMENTS.decode(raw, received_at=RECEIVED_AT).currency == code


# -- duplicate keys: any object that names a key twice is refused; any valid message is not ----


def escaped_key(draw: Any, key: str) -> str:
    """``key`` as JSON text, each character spelled plainly or as a \\u escape at random."""
    spelled = "".join(f"\\u{ord(c):04x}" if draw(st.booleans()) else c for c in key)
    return f'"{spelled}"'


@st.composite
def encoded(draw: Any, message: dict[str, Any], repeat: bool) -> bytes:
    """``message`` as one JSON object in any key order, keys spelled any way, any whitespace;
    with ``repeat``, one key (any) named a second time, its value the same or another valid
    one, before or after the first."""
    members = [(k, json.dumps(v)) for k, v in message.items()]
    members = draw(st.permutations(members))
    if repeat:
        key, value = draw(st.sampled_from(members))
        other = draw(st.sampled_from([value, *ALTERNATIVES.get(key, [])]))
        members.insert(draw(st.integers(0, len(members))), (key, other))
    space = st.sampled_from(["", " ", "\n", "\t ", "  "])
    parts = [
        f"{draw(space)}{escaped_key(draw, k)}{draw(space)}:{draw(space)}{v}{draw(space)}"
        for k, v in members
    ]
    return ("{" + ",".join(parts) + "}").encode()


ALTERNATIVES = {  # another valid value of each field, to repeat a key with
    "transaction_id": ['"tx-other"'],
    "card_id": ['"card-other"'],
    "amount_minor": ["7", "0"],
    "currency": ['"USD"'],
    "is_fraud": ["false", "true"],
    "note": ['"another, note"', "null"],
    "latitude": ["1.5"],
}
PAYMENT_FIELDS = {**valid_payment(), "device_id": "dev-1", "schema_version": 1}
LABEL = {
    "transaction_id": "t-1",
    "card_id": "c-1",
    "is_fraud": True,
    "reported_at": "2026-03-09T02:00:00Z",
}
notes = st.text(alphabet=st.characters(codec="utf-8"), max_size=40).map(lambda t: t + ', "x", y')


@settings(max_examples=400, deadline=None)
@given(data=st.data(), repeat=st.booleans(), label=st.booleans(), note=st.none() | notes)
def test_a_repeated_key_is_refused_however_spelled_and_a_valid_message_is_not(
    data: st.DataObject, repeat: bool, label: bool, note: str | None
) -> None:
    message: dict[str, Any] = dict(LABEL) if label else dict(PAYMENT_FIELDS)
    if label and note is not None:
        message["note"] = note
    raw = data.draw(encoded(message, repeat))
    decoder = LABELS if label else PAYMENTS
    if repeat:
        with pytest.raises(InvalidMessageError, match="duplicate field `"):
            decoder.decode(raw, received_at=RECEIVED_AT)
    else:
        decoder.decode(raw, received_at=RECEIVED_AT)


def test_repeated_key_names_the_key_and_sees_commas_in_free_text() -> None:
    assert repeated_key(b'{"a": 1, "b": 2}') is None
    assert repeated_key(b'{"a": 1, "\\u0061": 2}') == "a"
    assert repeated_key(b'{"n": "x, y", "a": 1}', free_text=True) is None
    assert repeated_key(b'{"n": "x, y", "n": "z"}', free_text=True) == "n"


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
