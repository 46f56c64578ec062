"""The whitelist: every name a rule may use, with its type.

A rule sees one payment: the contract's fields (:class:`features.contract.Payment`), every feature
of the catalogue (:data:`features.catalog.FEATURE_NAMES`) and the model's ``fraud_probability``.
Nothing else is a name; a rule naming anything else is refused where it names it.

Numbers are floats (``amount_minor`` too: exact up to 2**53, and amounts stop at 10**12).
``device_id``, ``latitude`` and ``longitude`` are optional in the contract: a payment without
them has them *missing* (see :mod:`rules.syntax` for what a missing value does).

>>> TYPES["amount_eur"], TYPES["country"], TYPES["fraud_probability"]
('number', 'string', 'number')
>>> sorted(OPTIONAL)
['device_id', 'latitude', 'longitude']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, get_args

from features.catalog import FEATURE_NAMES
from features.contract import COUNTRIES, CURRENCIES, Channel

Type = Literal["number", "string", "bool"]
NUMBER: Final = "number"
STRING: Final = "string"
BOOL: Final = "bool"

# The payment's own fields (features.contract.Payment); schema_version and event_time are not
# rule material (the calendar features carry the time of day, local to the payer).
CONTRACT_FIELDS: Final[dict[str, Type]] = {
    "transaction_id": STRING,
    "card_id": STRING,
    "merchant_id": STRING,
    "terminal_id": STRING,
    "amount_minor": NUMBER,
    "currency": STRING,
    "mcc": STRING,
    "channel": STRING,
    "country": STRING,
    "device_id": STRING,
    "latitude": NUMBER,
    "longitude": NUMBER,
}
OPTIONAL: Final = frozenset({"device_id", "latitude", "longitude"})
PROBABILITY: Final = "fraud_probability"

TYPES: Final = MappingProxyType(
    {**CONTRACT_FIELDS, **dict.fromkeys(FEATURE_NAMES, NUMBER), PROBABILITY: NUMBER}
)
"""Every name a rule may use -> its type."""

# A list holds values of one kind; each kind is matched against one field of the payment.
ListKind = Literal["card", "merchant", "terminal", "country", "device", "bin"]
LIST_FIELDS: Final[dict[str, str]] = {
    "card": "card_id",
    "merchant": "merchant_id",
    "terminal": "terminal_id",
    "country": "country",
    "device": "device_id",
    "bin": "card_id",  # by prefix: card_id starts with @list
}
LIST_KINDS: Final = tuple(LIST_FIELDS)
PREFIX_KINDS: Final = frozenset({"bin"})


@dataclass(frozen=True, slots=True)
class Domain:
    """The values a string field can hold (the contract's, :mod:`features.contract`): a literal
    outside them never matches, so a rule comparing the field with one is refused where it
    names it (``country == "fr"`` would never fire, silently)."""

    holds: Callable[[str], bool]  # the value is one the field can hold
    starts: Callable[[str], bool]  # some value the field can hold starts with it
    what: str  # the values, in words


def _pattern(full: str, prefix: str) -> tuple[Callable[[str], bool], Callable[[str], bool]]:
    whole, start = re.compile(full), re.compile(prefix)
    return (lambda v: whole.fullmatch(v) is not None), (lambda v: start.fullmatch(v) is not None)


def _one_of(values: frozenset[str]) -> tuple[Callable[[str], bool], Callable[[str], bool]]:
    return values.__contains__, (lambda v: any(x.startswith(v) for x in values))


CHANNELS: Final = frozenset(get_args(Channel))
_ID: Final = Domain(
    *_pattern(r"[A-Za-z0-9_.:\-]{1,64}", r"[A-Za-z0-9_.:\-]{0,64}"),
    "an id: 1 to 64 characters of A-Z a-z 0-9 _ . : -",
)
DOMAINS: Final[dict[str, Domain]] = {
    **dict.fromkeys(("transaction_id", "card_id", "merchant_id", "terminal_id", "device_id"), _ID),
    "currency": Domain(*_one_of(CURRENCIES), 'an ISO 4217 currency code such as "EUR"'),
    "mcc": Domain(*_pattern(r"[0-9]{4}", r"[0-9]{0,4}"), 'a four-digit MCC such as "5411"'),
    "channel": Domain(*_one_of(CHANNELS), "one of " + ", ".join(sorted(CHANNELS))),
    "country": Domain(*_one_of(COUNTRIES), 'an ISO 3166-1 alpha-2 code such as "FR"'),
}
"""Every string field of :data:`CONTRACT_FIELDS` -> the values it can hold."""
