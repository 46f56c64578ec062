"""Hostile input: messages a real producer might send, each with the outcome the flow owes it.

Every :class:`HostileCase` is the exact bytes of one Kafka message value (``None`` for a record
without a value), its record key, the expected outcome and a fragment of the
:class:`~features.contract.InvalidMessageError` text that says why (``"dead_letter"`` cases). The
outcomes hold when a case is decoded with ``received_at`` set to any record timestamp between
2026-03-03 and 2099 (``now`` will do): valid payments happen on 2026-03-02, and one case lies in
2099, ahead of any such record.

Outcomes for the whole flow: each ``"dead_letter"`` case ends as exactly one dead-letter row; the
``"scored"`` cases end as exactly one scored row per distinct transaction id
(:func:`scored_transaction_ids`): the three ``duplicate_transaction_id_*`` cases share one id, so
together they make one row. Nothing that looks like SQL changes the database: the
``sql_*`` cases must be stored (as dead letters or as identifiers) verbatim.

Huge payloads: ``huge_payload_2mb_*`` are larger than Kafka's default ``message.max.bytes``
(1 MB); to get them to the broker a test raises the producer's ``message.max.bytes`` and the
topic's ``max.message.bytes``, or expects the producer to refuse them
(:attr:`HostileCase.fits_kafka_default`).

>>> [case.expected for case in PAYMENT_CASES if case.name == "negative_amount"]
['dead_letter']
>>> len(scored_transaction_ids()) < len([c for c in PAYMENT_CASES if c.expected == "scored"])
True
"""

from __future__ import annotations

import json
from typing import Any, Literal, NamedTuple

Outcome = Literal["dead_letter", "scored"]

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
_CARD = "hostile-c-1"


class HostileCase(NamedTuple):
    """One message and what must become of it."""

    name: str
    raw: bytes | None
    expected: Outcome
    says: str  # fragment of the InvalidMessageError text ("" for scored cases)
    why: str  # short human description (the sample files' "reason")
    key: bytes | None = _CARD.encode()
    # Decoded, then refused: a payment's dead-letter reason, or the reason a label's
    # fraud_labels row gives.
    rejected: str = ""
    # The record's headers (name, value): the flow reads none of them. A name in bytes is sent
    # as those bytes (``test_data/raw_headers.py``): the Python client sends only UTF-8 names.
    headers: tuple[tuple[str | bytes, bytes | None], ...] = ()

    @property
    def raw_header_names(self) -> bool:
        """Whether a header name is bytes: a producer other than Python's must send it."""
        return any(isinstance(name, bytes) for name, _ in self.headers)

    @property
    def fits_kafka_default(self) -> bool:
        """Whether a broker with default limits accepts this message."""
        return self.raw is None or len(self.raw) < KAFKA_DEFAULT_MAX_MESSAGE_BYTES - 1024


def valid_payment(**changes: Any) -> dict[str, Any]:
    """A valid payment as a JSON-ready dict, with ``changes`` applied (``...`` deletes a field)."""
    payment: dict[str, Any] = {
        "transaction_id": "hostile-tx-valid",
        "card_id": _CARD,
        "merchant_id": "hostile-m-1",
        "terminal_id": "hostile-pos-1",
        "amount_minor": 1250,
        "currency": "EUR",
        "event_time": "2026-03-02T09:30:00+01:00",
        "mcc": "5411",
        "channel": "contactless",
        "country": "FR",
        "latitude": 48.857,
        "longitude": 2.352,
    }
    payment.update(changes)
    return {k: v for k, v in payment.items() if v is not ...}


def _json(**changes: Any) -> bytes:
    return json.dumps(valid_payment(**changes)).encode()


def _dead(
    name: str, raw: bytes | None, says: str, why: str, key: bytes | None = _CARD.encode()
) -> HostileCase:
    return HostileCase(name, raw, "dead_letter", says, why, key)


def _scored(name: str, raw: bytes, why: str) -> HostileCase:
    return HostileCase(name, raw, "scored", "", why)


_BASE = _json()
# How msgspec says an identifier broke its pattern (features.contract.Identifier).
_ID_REGEX = "matching regex " + repr(r"\A[A-Za-z0-9_.:\-]+\Z")
_NESTED = 100_000
_SQL = "x'); DROP TABLE scored_payments;--"

