"""What people buy and when: merchant categories, payment channels, daily and weekly rhythm.

Merchant category codes (ISO 18245) come with a typical ticket size relative to a cardholder's
usual amount and a share of the shops (or online shops) that sell in that category. Rhythms are
relative weights per local hour (0-23) and per weekday (Monday first), normalised here.

>>> int(MCC_CODES[ATM_MCC]), CHANNELS[ECOM]
(6011, 'ecom')
>>> bool(np.isclose(HOURLY_IN_PERSON.sum(), 1.0)), int(np.argmax(HOURLY_IN_PERSON))
(True, 12)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

CHANNELS: tuple[str, ...] = ("pos", "contactless", "ecom", "atm", "moto")
POS, CONTACTLESS, ECOM, ATM, MOTO = range(len(CHANNELS))
CARD_PRESENT: npt.NDArray[np.bool_] = np.array([True, True, False, True, False])


class Category(NamedTuple):
    mcc: int
    what: str
    ticket: float  # typical amount relative to the cardholder's usual amount
    shops: float  # weight among physical shops (0: not sold in shops)
    online: float  # weight among online shops (0: not sold online)


_CATEGORIES: tuple[Category, ...] = (
    Category(5411, "grocery stores", 1.0, 30, 0),
    Category(5499, "convenience food", 0.45, 6, 0),
    Category(5812, "restaurants", 1.3, 14, 0),
    Category(5814, "fast food", 0.35, 10, 0),
    Category(5541, "fuel", 1.6, 8, 0),
    Category(5912, "pharmacies", 0.8, 6, 0),
    Category(5311, "department stores", 2.0, 4, 2),
    Category(5651, "clothing", 2.2, 7, 6),
    Category(5942, "book stores", 0.8, 2, 3),
    Category(7832, "cinemas", 0.6, 2, 0),
    Category(4121, "taxis", 0.7, 4, 3),
    Category(7011, "hotels", 4.0, 3, 3),
    Category(5732, "electronics", 5.0, 3, 6),
    Category(5944, "jewellery", 8.0, 1, 1),
    Category(5999, "miscellaneous retail", 1.5, 0, 14),
    Category(5818, "digital goods", 0.3, 0, 10),
    Category(5815, "digital media", 0.2, 0, 8),
    Category(4899, "streaming and subscriptions", 0.4, 0, 6),
    Category(4511, "airlines", 8.0, 0, 3),
    Category(4722, "travel agencies", 6.0, 0, 3),
    Category(5947, "gift cards", 2.5, 0, 2),
    Category(4829, "money transfer", 4.0, 0, 2),
    Category(8398, "charities", 0.8, 0, 2),
    Category(6011, "cash withdrawal", 2.0, 0, 0),
)

MCC_CODES: npt.NDArray[np.int64] = np.array([c.mcc for c in _CATEGORIES])
MCC_TEXT: tuple[str, ...] = tuple(f"{c.mcc:04d}" for c in _CATEGORIES)
TICKET: npt.NDArray[np.float64] = np.array([c.ticket for c in _CATEGORIES])
SHOP_WEIGHTS: npt.NDArray[np.float64] = np.array([c.shops for c in _CATEGORIES], dtype=float)
SHOP_WEIGHTS /= SHOP_WEIGHTS.sum()
ONLINE_WEIGHTS: npt.NDArray[np.float64] = np.array([c.online for c in _CATEGORIES], dtype=float)
ONLINE_WEIGHTS /= ONLINE_WEIGHTS.sum()
ATM_MCC = _CATEGORIES.index(next(c for c in _CATEGORIES if c.mcc == 6011))


def categories(*codes: int) -> npt.NDArray[np.int64]:
    """Indices into the catalogue of the given MCC codes."""
    index = {c.mcc: i for i, c in enumerate(_CATEGORIES)}
    return np.array([index[code] for code in codes], dtype=np.int64)


# What fraudsters buy, per scenario.
CARD_TESTING_MCCS = categories(5818, 5815, 8398)
TAKEOVER_MCCS = categories(5732, 5944, 5947, 4829)
LARGE_AMOUNT_MCCS = categories(5944, 5732, 4722, 4511)
SKIMMED_SHOP_MCCS = categories(5541, 5411, 5812, 5311, 5499)
CASH_OUT_SHOP_MCCS = categories(5732, 5944, 5311)


def _normalised(*parts: Sequence[float]) -> npt.NDArray[np.float64]:
    array = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    return np.asarray(array / array.sum(), dtype=np.float64)


# Share of payments per local hour (00-11h, 12-23h): peaks at lunch and after work.
HOURLY_IN_PERSON = _normalised(
    [0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 1.5, 2.0, 2.5, 3.0],
    [3.8, 3.5, 2.8, 2.6, 2.8, 3.4, 3.7, 3.2, 2.4, 1.6, 1.0, 0.5],
)
# Online shopping is flatter and peaks in the evening.
HOURLY_ONLINE = _normalised(
    [0.6, 0.4, 0.25, 0.2, 0.2, 0.25, 0.4, 0.7, 1.0, 1.3, 1.5, 1.6],
    [1.8, 1.7, 1.6, 1.6, 1.7, 1.9, 2.2, 2.6, 2.9, 2.8, 2.0, 1.2],
)
# Fraudsters favour the hours the cardholder sleeps.
HOURLY_NIGHT = _normalised(
    [3.0, 3.5, 3.5, 3.0, 2.5, 1.5, 0.8, 0.6, 0.6, 0.6, 0.6, 0.6],
    [0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.8, 1.0, 1.4, 2.0, 2.6],
)
# Relative spending per weekday, Monday first.
WEEKDAY = np.array([0.95, 0.95, 1.0, 1.0, 1.15, 1.2, 0.7])
