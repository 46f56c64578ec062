"""Calendar features, in the payment's own local time (the UTC offset it carries).

The contract rejects naive times, so ``event_time`` always has an offset: 23:30 at ``-05:00`` is
23:30 for these features, even though it is 04:30 UTC the next day.

- ``hour_of_day``: local hour, 0.0 to 23.0.
- ``is_night``: 1.0 from 00:00 to 05:59 local time, else 0.0.
- ``is_weekend``: 1.0 on local Saturday and Sunday, else 0.0.

>>> from datetime import datetime, timedelta, timezone
>>> from features.contract import Payment
>>> p = Payment(transaction_id="t", card_id="c", merchant_id="m", terminal_id="p",
...             amount_minor=100, currency="EUR", mcc="5411", channel="pos", country="US",
...             event_time=datetime(2026, 11, 6, 23, 30, tzinfo=timezone(timedelta(hours=-5))))
>>> calendar_features(p)  # Friday 23:30 in New York is Saturday 04:30 UTC
{'hour_of_day': 23.0, 'is_night': 0.0, 'is_weekend': 0.0}
"""

from __future__ import annotations

from features.contract import Payment

NIGHT_ENDS_AT_HOUR = 6  # local hours 0..5 are night


def calendar_features(payment: Payment) -> dict[str, float]:
    """Hour of day, night and weekend flags of ``payment`` in its own time zone (see module)."""
    local = payment.event_time  # aware, in the payer's offset: its fields are local wall time
    hour = local.hour
    return {
        "hour_of_day": float(hour),
        "is_night": 1.0 if hour < NIGHT_ENDS_AT_HOUR else 0.0,
        "is_weekend": 1.0 if local.weekday() >= 5 else 0.0,
    }