PAYMENT_CASES: tuple[HostileCase, ...] = (
    _scored("valid_payment", _BASE, "a valid payment, for reference"),
    # -- not JSON, or not a JSON object
    _dead("truncated_json", _BASE[:60], "truncated", "truncated JSON", None),
    _dead("truncated_inside_string", _BASE[:15], "truncated", "cut inside a string", None),
    _dead("empty_message", b"", "truncated", "empty message", None),
    _dead("tombstone", None, "no value", "record without a value", None),
    _dead(
        "non_utf8_bytes",
        _BASE.replace(b"hostile-m-1", b"hostile-m-\xff\xfe"),
        "Invalid UTF-8",
        "not UTF-8",
    ),
    _dead(
        "latin1_text",
        _BASE.replace(b"hostile-m-1", "hostile-m-café".encode("latin-1")),
        "Invalid UTF-8",
        "Latin-1 text, not UTF-8",
    ),
    _dead("utf16_json", json.dumps(valid_payment()).encode("utf-16"), "malformed", "UTF-16"),
    _dead("utf8_bom", b"\xef\xbb\xbf" + _BASE, "malformed", "UTF-8 byte order mark"),
    _dead("binary_garbage", bytes(range(256)), "malformed", "binary garbage", None),
    _dead("trailing_garbage", _BASE + b"garbage", "trailing characters", "trailing garbage"),
    _dead("two_messages_in_one", _BASE + _BASE, "trailing characters", "two JSON objects"),
    _dead("json_null", b"null", "Expected `object`, got `null`", "JSON null", None),
    _dead("json_array", b"[" + _BASE + b"]", "Expected `object`, got `array`", "JSON array"),
    _dead("json_string", b'"payment"', "Expected `object`, got `str`", "JSON string", None),
    _dead("json_number", b"42", "Expected `object`, got `int`", "JSON number", None),
    _dead(
        "deeply_nested_array",
        b"[" * _NESTED + b"]" * _NESTED,
        "Expected `object`, got `array`",
        "array nested 100,000 deep",
        None,
    ),
    _dead(
        "deeply_nested_field",
        _BASE.replace(b'"hostile-tx-valid"', b"[" * _NESTED + b"]" * _NESTED),
        "Expected `str`, got `array` - at `$.transaction_id`",
        "field nested 100,000 deep",
    ),
    _dead(
        "deeply_nested_object",
        b'{"a":' * _NESTED + b"1" + b"}" * _NESTED,
        "unknown field `a`",
        "object nested 100,000 deep",
        None,
    ),
    # -- wrong types, missing and extra fields
    _dead(
        "amount_as_string",
        _json(amount_minor="1250"),
        "Expected `int`, got `str` - at `$.amount_minor`",
        "amount as a string",
    ),
    _dead(
        "amount_as_decimal",
        _json(amount_minor=12.5),
        "Expected `int`, got `float` - at `$.amount_minor`",
        "amount in major units",
    ),
    _dead(
        "amount_as_bool",
        _json(amount_minor=True),
        "Expected `int`, got `bool` - at `$.amount_minor`",
        "amount as a boolean",
    ),
    _dead(
        "card_id_as_number",
        _json(card_id=4111111111111111),
        "Expected `str`, got `int` - at `$.card_id`",
        "card id as a number",
    ),
    _dead(
        "event_time_as_epoch",
        _json(event_time=1772440200),
        "Expected `datetime`, got `int` - at `$.event_time`",
        "event time as epoch seconds",
    ),
    _dead(
        "latitude_as_string",
        _json(latitude="48.857"),
        "got `str` - at `$.latitude`",
        "latitude as a string",
    ),
    _dead(
        "missing_transaction_id",
        _json(transaction_id=...),
        "missing required field `transaction_id`",
        "no transaction id",
    ),
    _dead(
        "missing_event_time",
        _json(event_time=...),
        "missing required field `event_time`",
        "no event time",
    ),
    _dead("extra_field", _json(cvv="123"), "unknown field `cvv`", "unknown field cvv"),
    _dead(
        "wrong_schema_version",
        _json(schema_version=2),
        "Invalid enum value 2 - at `$.schema_version`",
        "schema version 2",
    ),
    _dead(
        "schema_version_as_string",
        _json(schema_version="1"),
        "got `str` - at `$.schema_version`",
        "schema version as a string",
    ),
    # -- numbers out of range: NaN, infinities, huge and non-positive values
    _dead("nan_literal", _BASE.replace(b"1250", b"NaN"), "malformed", "NaN literal"),
    _dead(
        "infinity_literal",
        _BASE.replace(b"48.857", b"Infinity"),
        "malformed",
        "Infinity literal",
    ),
    _dead(
        "negative_infinity_literal",
        _BASE.replace(b"48.857", b"-Infinity"),
        "malformed",
        "-Infinity literal",
    ),
    _dead(
        "amount_1e400",
        _BASE.replace(b"1250", b"1e400"),
        "Number out of range - at `$.amount_minor`",
        "amount 1e400",
    ),
    _dead(
        "latitude_1e400",
        _BASE.replace(b"48.857", b"1e400"),
        "Number out of range - at `$.latitude`",
        "latitude 1e400 (infinite)",
    ),
    _scored(
        "zero_amount",
        _json(transaction_id="hostile-tx-verification", amount_minor=0),
        "a zero-amount card verification: real traffic, scored",
    ),
    _dead(
        "negative_amount",
        _json(amount_minor=-1250),
        "Expected `int` >= 0 - at `$.amount_minor`",
        "negative amount",
    ),
    _dead(
        "amount_above_limit",
        _json(amount_minor=10**12 + 1),
        "Expected `int` <= 1000000000000 - at `$.amount_minor`",
        "amount above 10**12",
    ),
    _dead(
        "huge_amount",
        _json(amount_minor=10**30),
        "Expected `int` <= 1000000000000 - at `$.amount_minor`",
        "amount 10**30",
    ),
    _dead(
        "huge_latitude",
        _json(latitude=10**30),
        "Expected `float` <= 90.0 - at `$.latitude`",
        "latitude 10**30",
    ),
    _dead(
        "latitude_without_longitude",
        _json(longitude=...),
        "come together",
        "latitude without longitude",
    ),
    # -- codes and enums
    _dead("unknown_currency", _json(currency="XYZ"), "ISO 4217", "unknown currency XYZ"),
    _dead("non_payment_currency", _json(currency="XAU"), "ISO 4217", "gold is not money here"),
    _dead(
        "fund_currency",
        _json(currency="USN"),
        "fund or special code",
        "US dollar next day: an ISO 4217 fund code, not legal tender",
    ),
    _dead("test_currency", _json(currency="XTS"), "fund or special code", "the ISO test code"),
    _dead(
        "lowercase_currency",
        _json(currency="eur"),
        "at `$.currency`",
        "currency in lower case",
    ),
    _dead("unknown_country", _json(country="XX"), "ISO 3166-1", "unknown country XX"),
    _dead(
        "unknown_channel",
        _json(channel="telepathy"),
        "Invalid enum value 'telepathy' - at `$.channel`",
        "unknown channel",
    ),
    _dead("three_digit_mcc", _json(mcc="541"), "at `$.mcc`", "MCC with three digits"),
    # -- timestamps
    _dead(
        "event_time_1970",
        _json(event_time="1970-01-01T00:00:00+00:00"),
        "must lie between 2000-01-01 and 2100-01-01",
        "event time in 1970",
    ),
    _dead(
        "event_time_2999",
        _json(event_time="2999-01-01T00:00:00+00:00"),
        "must lie between 2000-01-01 and 2100-01-01",
        "event time in 2999",
    ),
    _dead(
        "event_time_ahead_of_kafka",
        _json(event_time="2099-12-31T23:00:00+00:00"),
        "after the record reached Kafka",
        "event time long after the record's timestamp",
    ),
    _dead(
        "event_time_without_zone",
        _json(event_time="2026-03-02T09:30:00"),
        "with a timezone component - at `$.event_time`",
        "event time without a time zone",
    ),
    _dead(
        "event_time_not_a_time",
        _json(event_time="yesterday"),
        "Invalid RFC3339 encoded datetime - at `$.event_time`",
        "event time not a time",
    ),
    _dead(
        "event_time_offset_25h",
        _json(event_time="2026-03-02T09:30:00+25:00"),
        "Invalid RFC3339 encoded datetime",
        "UTC offset of 25 hours",
    ),
    # -- identifiers: length, charset, SQL
    _dead(
        "huge_payload_2mb_identifier",
        _json(merchant_id="A" * 2_000_000),
        "Expected `str` of length <= 64 - at `$.merchant_id`",
        "2 MB merchant id",
    ),
    _dead(
        "huge_payload_2mb_unknown_field",
        _json(note="A" * 2_000_000),
        "unknown field `note`",
        "2 MB extra field",
    ),
    _dead(
        "huge_payload_900kb_unknown_field",
        _json(note="A" * 900_000),
        "unknown field `note`",
        "900 kB extra field",
    ),
    # -- monsters: what the error would quote is huge (bounded), the key is huge, the bytes odd
    _dead(
        "unknown_field_name_70k",
        _json(**{"A" * 70_000: 1}),
        "unknown field `AAAA",
        "a field name of 70,000 characters: msgspec quotes it in its error",
    ),
    _dead(
        "unknown_field_name_70k_odd_characters",
        _json(**{'\x00\n`\u2028\U0001f4a5"\\é' * 7_000: 1}),
        "unknown field `\\x00\\n`",
        "a 70,000-character field name of NUL, line breaks, quotes and emoji",
    ),
    _dead(
        "unknown_field_name_300k",
        _json(**{"B" * 300_000: 1}),
        "characters cut]",
        "a field name of 300,000 characters",
    ),
    _dead(
        "bad_enum_value_70k",
        _json(channel="telepathy" * 8_000),
        "Invalid enum value 'telepathy",
        "an unknown channel of 72,000 characters: msgspec quotes it too",
    ),
    _dead(
        "field_name_not_utf8",
        _BASE[:-1] + b', "\xff\xfe' + b"X" * 70_000 + b'": 1}',
        "Invalid UTF-8",
        "a long field name that is not UTF-8",
    ),
    _dead(
        "huge_key_small_value",
        b'{"transaction_id": ',
        "truncated",
        "a key of 500,000 bytes with a broken message",
        key=b"\x00\xffK" * 166_667,
    ),
    _dead(
        "identifier_too_long",
        _json(terminal_id="T" * 65),
        "length <= 64 - at `$.terminal_id`",
        "terminal id of 65 characters",
    ),
    _dead("identifier_empty", _json(card_id=""), "length >= 1 - at `$.card_id`", "empty card id"),
    _dead(
        "identifier_with_nul",
        _json(card_id="c-1\x00"),
        "matching regex",
        "NUL byte in the card id",
    ),
    _dead(
        "identifier_homoglyph",
        _json(card_id="hostile-с-1"),  # Cyrillic "с"
        "matching regex",
        "Cyrillic letter in the card id",
    ),
    _dead(
        "sql_injection_transaction_id",
        _json(transaction_id=_SQL),
        "matching regex '\\\\A[A-Za-z0-9_.:\\\\-]+\\\\Z' - at `$.transaction_id`",
        "SQL in the transaction id",
    ),
    _dead(
        "sql_injection_card_id",
        _json(card_id="1' OR '1'='1"),
        "matching regex",
        "SQL in the card id",
        b"1' OR '1'='1",
    ),
    _dead(
        "sql_in_unknown_field",
        _json(comment="'; DELETE FROM scored_payments; --"),
        "unknown field `comment`",
        "SQL in an extra field",
    ),
    _dead(
        "sql_as_whole_message",
        b"'); DROP TABLE dead_letters;--",
        "malformed",
        "SQL instead of JSON",
        b"'); DROP TABLE dead_letters;--",
    ),
    _scored(
        "sql_lookalike_identifiers",
        _json(
            transaction_id="hostile-tx--DROP.TABLE.scored_payments--",
            merchant_id="DROP_TABLE:scored_payments",
            terminal_id="1-OR-1--",
            device_id="0:OR:1--",
        ),
        "SQL-looking identifiers in the allowed charset; stored verbatim",
    ),
    # -- valid, but unusual
    _scored(
        "whitespace_around",
        b" \n\t" + _json(transaction_id="hostile-tx-whitespace") + b"\n ",
        "whitespace around the object is valid JSON",
    ),
    _scored(
        "nanosecond_event_time",
        _json(transaction_id="hostile-tx-nanos", event_time="2026-03-02T09:30:00.123456789+01:00"),
        "nanoseconds are truncated to microseconds",
    ),
    _dead(
        "duplicate_json_key",
        _json(transaction_id="hostile-tx-dup-key")[:-1] + b', "amount_minor": 7}',
        "duplicate field `amount_minor`",
        "a key twice (msgspec alone would keep the last value, 7)",
    ),
    _dead(
        "duplicate_json_key_escaped",
        _json(transaction_id="hostile-tx-dup-key-escaped")[:-1] + b', "\\u0061mount_minor": 7}',
        "duplicate field `amount_minor`",
        "a key twice, once spelled with a JSON escape",
    ),
    _dead(
        "duplicate_transaction_id_key",
        b'{"transaction_id": "hostile-tx-first", ' + _json(transaction_id="hostile-tx-second")[1:],
        "duplicate field `transaction_id`",
        "two transaction ids in one message: which one is it?",
    ),
    _dead(
        "duplicate_json_key_invalid_first",
        _json(transaction_id="hostile-tx-dup-key-1", amount_minor=-5)[:-1]
        + b', "amount_minor": 7}',
        "Expected `int` >= 0 - at `$.amount_minor`",
        "a key twice, the first value invalid",
    ),
    _dead(
        "duplicate_json_key_invalid_last",
        _json(transaction_id="hostile-tx-dup-key-2")[:-1] + b', "amount_minor": -5}',
        "Expected `int` >= 0 - at `$.amount_minor`",
        "a key twice, the last value invalid",
    ),
    # -- the same transaction id three times: one scored row
    # -- identifiers and codes: a final newline, control characters, surrounding whitespace
    *(
        _dead(
            f"{field}_with_final_newline",
            _json(**{field: value + "\n"}),
            "matching regex '\\\\A",
            f"{field} ending in a newline ('$' would match before it)",
        )
        for field, value in (
            ("transaction_id", "hostile-tx-newline"),
            ("card_id", "hostile-card-1"),
            ("merchant_id", "hostile-m-1"),
            ("terminal_id", "hostile-pos-1"),
            ("device_id", "hostile-device-1"),
            ("mcc", "5411"),
            ("currency", "EUR"),
            ("country", "FR"),
        )
    ),
    _dead(
        "identifier_63_chars_and_newline",
        _json(card_id="c" * 63 + "\n"),
        "matching regex",
        "63 characters and a newline: within the length, not within the charset",
    ),
    _dead("identifier_leading_space", _json(card_id=" hostile-card-1"), "matching regex", "lead"),
    _dead("identifier_trailing_space", _json(card_id="hostile-card-1 "), "matching regex", "trail"),
    _dead("identifier_embedded_tab", _json(merchant_id="hostile\tm"), "matching regex", "tab"),
    _dead("identifier_carriage_return", _json(terminal_id="pos-1\r"), "matching regex", "CR"),
    # -- ids that differ only by case are two payments
    _scored(
        "id_case_lower",
        _json(transaction_id="h4-case-abc", card_id="hostile-card-case-1", amount_minor=700),
        "an id in lower case",
    ),
    _scored(
        "id_case_upper",
        _json(transaction_id="H4-CASE-ABC", card_id="hostile-card-case-2", amount_minor=900),
        "the same id in upper case, another card and amount: another payment",
    ),
    _scored(
        "duplicate_transaction_id_first",
        _json(transaction_id="hostile-tx-duplicate"),
        "first of three messages with one transaction id",
    ),
    _scored(
        "duplicate_transaction_id_redelivered",
        _json(transaction_id="hostile-tx-duplicate"),
        "the same message again (an at-least-once redelivery)",
    ),
    # -- keys and headers: the value decides; whatever the key and headers hold is kept or ignored
    HostileCase(
        "key_binary_not_utf8",
        _json(transaction_id="hostile-tx-key-binary"),
        "scored",
        "",
        "a key of bytes that are not UTF-8: the payment counts, its key is not read",
        key=b"\xff\xfe\x00\xc3(\xed\xa0\x80",
    ),
    HostileCase(
        "key_null",
        _json(transaction_id="hostile-tx-key-null"),
        "scored",
        "",
        "no key at all",
        key=None,
    ),
    HostileCase(
        "key_of_another_card",
        _json(transaction_id="hostile-tx-key-other"),
        "scored",
        "",
        "the key names another card than the payload: the payload's card counts",
        key=b"hostile-c-someone-else",
    ),
    HostileCase(
        "key_of_300kb",
        _json(transaction_id="hostile-tx-key-300kb"),
        "scored",
        "",
        "a key of 300,000 bytes with a valid payment",
        key=b"K\x00" * 150_000,
    ),
    HostileCase(
        "headers_huge_binary_and_null",
        _json(transaction_id="hostile-tx-headers"),
        "scored",
        "",
        "headers of 200,000 binary bytes, a null header and a repeated one",
        headers=(("trace", b"\x00\xff" * 100_000), ("empty", None), ("trace", b"again")),
    ),
    HostileCase(
        "headers_on_a_bad_message",
        _json(transaction_id="hostile-tx-headers-bad", amount_minor=-1),
        "dead_letter",
        "Expected `int` >= 0 - at `$.amount_minor`",
        "a bad payment with odd headers and a binary key",
        key=b"\x80\x81",
        headers=(("h\u00e9ader", b"\xc3\x28"), ("n", None)),
    ),
    HostileCase(
        "header_name_not_utf8",
        _json(transaction_id="hostile-tx-header-name"),
        "scored",
        "",
        "a header whose name is not UTF-8 (a Java or Go producer sends any bytes): the client "
        "could not read the record, and the flow stopped at it on every restart",
        headers=((b"tr\xc3\x28ce", b"1"), ("fine", b"2")),
    ),
    HostileCase(
        "header_name_not_utf8_on_a_bad_message",
        _json(transaction_id="hostile-tx-header-name-bad", amount_minor=-7),
        "dead_letter",
        "Expected `int` >= 0 - at `$.amount_minor`",
        "a bad payment whose header name is a UTF-8-encoded surrogate (CESU-8)",
        headers=((b"\xed\xa0\x80", None),),
    ),
    _dead(
        "bad_value_without_key",
        _json(transaction_id="hostile-tx-no-key", currency="eur"),
        "at `$.currency`",
        "a bad payment without a key",
        None,
    ),
    # -- identifiers: exactly at the maximum length, and characters that look or fold alike
    _scored(
        "identifier_64_chars",
        _json(transaction_id="hostile-tx-64-" + "x" * 50, device_id="D" * 64),
        "ids of exactly 64 characters, the maximum",
    ),
    _dead(
        "identifier_zero_width_space",
        _json(card_id="hostile-c\u200b-1"),
        f"{_ID_REGEX} - at `$.card_id`",
        "a zero-width space inside the card id",
    ),
    _dead(
        "identifier_zero_width_joiner_escaped",
        _json(merchant_id="...").replace(b'"..."', b'"hostile-m\\u200d-1"'),
        f"{_ID_REGEX} - at `$.merchant_id`",
        "a zero-width joiner, as a JSON escape, in the merchant id",
    ),
    _dead(
        "identifier_fullwidth_letters",
        _json(transaction_id="\uff48ostile-tx-fullwidth"),
        f"{_ID_REGEX} - at `$.transaction_id`",
        "a fullwidth h (NFKC folds it to h)",
    ),
    _dead(
        "identifier_kelvin_sign",
        _json(card_id="hostile-\u212a-1"),
        f"{_ID_REGEX} - at `$.card_id`",
        "the Kelvin sign, which lower-cases to k",
    ),
    _dead(
        "identifier_combining_accent",
        _json(terminal_id="cafe\u0301"),
        f"{_ID_REGEX} - at `$.terminal_id`",
        "e and a combining accent (NFC: \u00e9): cafe under an accent-insensitive collation",
    ),
    _dead(
        "identifier_65_chars",
        _json(transaction_id="hostile-tx-65-" + "x" * 51),
        "length <= 64 - at `$.transaction_id`",
        "an id one character past the maximum",
    ),
    _dead(
        "identifier_escaped_surrogate_pair_emoji",
        _json(card_id="...").replace(b'"..."', b'"hostile-\\ud83d\\ude00"'),
        f"{_ID_REGEX} - at `$.card_id`",
        "an emoji as a surrogate-pair escape",
    ),
    _dead(
        "identifier_lone_surrogate_escape",
        _json(card_id="...").replace(b'"..."', b'"hostile-\\ud800"'),
        "surrogate",
        "a lone surrogate escape, which no UTF-8 text can hold",
    ),
    # -- numbers and times at and past their edges
    _dead(
        "amount_exponent",
        _json().replace(b"1250", b"1.25e3"),
        "Expected `int`, got `float` - at `$.amount_minor`",
        "an amount written with an exponent",
    ),
    _dead("amount_2_pow_63", _json(amount_minor=2**63), "<= 1000000000000", "2**63"),
    _dead(
        "amount_5000_digits",
        _json().replace(b"1250", b"7" * 5_000),
        "Integer value out of range - at `$.amount_minor`",
        "an integer of 5,000 digits (past Python's int-string limit)",
    ),
    _dead(
        "latitude_exponent_past_float",
        _json().replace(b"48.857", b"1e99999999999999999999"),
        "Number out of range - at `$.latitude`",
        "an exponent past any float",
    ),
    _dead(
        "event_time_leap_second",
        _json(event_time="2016-12-31T23:59:60Z"),
        "Invalid RFC3339 encoded datetime - at `$.event_time`",
        "a leap second",
    ),
    _dead(
        "event_time_year_1",
        _json(event_time="0001-01-01T00:00:00+23:59"),
        "must lie between 2000-01-01 and 2100-01-01",
        "year 1, east of UTC (its UTC time is in year 0)",
    ),
    _dead(
        "event_time_year_9999",
        _json(event_time="9999-12-31T23:59:59-23:59"),
        "must lie between 2000-01-01 and 2100-01-01",
        "year 9999, west of UTC (its UTC time is in year 10000)",
    ),
    _dead(
        "event_time_negative_year",
        _json(event_time="-0001-01-01T00:00:00Z"),
        "Invalid RFC3339 encoded datetime",
        "a negative year",
    ),
    _dead(
        "event_time_february_30",
        _json(event_time="2026-02-30T09:30:00Z"),
        "Invalid RFC3339 encoded datetime",
        "a day that does not exist",
    ),
    _dead(
        "event_time_epoch_millis_string",
        _json(event_time="1772440200000"),
        "Invalid RFC3339 encoded datetime",
        "epoch milliseconds as a string",
    ),
    _scored(
        "event_time_earliest",
        _json(
            transaction_id="hostile-tx-2000",
            card_id="hostile-card-2000",
            event_time="2000-01-01T00:00:00Z",
        ),
        "the earliest event time taken (its own card: far before the others)",
    ),
    _dead(
        "event_time_just_before_earliest",
        _json(event_time="2000-01-01T00:59:59.999999+01:00"),
        "must lie between 2000-01-01 and 2100-01-01",
        "one microsecond before the earliest, in another zone",
    ),
    # -- JSON values that are not objects, or empty ones
    _dead("json_true", b"true", "Expected `object`, got `bool`", "JSON true", None),
    _dead("json_float", b"-0.0e0", "Expected `object`, got `float`", "JSON float", None),
    _dead("json_empty_object", b"{}", "missing required field", "an empty object", None),
    _dead("json_empty_array", b"[]", "Expected `object`, got `array`", "an empty array", None),
    _dead("json_nul_byte", b"\x00", "malformed", "one NUL byte", None),
    # Two payments of one id and card, other amounts, whose JSON (as the card step encodes it)
    # share a CRC-32, found among 120,000 and 400,000 variants of the device id (a birthday
    # search of seconds): the card step's fingerprint was that CRC-32, so the second was skipped
    # as a redelivery of the first and vanished.
    _scored(
        "crc32_twin_1",
        _json(transaction_id="hostile-tx-crc32", device_id="dev-djL3Gn3QdK"),
        "a payment; its twin below shares the CRC-32 of its JSON",
    ),
    HostileCase(
        "crc32_twin_2",
        _json(transaction_id="hostile-tx-crc32", amount_minor=99_999, device_id="dev-7b3TItc9ym"),
        "scored",
        "",
        "the same id and card, another amount and device, the same CRC-32: a reused id",
        rejected="reused",
    ),
    HostileCase(
        "duplicate_transaction_id_changed",
        _json(transaction_id="hostile-tx-duplicate", amount_minor=99_999),
        "scored",
        "",
        "same transaction id, different amount: decoded, then a dead letter (id reused)",
        rejected="reused",
    ),
    # -- round 10: numbers at the edge of a float, the widest real offset, empty (not null) keys
    _scored(
        "coordinates_negative_zero_and_underflow",
        _json(transaction_id="hostile-tx-neg-zero")
        .replace(b"48.857", b"-0.0")
        .replace(b"2.352", b"1e-400"),
        "latitude -0.0 and a longitude that underflows to 0.0: a point on the map, scored",
    ),
    _dead(
        "event_time_offset_plus_23_59",
        _json(event_time="2026-03-02T09:30:00+23:59"),
        "must carry a time zone's UTC offset, from -12:00 to +14:00",
        "RFC 3339's widest offset, no time zone's: its local hour and weekday were nonsense",
    ),
    _dead(
        "event_time_offset_minus_12_01",
        _json(event_time="2026-03-02T09:30:00-12:01"),
        "must carry a time zone's UTC offset, from -12:00 to +14:00",
        "a minute west of the westmost time zone (Baker Island, -12:00)",
    ),
    _scored(
        "event_time_offset_minus_12",
        _json(transaction_id="hostile-tx-minus-12", event_time="2026-03-02T09:30:00-12:00"),
        "the westmost offset in use (Baker Island, -12:00): 21:30 UTC",
    ),
    _scored(
        "event_time_offset_plus_14",
        _json(transaction_id="hostile-tx-plus-14", event_time="2026-03-02T23:30:00+14:00"),
        "the widest offset in use (Kiribati, +14:00): the next local day, 09:30 UTC",
    ),
    HostileCase(
        "key_empty_bytes",
        _json(transaction_id="hostile-tx-key-empty"),
        "scored",
        "",
        "a key of zero bytes (not null): the payment counts",
        key=b"",
    ),
    # -- round 11: ids that are path segments a browser resolves away
    _scored(
        "identifiers_dot_segments",
        _json(transaction_id="..", card_id=".", merchant_id="..", terminal_id="."),
        "ids '.' and '..' (the charset allows them): scored, and the review queue opens them "
        "(/payment?id=..; /payments/.. took a browser to /)",
    ),
    _dead(
        "bad_value_with_empty_key",
        _json(transaction_id="hostile-tx-key-empty-bad", amount_minor=-3),
        "Expected `int` >= 0 - at `$.amount_minor`",
        "a bad payment whose key is zero bytes: kept as zero bytes, not NULL",
        b"",
    ),
)


