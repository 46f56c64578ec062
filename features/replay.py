"""Offline replay: the features of every payment of a recorded stream, as the live flow computes.

:func:`replay` takes payments and labels in the order they arrived (it never re-sorts: order of
arrival is part of what a payment could know) and keeps what the live flow keeps: one
:class:`~features.card.CardHistory` per card, one :class:`~features.entity.EntityHistory` per
terminal and per merchant. Each payment's features are its card, terminal, merchant and
calendar parts merged by :func:`~features.catalog.assemble`, keys exactly
:data:`~features.catalog.FEATURE_NAMES`.

The live flow's rules, which replay follows so that both compute the same values:

- A payment whose transaction id was seen before (a redelivery, a producer's retry) is skipped:
  not scored, not folded in, not yielded. (The flow's card step remembers a card's recent ids;
  replay remembers all.)
- A label reaches the terminal and merchant of its payment, with the payment's event time, when
  its payment was seen earlier in the stream and has the label's card; only the first such label
  of a transaction counts (a repeated or corrected verdict is ignored). Others are ignored.

>>> from datetime import datetime, timedelta, timezone
>>> from msgspec.structs import replace
>>> from features.contract import FraudLabel, Payment
>>> t0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
>>> pay = Payment(transaction_id="t-1", card_id="c", merchant_id="m", terminal_id="p",
...               amount_minor=2000, currency="EUR", mcc="5411", channel="pos", country="FR",
...               event_time=t0)
>>> label = FraudLabel(transaction_id="t-1", card_id="c", is_fraud=True,
...                    reported_at=t0 + timedelta(days=1))
>>> later = replace(pay, transaction_id="t-2", event_time=t0 + timedelta(days=2))
>>> rows = list(replay([pay, label, later]))
>>> [(p.transaction_id, f["card_count_7d"], f["terminal_fraud_rate_7d"]) for p, f in rows]
[('t-1', 0.0, 0.0), ('t-2', 1.0, 1.0)]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from features.calendar import calendar_features
from features.card import CardHistory
from features.catalog import LATENESS_SECONDS, assemble
from features.contract import FraudLabel, Payment
from features.entity import EntityHistory

__all__ = ["replay"]


def replay(
    stream: Iterable[Payment | FraudLabel], lateness: float = LATENESS_SECONDS
) -> Iterator[tuple[Payment, dict[str, float]]]:
    """Yield ``(payment, features)`` for every payment of ``stream``, in the order given.

    Parameters
    ----------
    stream
        Payments and fraud labels in arrival order.
    lateness
        Passed to every history; must match the live flow's.
    """
    cards: dict[str, CardHistory] = {}
    terminals: dict[str, EntityHistory] = {}
    merchants: dict[str, EntityHistory] = {}
    # transaction id -> (card, terminal, merchant, event time) of its payment; None once labelled.
    payments: dict[str, tuple[str, str, str, float] | None] = {}
    for event in stream:
        if isinstance(event, Payment):
            if event.transaction_id in payments:
                continue
            payments[event.transaction_id] = (
                event.card_id,
                event.terminal_id,
                event.merchant_id,
                event.event_timestamp,
            )
            card = cards.get(event.card_id)
            if card is None:
                card = cards[event.card_id] = CardHistory(lateness)
            terminal = terminals.get(event.terminal_id)
            if terminal is None:
                terminal = terminals[event.terminal_id] = EntityHistory("terminal", lateness)
            merchant = merchants.get(event.merchant_id)
            if merchant is None:
                merchant = merchants[event.merchant_id] = EntityHistory("merchant", lateness)
            features = assemble(
                card.observe(event),
                terminal.observe(event),
                merchant.observe(event),
                calendar_features(event),
            )
            yield event, features
        elif isinstance(event, FraudLabel):
            route = payments.get(event.transaction_id)
            if route is None or route[0] != event.card_id:
                continue
            payments[event.transaction_id] = None
            _, terminal_id, merchant_id, payment_time = route
            reported_at = event.reported_at.timestamp()
            terminals[terminal_id].learn_label(payment_time, reported_at, event.is_fraud)
            merchants[merchant_id].learn_label(payment_time, reported_at, event.is_fraud)
        else:
            raise TypeError(
                f"replay: the stream must hold Payment and FraudLabel events; "
                f"got a {type(event).__name__} ({event!r:.80})"
            )
