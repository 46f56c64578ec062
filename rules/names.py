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

from types import MappingProxyType
from typing import Final, Literal

from features.catalog import FEATURE_NAMES

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
