"""A simulated stream through the flow's card and terminal key logic, without Bytewax: what the
state-bytes part of ``bench_throughput.py`` and ``bench_snapshot.py`` both measure.

:class:`KeyReplay` feeds the stream a chunk of 1,000 events at a time; each key gets its values
of the chunk in stream order, as a stateful step gets a batch: a payment goes to its card's
logic, then (as the card step emits it) to its terminal's; a label goes to its payment's
terminal, as the label join sends it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from dataflows.keyed_history import KeyedHistory, keyed_history, mark_key
from dataflows.messages import Positioned
from dataflows.scoring import CARD_IDS_KEPT, IDLE_KEY_SECONDS, terminal_history
from features.card import CardHistory
from features.contract import FraudLabel, Payment

CHUNK = 1000
# The card step's content-mark key in benchmarks (the flow derives its own from the model key).
BENCH_MARK_KEY = mark_key(bytes(range(32)))


class LabelNote:
    """A label as the terminal step gets it: its payment's event time, its report, its verdict
    (:class:`dataflows.keyed_history.LabelNote`)."""

    __slots__ = ("is_fraud", "payment_time", "reported_at")

    def __init__(self, payment_time: float, reported_at: float, is_fraud: bool) -> None:
        self.payment_time = payment_time
        self.reported_at = reported_at
        self.is_fraud = is_fraud


class KeyReplay:
    """Each card's and terminal's :class:`KeyedHistory`, fed by :meth:`replay`."""

    def __init__(self) -> None:
        self.card_keys: dict[str, KeyedHistory] = {}
        self.terminal_keys: dict[str, KeyedHistory] = {}
        self.payment_of: dict[str, tuple[str, float]] = {}  # transaction -> (terminal, time)
        self._new_card = keyed_history(
            CardHistory, IDLE_KEY_SECONDS, CARD_IDS_KEPT, mark_key=BENCH_MARK_KEY
        )
        self._new_terminal = keyed_history(terminal_history, IDLE_KEY_SECONDS)

    def replay(
        self, stream: Iterable[Payment | FraudLabel], n_payments: int
    ) -> Iterator[Payment | FraudLabel]:
        """Feed ``stream`` up to its ``n_payments``-th payment (the labels reported later have
        not arrived then); labels of payments not seen are skipped. Yields each event fed."""
        chunk: list[Payment | FraudLabel] = []
        payments = 0
        for event in stream:
            if isinstance(event, Payment):
                payments += 1
                self.payment_of[event.transaction_id] = (event.terminal_id, event.event_timestamp)
            elif event.transaction_id not in self.payment_of:
                continue
            yield event
            chunk.append(event)
            if len(chunk) >= CHUNK:
                self.feed(chunk)
                chunk = []
            if payments == n_payments:
                break
        self.feed(chunk)

    def feed(self, events: list[Payment | FraudLabel]) -> None:
        """One chunk: each key gets its values of it in stream order."""
        by_card: dict[str, list[Any]] = defaultdict(list)
        by_terminal: dict[str, list[Any]] = defaultdict(list)
        for event in events:
            if isinstance(event, Payment):
                by_card[event.card_id].append(Positioned(event, 0, 0))
            else:
                terminal, when = self.payment_of[event.transaction_id]
                note = LabelNote(when, event.reported_at.timestamp(), event.is_fraud)
                by_terminal[terminal].append(note)
        card_keys, terminal_keys = self.card_keys, self.terminal_keys
        for card, values in by_card.items():
            logic = card_keys.get(card) or card_keys.setdefault(card, self._new_card(None))
            for p in logic.on_batch(values)[0]:
                by_terminal[p.event.terminal_id].append(p)
        for terminal, values in by_terminal.items():
            logic = terminal_keys.get(terminal) or terminal_keys.setdefault(
                terminal, self._new_terminal(None)
            )
            logic.on_batch(values)
