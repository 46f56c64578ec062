"""The message contract: the typed payment and fraud-label events that every feature folds over.

Both travel as JSON on Kafka. A message is decoded straight into a frozen ``msgspec.Struct``;
type and range rules live on the fields (so errors carry the JSON path, e.g.
``Expected `int` >= 0 - at `$.amount_minor```) and cross-field rules in ``__post_init__``.

Rules a bank expects of an authorisation record:

- ``amount_minor`` is a whole number of the currency's minor unit (cents, yen, fils), from 0
  to 10**12; ``currency`` is an active ISO 4217 code that is legal tender somewhere (funds,
  metals, units of account and test codes are refused: :data:`NOT_FOR_PAYMENTS`). An amount of
  0 is a card verification (an account-status check with no money), which is real traffic and
  what card testers probe with; :attr:`Payment.is_verification` says so, and the card features
  keep it apart from the money (:mod:`features.card`).
- ``event_time`` carries its own UTC offset (a naive time is rejected: the offset is what makes
  calendar features local to the payer), a time zone's (-12:00 to +14:00), and lies between
  2000-01-01 and 2100-01-01 UTC.
  Whether it is too far ahead of the moment the message reached Kafka is the decoder's check
  (:class:`PaymentDecoder`), since only it knows that moment.
- ``country`` is an ISO 3166-1 alpha-2 code, ``mcc`` a four-digit merchant category code.
- coordinates come as a pair or not at all.
- Unknown fields are an error: under a given ``schema_version`` the producer and this decoder
  agree on every field. A new field is added with a default so older producers keep working.
- A key named twice is an error (:mod:`features.json_keys`): msgspec would keep the last value.
- Error texts are bounded (:func:`features.bounded.bounded`): msgspec quotes what it refuses,
  an unknown field's name of any length among it.

>>> raw = (b'{"transaction_id": "t-1", "card_id": "c-1", "merchant_id": "m-1", '
...        b'"terminal_id": "p-1", "amount_minor": 1250, "currency": "EUR", '
...        b'"event_time": "2026-11-02T09:30:00+01:00", "mcc": "5411", '
...        b'"channel": "pos", "country": "FR"}')
>>> payment = PaymentDecoder().decode(raw)
>>> payment.amount_minor, payment.event_time.utcoffset().total_seconds()
(1250, 3600.0)
>>> PaymentDecoder().decode(raw.replace(b'1250', b'-5'))
Traceback (most recent call last):
    ...
features.contract.InvalidMessageError: Expected `int` >= 0 - at `$.amount_minor`
>>> PaymentDecoder().decode(raw.replace(b'1250', b'0')).is_verification
True
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
import pycountry
from babel.core import get_global
from babel.numbers import get_currency_precision, get_territory_currencies
from msgspec import Meta

from features.bounded import bounded
from features.json_keys import repeated_key

SCHEMA_VERSION = 1

EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
# The offsets of time zones in use (Baker Island, Kiribati): RFC 3339 allows up to ±23:59, and
# an offset of +23:59 made a payment's local hour and weekday, the calendar features, nonsense.
WESTMOST_OFFSET = timedelta(hours=-12)
EASTMOST_OFFSET = timedelta(hours=14)


def _not_legal_tender() -> frozenset[str]:
    """Every code that CLDR (through Babel) marks as not legal tender in some territory, at any
    time: ISO 4217's funds (``USN``, ``BOV``, ``CHE``, ``CHW``, ``CLF``, ``COU``, ``MXV``, ``UYI``,
    ``UYW``), units of account and special codes (``XDR``, ``XSU``, ``XUA``, ``XAD``), precious
    metals (``XAU``, ``XAG``, ``XPD``, ``XPT``), bond-market units (``XBA`` to ``XBD``), the test
    code ``XTS``, "no currency" ``XXX``, and ``VED`` (the digital bolívar). Derived, not
    hand-listed, so a new fund code comes with a Babel upgrade."""
    everything = (date.min, date.max)
    return frozenset(
        code
        for territory in get_global("territory_currencies")
        for code in get_territory_currencies(territory, *everything, tender=False, non_tender=True)
    )


_ISO_4217: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)
# ISO 4217 codes a card never pays with (see _not_legal_tender).
NOT_FOR_PAYMENTS: frozenset[str] = _ISO_4217 & _not_legal_tender()
CURRENCIES: frozenset[str] = _ISO_4217 - NOT_FOR_PAYMENTS
COUNTRIES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)
_MINOR_UNIT_DIGITS: dict[str, int] = {code: get_currency_precision(code) for code in CURRENCIES}

MAX_AMOUNT_MINOR = 10**12

Identifier = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"\A[A-Za-z0-9_.:\-]+\Z")]
Channel = Literal["pos", "ecom", "atm", "moto", "contactless"]
AwareTime = Annotated[datetime, Meta(tz=True)]
Latitude = Annotated[float, Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Meta(ge=-180.0, le=180.0)]


# What a message broke, for the dead-letter metric's ``reason`` label: named where the decoder
# refuses the message, never read from its text (which quotes the producer's field names).
Invalid = Literal[
    "empty",  # no value at all
    "malformed_json",  # not JSON (or not UTF-8)
    "missing_field",
    "unknown_field",
    "duplicate_field",
    "wrong_type",  # a value of another type, length, pattern or range than its field's
    "future_time",  # the event's time too far after the record reached Kafka
    "invalid",  # any other rule (an unknown enum value or currency, a time out of range)
]


class InvalidMessageError(ValueError):
    """A message that does not meet the contract; its text says which field and why, its
    ``kind`` which rule it broke."""

    def __init__(self, message: str, kind: Invalid = "invalid") -> None:
        super().__init__(message)
        self.kind: Invalid = kind


# The first words of msgspec's own validation errors (its wording, which the producer's input
# can only follow, never precede): the kind each one says.
_MSGSPEC_KINDS: tuple[tuple[str, Invalid], ...] = (
    ("Object missing required field `", "missing_field"),
    ("Object contains unknown field `", "unknown_field"),
    ("Expected `", "wrong_type"),
)


def _kind_of(exc: msgspec.DecodeError) -> Invalid:
    """What a msgspec error says the message broke: not JSON, or which rule of the contract
    (by how msgspec's own wording begins; rules of ``__post_init__``: ``invalid``).

    >>> _kind_of(msgspec.ValidationError("Object contains unknown field `Expected `"))
    'unknown_field'
    """
    if not isinstance(exc, msgspec.ValidationError):
        return "malformed_json"
    text = str(exc)
    return next((kind for start, kind in _MSGSPEC_KINDS if text.startswith(start)), "invalid")


def _check_event_time(name: str, value: datetime) -> None:
    if not EARLIEST_EVENT_TIME <= value < LATEST_EVENT_TIME:
        raise ValueError(
            f"`{name}` must lie between {EARLIEST_EVENT_TIME:%Y-%m-%d} and "
            f"{LATEST_EVENT_TIME:%Y-%m-%d} UTC; got {value.isoformat()} - at `$.{name}`"
        )
    offset = value.utcoffset()
    if offset is not None and not WESTMOST_OFFSET <= offset <= EASTMOST_OFFSET:
        raise ValueError(
            f"`{name}` must carry a time zone's UTC offset, from -12:00 to +14:00; got "
            f"{value.isoformat()} - at `$.{name}`"
        )


class Payment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One card payment as the acquirer reports it."""

    transaction_id: Identifier
    card_id: Identifier
    merchant_id: Identifier
    terminal_id: Identifier
    amount_minor: Annotated[int, Meta(ge=0, le=MAX_AMOUNT_MINOR)]
    currency: Annotated[str, Meta(pattern=r"\A[A-Z]{3}\Z")]
    event_time: AwareTime
    mcc: Annotated[str, Meta(pattern=r"\A[0-9]{4}\Z")]
    channel: Channel
    country: Annotated[str, Meta(pattern=r"\A[A-Z]{2}\Z")]
    device_id: Identifier | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    schema_version: Literal[1] = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.currency not in CURRENCIES:
            what = (
                " (an ISO 4217 fund or special code: legal tender nowhere)"
                if self.currency in NOT_FOR_PAYMENTS
                else ""
            )
            raise ValueError(
                f"`currency` must be an ISO 4217 code for payments; got {self.currency!r}{what}"
                " - at `$.currency`"
            )
        if self.country not in COUNTRIES:
            raise ValueError(
                f"`country` must be an ISO 3166-1 alpha-2 code; got {self.country!r}"
                " - at `$.country`"
            )
        _check_event_time("event_time", self.event_time)
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError(
                "`latitude` and `longitude` come together or not at all; got only "
                f"{'latitude' if self.longitude is None else 'longitude'} - at `$`"
            )

    @property
    def is_verification(self) -> bool:
        """A zero-amount authorisation: the card is checked, no money moves."""
        return self.amount_minor == 0

    @property
    def amount(self) -> float:
        """The amount in the currency's major unit (12.50 for 1250 EUR cents, 1250 for JPY)."""
        return self.amount_minor / 10 ** _MINOR_UNIT_DIGITS[self.currency]

    @property
    def event_timestamp(self) -> float:
        """Event time as POSIX seconds (UTC)."""
        return self.event_time.timestamp()


class FraudLabel(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """The bank's verdict on one payment, reported after it happened, or an analyst's from the
    review queue (:mod:`review`): ``analyst`` names who gave it, ``note`` says why.

    Both are optional, so every label of before stays valid; a label without them is encoded
    without them (``omit_defaults``: fields at their default, ``schema_version`` included, are
    left out), so a flow that does not know them yet reads it too.
    """

    transaction_id: Identifier
    card_id: Identifier
    is_fraud: bool
    reported_at: AwareTime
    analyst: Identifier | None = None
    note: Annotated[str, Meta(max_length=2000)] | None = None
    schema_version: Literal[1] = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _check_event_time("reported_at", self.reported_at)


def minor_unit_digits(currency: str) -> int:
    """Digits after the decimal point in ``currency``'s major unit (2 for EUR, 0 for JPY)."""
    try:
        return _MINOR_UNIT_DIGITS[currency]
    except KeyError:
        raise ValueError(
            f"unknown currency {currency!r}: expected one of {len(CURRENCIES)} ISO 4217 codes"
        ) from None


T = TypeVar("T", bound=msgspec.Struct)


class _Decoder(Generic[T]):
    def __init__(self, kind: type[T], time_field: str, max_future_skew: timedelta) -> None:
        if max_future_skew < timedelta(0):
            raise ValueError(f"max_future_skew must be >= 0; got {max_future_skew}")
        self._decoder = msgspec.json.Decoder(kind)
        self._time_field = time_field
        self._max_future_skew = max_future_skew
        # A field of free text, whose value may hold commas (see features.json_keys).
        self._free_text = "note" if "note" in kind.__struct_fields__ else None

    def decode(self, raw: bytes | None, received_at: datetime | None = None) -> T:
        """Decode one Kafka message value, or raise :class:`InvalidMessageError` saying why not.

        ``received_at`` is when the message reached Kafka (its record timestamp); an event more
        than ``max_future_skew`` after it is rejected as a clock or producer error.
        """
        if raw is None:
            raise InvalidMessageError(
                "message has no value (a tombstone or an empty record)", "empty"
            )
        try:
            event = self._decoder.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError is one too
            raise InvalidMessageError(bounded(str(exc)), _kind_of(exc)) from None
        free_text = self._free_text is not None and getattr(event, self._free_text) is not None
        twice = repeated_key(raw, free_text=free_text)
        if twice is not None:
            raise InvalidMessageError(
                f"Object contains duplicate field `{bounded(twice, 100)}` (each key once) - at `$`",
                "duplicate_field",
            )
        if received_at is not None:
            when: datetime = getattr(event, self._time_field)
            if when - received_at > self._max_future_skew:
                raise InvalidMessageError(
                    f"`{self._time_field}` {when.isoformat()} is more than "
                    f"{self._max_future_skew} after the record reached Kafka at "
                    f"{received_at.isoformat()} - at `$.{self._time_field}`",
                    "future_time",
                )
        return event


class PaymentDecoder(_Decoder[Payment]):
    """Decodes payment messages; build once and reuse."""

    def __init__(self, max_future_skew: timedelta = timedelta(minutes=5)) -> None:
        super().__init__(Payment, "event_time", max_future_skew)


class LabelDecoder(_Decoder[FraudLabel]):
    """Decodes fraud-label messages; build once and reuse."""

    def __init__(self, max_future_skew: timedelta = timedelta(minutes=5)) -> None:
        super().__init__(FraudLabel, "reported_at", max_future_skew)
