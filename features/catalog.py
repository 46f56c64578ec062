"""The feature catalogue: every name the model sees, in a stable order, and its neutral value.

Every feature is a float; none is ever NaN or None. Where a payment has no history for a feature
the value is the *neutral* one listed in :data:`NO_HISTORY` (what a card, terminal or merchant
seen for the first time gets). Amounts are in euros (:mod:`features.currency`).

Per card (:class:`features.card.CardHistory`), windows 1h, 24h, 7d, 30d:

========================================  =====================================  ===============
name                                      meaning                                no history
========================================  =====================================  ===============
``amount_eur``                            this payment's amount                  (always known)
``card_count_{w}``                        payments in the window                 0
``card_amount_sum_{w}``                   their total                            0
``card_amount_mean_{w}``                  their mean                             0
``card_amount_max_{w}``                   their largest                          0
``card_seconds_since_prev``               since the previous payment, capped     2,592,000 (30 d)
``card_amount_to_mean_30d``               amount / 30-day mean                   1 (as usual)
``card_distinct_merchants_24h``           distinct merchants in the 24h window   0
``card_merchant_new_30d``                 1 if the merchant is not in the 30d    1
                                          window
``card_country_unusual``                  1 if the country is not a most         0
                                          frequent one of the 30d window
``card_speed_kmh``                        km/h from the previous payment when    0
                                          both have coordinates
========================================  =====================================  ===============

Per terminal and per merchant (:class:`features.entity.EntityHistory`), ``{p}`` is the prefix:
``{p}_count_1d``, ``{p}_count_7d``, ``{p}_count_30d`` (no history: 0) and ``{p}_fraud_rate_7d``,
``{p}_fraud_rate_30d`` (no history: 0), and ``{p}_settled_fraud_rate_1d``, ``_7d``, ``_30d``: the
same over the window of whole tiles that ends :data:`SETTLED_DELAY` before the payment, where
verdicts can have arrived (no history: 0). Calendar (:mod:`features.calendar`): ``hour_of_day``,
``is_night``, ``is_weekend``.

Windows are sawtooth windows (:mod:`features.windows`): ``w`` plus up to one hop.

>>> len(FEATURE_NAMES), FEATURE_NAMES[:3]
(42, ('amount_eur', 'card_count_1h', 'card_amount_sum_1h'))
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from features.windows import Window

MINUTE: Final = 60
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR

# How late (in event time, behind the latest payment of the same key) a payment may be and still
# be placed exactly; later ones are placed at that bound. See features.card.
LATENESS_SECONDS: Final = 15.0 * MINUTE

CARD_WINDOWS: Final = (
    Window("1h", HOUR, 5 * MINUTE),
    Window("24h", DAY, HOUR),
    Window("7d", 7 * DAY, HOUR),
    Window("30d", 30 * DAY, DAY),
)
ENTITY_COUNT_WINDOWS: Final = (
    Window("1d", DAY, HOUR),
    Window("7d", 7 * DAY, HOUR),
    Window("30d", 30 * DAY, DAY),
)
ENTITY_FRAUD_WINDOWS: Final = (Window("7d", 7 * DAY, HOUR), Window("30d", 30 * DAY, DAY))
# Verdicts on a payment usually come within this delay (the Fraud Detection Handbook's seven
# days). The *settled* fraud rates look only at payments at least this old, whose verdicts can
# have come: a rate over the last week divides by payments that nobody has judged yet.
SETTLED_DELAY: Final = 7 * DAY
ENTITY_SETTLED_WINDOWS: Final = (
    Window("1d", DAY, HOUR),
    Window("7d", 7 * DAY, HOUR),
    Window("30d", 30 * DAY, DAY),
)
ENTITY_PREFIXES: Final = ("terminal", "merchant")

# The previous payment counts only within this span; beyond it seconds_since_prev is the span.
PREVIOUS_PAYMENT_HORIZON: Final = 30.0 * DAY
# How far back any feature looks, late payments included: a key idle this long holds nothing a
# later payment can see (the settled 30-day rate: 30 days, a daily hop and the delay).
HISTORY_REACH: Final = (
    max(
        *(w.length + w.hop for w in (*CARD_WINDOWS, *ENTITY_COUNT_WINDOWS, *ENTITY_FRAUD_WINDOWS)),
        *(w.length + w.hop + SETTLED_DELAY for w in ENTITY_SETTLED_WINDOWS),
        PREVIOUS_PAYMENT_HORIZON,
    )
    + LATENESS_SECONDS
)
# Speed divides by at least this many seconds: two payments a second apart are a minute apart.
MIN_TRAVEL_SECONDS: Final = 60.0
# How many merchants a card remembers (those most recently seen); bounds state per card.
CARD_MERCHANT_MEMORY: Final = 64

CARD_FEATURE_NAMES: Final[tuple[str, ...]] = (
    "amount_eur",
    *(
        f"card_{stat}_{w.name}"
        for w in CARD_WINDOWS
        for stat in ("count", "amount_sum", "amount_mean", "amount_max")
    ),
    "card_seconds_since_prev",
    "card_amount_to_mean_30d",
    "card_distinct_merchants_24h",
    "card_merchant_new_30d",
    "card_country_unusual",
    "card_speed_kmh",
)
CALENDAR_FEATURE_NAMES: Final[tuple[str, ...]] = ("hour_of_day", "is_night", "is_weekend")


def entity_feature_names(prefix: str) -> tuple[str, ...]:
    """The names :class:`features.entity.EntityHistory` returns for ``prefix``, in order."""
    return (
        *(f"{prefix}_count_{w.name}" for w in ENTITY_COUNT_WINDOWS),
        *(f"{prefix}_fraud_rate_{w.name}" for w in ENTITY_FRAUD_WINDOWS),
        *(f"{prefix}_settled_fraud_rate_{w.name}" for w in ENTITY_SETTLED_WINDOWS),
    )


FEATURE_NAMES: Final[tuple[str, ...]] = (
    *CARD_FEATURE_NAMES,
    *(name for prefix in ENTITY_PREFIXES for name in entity_feature_names(prefix)),
    *CALENDAR_FEATURE_NAMES,
)

_NEUTRAL_ONE = {"card_amount_to_mean_30d", "card_merchant_new_30d"}
NO_HISTORY: Final[Mapping[str, float]] = MappingProxyType(
    {
        name: PREVIOUS_PAYMENT_HORIZON
        if name == "card_seconds_since_prev"
        else 1.0
        if name in _NEUTRAL_ONE
        else 0.0
        for name in FEATURE_NAMES
        if name not in CALENDAR_FEATURE_NAMES and name != "amount_eur"
    }
)
"""The value of every history feature for a key seen for the first time."""


def assemble(
    card: Mapping[str, float],
    terminal: Mapping[str, float],
    merchant: Mapping[str, float],
    calendar: Mapping[str, float],
) -> dict[str, float]:
    """Merge the four parts of one payment's features into one dict keyed by FEATURE_NAMES.

    The one place where the parts are put together, for the live flow and the offline replay
    alike, so both produce the same keys in the same order.
    """
    features = {**card, **terminal, **merchant, **calendar}
    if tuple(features) != FEATURE_NAMES:
        missing = sorted(set(FEATURE_NAMES) - features.keys())
        extra = sorted(features.keys() - set(FEATURE_NAMES))
        raise ValueError(
            "assemble(card, terminal, merchant, calendar) must give exactly FEATURE_NAMES; "
            f"missing {missing}, unexpected {extra}; pass the parts in this order, from "
            "CardHistory, EntityHistory('terminal'), EntityHistory('merchant'), calendar_features"
        )
    return features