def _label(**changes: Any) -> bytes:
    label: dict[str, Any] = {
        "transaction_id": "hostile-tx-valid",
        "card_id": _CARD,
        "is_fraud": True,
        "reported_at": "2026-03-09T02:00:00Z",
    }
    label.update(changes)
    return json.dumps({k: v for k, v in label.items() if v is not ...}).encode()


LABEL_CASES: tuple[HostileCase, ...] = (
    _scored("valid_label", _label(), "a valid label, for reference"),
    _dead("label_truncated", _label()[:30], "truncated", "truncated JSON", None),
    _dead(
        "label_is_fraud_as_string",
        _label(is_fraud="yes"),
        "Expected `bool`, got `str` - at `$.is_fraud`",
        "verdict as a string",
    ),
    _dead(
        "label_is_fraud_as_number",
        _label(is_fraud=1),
        "Expected `bool`, got `int` - at `$.is_fraud`",
        "verdict as a number",
    ),
    _dead(
        "label_without_zone",
        _label(reported_at="2026-03-09T02:00:00"),
        "with a timezone component - at `$.reported_at`",
        "report time without a time zone",
    ),
    _dead(
        "label_missing_card",
        _label(card_id=...),
        "missing required field `card_id`",
        "no card id",
    ),
    _dead(
        "label_in_1970",
        _label(reported_at="1970-01-01T00:00:00Z"),
        "must lie between 2000-01-01 and 2100-01-01",
        "report time in 1970",
    ),
    _dead(
        "label_reported_at_offset_plus_20",
        _label(reported_at="2026-03-09T22:00:00+20:00"),
        "must carry a time zone's UTC offset, from -12:00 to +14:00",
        "a report time in no time zone's offset",
    ),
    _dead("payment_on_label_topic", _BASE, "unknown field `merchant_id`", "a payment, not a label"),
    _dead(
        "label_duplicate_key",
        _label(is_fraud=False)[:-1] + b', "is_fraud": true}',
        "duplicate field `is_fraud`",
        "the verdict twice, both ways",
    ),
    _dead(
        "label_duplicate_key_with_note",
        _label(note='a note, with commas, and "quotes"')[:-1] + b', "card_id": "hostile-c-2"}',
        "duplicate field `card_id`",
        "a key twice in a label whose free text holds commas",
    ),
    _dead(
        "label_id_with_final_newline",
        _label(transaction_id="hostile-tx-valid\n"),
        "matching regex",
        "transaction id ending in a newline",
    ),
    _dead("label_json_null", b"null", "Expected `object`, got `null`", "JSON null", None),
    _dead("label_json_array", b"[" + _label() + b"]", "Expected `object`, got `array`", "array"),
    _dead(
        "label_analyst_not_an_identifier",
        _label(analyst="alice smith"),
        f"{_ID_REGEX} - at `$.analyst`",
        "an analyst name with a space",
    ),
    _dead(
        "label_note_too_long",
        _label(note="n" * 2_001),
        "length <= 2000 - at `$.note`",
        "a note one character past its maximum",
    ),
    _dead(
        "label_reported_in_2099",
        _label(reported_at="2099-12-31T23:59:59Z"),
        "after the record reached Kafka",
        "reported far ahead of the record's time",
    ),
    _dead(
        "label_transaction_id_zero_width",
        _label(transaction_id="hostile-tx-valid\u200b"),
        f"{_ID_REGEX} - at `$.transaction_id`",
        "the valid payment's id and a zero-width space",
    ),
    HostileCase(
        "label_note_of_controls_and_bidi",
        _label(
            transaction_id="hostile-tx-note-controls",
            note="\x00\x1b[31m\u202egnp.exe\u202c\r\n\ufeff\U0001f600 " + "\u0301" * 100,
        ),
        "scored",
        "",
        "a note of NUL, escape sequences, bidi overrides and combining marks (for no payment)",
        rejected="not_found",
    ),
    HostileCase(
        "label_key_binary_headers_huge",
        _label(transaction_id="hostile-tx-label-key"),
        "scored",
        "",
        "a label with a binary key and a header of 100,000 bytes (for no payment)",
        key=b"\xff\x00",
        rejected="not_found",
        headers=(("x", b"\xff" * 100_000),),
    ),
    HostileCase(
        "label_header_name_not_utf8",
        _label(transaction_id="hostile-tx-label-header-name"),
        "scored",
        "",
        "a label with a header name that is not UTF-8 (for no payment)",
        rejected="not_found",
        headers=((b"\xff\xfe", b"x"),),
    ),
    # Valid labels that are rejected when joined (``says``: the reason in fraud_labels).
    HostileCase(
        "label_for_unknown_payment",
        _label(transaction_id="hostile-tx-unknown"),
        "scored",
        "",
        "a label for a payment that never came",
        rejected="not_found",
    ),
    HostileCase(
        "label_from_another_card",
        _label(card_id="hostile-card-other"),
        "scored",
        "",
        "the payment was made with another card",
        rejected="card_mismatch",
    ),
    HostileCase(
        "label_contradicting",
        _label(is_fraud=False, reported_at="2026-03-10T02:00:00Z"),
        "scored",
        "",
        "a second verdict, the other way",
        rejected="contradicts",
    ),
    HostileCase(
        "label_repeated",
        _label(reported_at="2026-03-11T02:00:00Z"),
        "scored",
        "",
        "the same verdict again, in another message",
        rejected="duplicate",
    ),
    HostileCase(
        "label_before_its_payment",
        _label(reported_at="2026-03-01T00:00:00Z"),
        "scored",
        "",
        "reported before the payment happened",
        rejected="reported_before_payment",
    ),
    # -- round 10: records without a value, ids that differ from the payment's by case only
    _dead("label_tombstone", None, "no value", "a label record without a value", None),
    _dead("label_empty_value", b"", "truncated", "a label record of zero bytes", b""),
    HostileCase(
        "label_id_in_upper_case",
        _label(transaction_id="HOSTILE-TX-VALID", reported_at="2026-03-12T02:00:00Z"),
        "scored",
        "",
        "the valid payment's id in upper case: another id (ids compare byte for byte)",
        rejected="not_found",
    ),
    HostileCase(
        "label_card_in_upper_case",
        _label(card_id="HOSTILE-C-1", reported_at="2026-03-12T03:00:00Z"),
        "scored",
        "",
        "the valid payment's card in upper case: another card, never its payment's",
        rejected="card_mismatch",
    ),
)


def dead_letter_cases(cases: tuple[HostileCase, ...] = PAYMENT_CASES) -> list[HostileCase]:
    return [case for case in cases if case.expected == "dead_letter"]


def scored_transaction_ids(cases: tuple[HostileCase, ...] = PAYMENT_CASES) -> dict[str, int]:
    """Each transaction id the scored cases carry, with how many messages carry it.

    The flow must end with exactly one scored row per id, whatever the count.
    """
    counts: dict[str, int] = {}
    for case in cases:
        if case.expected == "scored" and case.raw is not None:
            payload = json.loads(case.raw)
            counts[payload["transaction_id"]] = counts.get(payload["transaction_id"], 0) + 1
    return counts
