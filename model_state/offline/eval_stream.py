"""A held-out stream as the live flow meets it: features in arrival order, labels when learnable.

:func:`replay_stream` runs :func:`features.replay.replay` (the live flow's feature code, labels
included: they feed the terminal and merchant fraud rates) over payments and labels in arrival
order, and records what a prequential evaluation needs as arrays (:class:`Replayed`): each
payment's features *at the moment it was scored*, its true class, its card and day, and the
**schedule**, the order in which payments are scored and labels become learnable. Features do not
depend on any model's scores, so computing them once and then running models over the schedule
(:mod:`model_state.offline.evaluate`) is the same as scoring inside the replay, and lets several
models share one replay.

Labels are joined as the live flow joins them (:mod:`storage.labels`): the first label of a
transaction whose payment was seen and whose card matches is learnable, once; any other label is
counted in :attr:`Replayed.skipped_labels` and never learned.

:func:`with_label_delay` replaces the stream's own labels (the generator's realistic delays:
fraud about a week after the incident, legitimate payments after 30 days) by labels that become
available a fixed ``delay`` after their payment's event time.

>>> from datetime import UTC, datetime, timedelta
>>> from features.contract import Payment
>>> t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
>>> pay = [Payment(transaction_id=f"t-{i}", card_id="c", merchant_id="m", terminal_id="p",
...                amount_minor=2000, currency="EUR", mcc="5411", channel="pos", country="FR",
...                event_time=t0 + timedelta(days=i)) for i in range(3)]
>>> verdicts = {"t-0": True, "t-1": False, "t-2": False}
>>> stream = with_label_delay(pay, verdicts, timedelta(days=1))
>>> replayed = replay_stream(stream, {"t-0": "card_testing"})
>>> replayed.schedule.tolist()  # payment 0, label of 0, payment 1, label of 1, payment 2
[0, -1, 1, -2, 2]
>>> replayed.feature_dict(2)["terminal_fraud_rate_7d"]
0.5
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from tqdm import tqdm

from features.catalog import DAY, FEATURE_NAMES
from features.contract import FraudLabel, Payment
from features.replay import replay

__all__ = [
    "Replayed",
    "Rows",
    "learn_slot",
    "learning_schedule",
    "replay_stream",
    "training_rows",
    "usable",
    "with_label_delay",
]

NO_LABEL = -1

Rows = list[tuple[datetime, dict[str, float], bool]]
"""(event time, features, is fraud) per payment, in arrival order
(:mod:`model_state.offline.train`)."""


@dataclass(frozen=True, eq=False)
class Replayed:
    """Row ``i`` is the ``i``-th payment in arrival order; arrays are aligned on rows.

    ``schedule`` lists what happened in order: ``i >= 0`` scores payment ``i``, ``-1 - i`` makes
    the label of payment ``i`` learnable (:func:`learn_slot`). ``verdict`` is that label's
    ``is_fraud`` (``-1``: no learnable label) and ``reported_at`` its time (NaN without one).
    """

    features: np.ndarray  # float64, (payments, len(FEATURE_NAMES))
    is_fraud: np.ndarray  # bool, the truth
    event_time: np.ndarray  # float64 POSIX seconds
    card: np.ndarray  # int64 code into card_ids
    card_ids: list[str]
    terminal: np.ndarray  # int64 code, one per distinct terminal id
    transaction_ids: list[str]
    verdict: np.ndarray  # int8: 1 fraud, 0 legitimate, -1 no learnable label
    reported_at: np.ndarray  # float64 POSIX seconds, NaN without a label
    schedule: np.ndarray  # int64
    skipped_labels: int = 0
    scenario: np.ndarray | None = None  # int16: 0 legitimate, k: scenario_names[k - 1]
    scenario_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.is_fraud)

    @staticmethod
    def column(name: str) -> int:
        """The column of feature ``name`` in :attr:`features`."""
        return FEATURE_NAMES.index(name)

    @property
    def day(self) -> np.ndarray:
        """Whole UTC days since the first payment's UTC day (int64)."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        first = np.floor(self.event_time.min() / DAY)
        return (np.floor(self.event_time / DAY) - first).astype(np.int64)

    def rows_of(self, scenario: str) -> np.ndarray:
        """Whether each payment is of fraud scenario ``scenario`` (bool; none if unknown)."""
        if self.scenario is None or scenario not in self.scenario_names:
            return np.zeros(len(self), dtype=bool)
        return self.scenario == 1 + self.scenario_names.index(scenario)

    def feature_dict(self, row: int) -> dict[str, float]:
        """Payment ``row``'s features as the flow stored them: names to floats."""
        return dict(zip(FEATURE_NAMES, self.features[row].tolist(), strict=True))


def learn_slot(entry: int) -> int | None:
    """The payment row whose label a schedule entry makes learnable, or None for a scoring one."""
    return -1 - entry if entry < 0 else None


def learning_schedule(replayed: Replayed, implicit_after: float | None) -> np.ndarray:
    """:attr:`Replayed.schedule` with **implicit negatives**: every payment with no label
    reported within ``implicit_after`` seconds of its event time (None: none) gets an entry
    ``-1 - n - i`` (``n`` payments) that makes it learnable as legitimate then, just before the
    first later payment whose event time (the stream's clock, the latest event time seen)
    reaches ``event_time + implicit_after``, as :func:`with_label_delay` releases labels. A fraud
    reported later stays in the schedule: it is then learned as a correction. Implicit negatives
    not due by the last payment never come.

    >>> from datetime import UTC, datetime
    >>> from features.contract import Payment
    >>> t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    >>> pay = [Payment(transaction_id=f"t-{i}", card_id="c", merchant_id="m", terminal_id="p",
    ...                amount_minor=2000, currency="EUR", mcc="5411", channel="pos", country="FR",
    ...                event_time=t0 + timedelta(days=i)) for i in range(4)]
    >>> stream = with_label_delay(pay, {"t-0": True}, timedelta(days=1))  # t-0: fraud, day 1
    >>> replayed = replay_stream(stream, {"t-0": "card_testing"})
    >>> learning_schedule(replayed, 2 * DAY).tolist()  # implicit: t-1 at day 3
    [0, -1, 1, 2, -6, 3]
    """
    schedule = replayed.schedule
    if implicit_after is None:
        return schedule
    n = len(replayed)
    due = replayed.event_time + implicit_after
    rows = np.flatnonzero(~(replayed.reported_at <= due))  # NaN (no label) compares False
    paying = schedule >= 0
    payment_rows = schedule[paying]
    clock = np.maximum.accumulate(replayed.event_time[payment_rows]) if n else np.zeros(0)
    # the k-th payment entry (in schedule order) is the first whose clock reaches the due time,
    # and it comes after the row's own payment
    position = np.empty(n, dtype=np.int64)
    position[payment_rows] = np.arange(len(payment_rows))
    k = np.maximum(np.searchsorted(clock, due[rows], side="left"), position[rows] + 1)
    keep = k < len(payment_rows)
    rows, k = rows[keep], k[keep]
    # Every entry sorts by the payment it comes before (its gap), then by its time within the
    # gap (a payment last): an implicit negative goes among the labels released with it in the
    # order of their times, so a fraud reported after it comes after it.
    before = np.cumsum(paying)  # payments up to and including each entry
    gap = np.where(paying, before - 1, before)
    label_row = np.where(paying, 0, -1 - schedule)
    when = np.where(paying, np.inf, replayed.reported_at[label_row])
    keys_gap = np.concatenate([gap, k])
    keys_time = np.concatenate([when, due[rows]])
    order = np.lexsort((np.arange(len(keys_gap)), keys_time, keys_gap))
    return np.concatenate([schedule, -1 - n - rows])[order]


def with_label_delay(
    stream: Iterable[Payment | FraudLabel], verdicts: Mapping[str, bool], delay: timedelta
) -> Iterator[Payment | FraudLabel]:
    """``stream``'s payments in their order, each labelled ``delay`` after its event time.

    The stream's own labels are dropped. The first payment of each transaction id in
    ``verdicts`` gets a label ``reported_at = event_time + delay`` with that verdict, released
    into the stream just before the first payment whose event time reaches it (the stream's
    clock is the latest event time seen). Labels not yet due when the stream ends never come.
    """
    if delay < timedelta(0):
        raise ValueError(f"with_label_delay: delay must be >= 0; got {delay}")
    due: list[tuple[float, int, FraudLabel]] = []
    seq = itertools.count()
    labelled: set[str] = set()
    clock = float("-inf")
    for event in stream:
        if isinstance(event, FraudLabel):
            continue
        clock = max(clock, event.event_timestamp)
        while due and due[0][0] <= clock:
            yield heapq.heappop(due)[2]
        yield event
        verdict = verdicts.get(event.transaction_id)
        if verdict is None or event.transaction_id in labelled:
            continue
        labelled.add(event.transaction_id)
        reported = event.event_time + delay
        label = FraudLabel(
            transaction_id=event.transaction_id,
            card_id=event.card_id,
            is_fraud=verdict,
            reported_at=reported,
        )
        heapq.heappush(due, (reported.timestamp(), next(seq), label))


def replay_stream(
    stream: Iterable[Payment | FraudLabel],
    truth: Mapping[str, str | None],
    *,
    total: int | None = None,
    progress: bool = False,
) -> Replayed:
    """Replay ``stream`` (arrival order) through the live feature code and record the schedule.

    Parameters
    ----------
    stream
        Payments and labels in arrival order.
    truth
        Transaction id to fraud scenario, ``None`` (or absent) for a legitimate payment.
    total, progress
        Length of the stream for the progress bar, and whether to show one.
    """
    features = array("d")
    event_time = array("d")
    is_fraud = array("b")
    card = array("q")
    cards: dict[str, int] = {}
    terminal = array("q")
    terminals: dict[str, int] = {}
    transaction_ids: list[str] = []
    verdict = array("b")
    reported_at = array("d")
    schedule = array("q")
    first_row: dict[str, int] = {}  # transaction id -> row of its first payment
    skipped = 0
    scenario = array("h")
    scenario_code: dict[str, int] = {}

    def join_labels(events: Iterable[Payment | FraudLabel]) -> Iterator[Payment | FraudLabel]:
        nonlocal skipped
        for event in events:
            if isinstance(event, FraudLabel):
                row = first_row.get(event.transaction_id)
                if (
                    row is None
                    or verdict[row] != NO_LABEL
                    or card[row] != cards.get(event.card_id, -1)
                ):
                    skipped += 1
                else:
                    verdict[row] = int(event.is_fraud)
                    reported_at[row] = event.reported_at.timestamp()
                    schedule.append(-1 - row)
            yield event

    events = tqdm(stream, total=total, desc="replay", unit=" events", disable=not progress)
    for payment, values in replay(join_labels(events)):
        row = len(transaction_ids)
        features.extend(values.values())
        event_time.append(payment.event_timestamp)
        name = truth.get(payment.transaction_id)
        is_fraud.append(name is not None)
        scenario.append(
            0 if name is None else scenario_code.setdefault(name, len(scenario_code) + 1)
        )
        card.append(cards.setdefault(payment.card_id, len(cards)))
        terminal.append(terminals.setdefault(payment.terminal_id, len(terminals)))
        transaction_ids.append(payment.transaction_id)
        verdict.append(NO_LABEL)
        reported_at.append(float("nan"))
        first_row.setdefault(payment.transaction_id, row)
        schedule.append(row)
    n = len(transaction_ids)
    return Replayed(
        features=np.frombuffer(features, dtype=np.float64).reshape(n, len(FEATURE_NAMES)).copy(),
        is_fraud=np.frombuffer(is_fraud, dtype=np.int8).astype(bool),
        event_time=np.frombuffer(event_time, dtype=np.float64).copy(),
        card=np.frombuffer(card, dtype=np.int64).copy(),
        card_ids=list(cards),
        terminal=np.frombuffer(terminal, dtype=np.int64).copy(),
        transaction_ids=transaction_ids,
        verdict=np.frombuffer(verdict, dtype=np.int8).copy(),
        reported_at=np.frombuffer(reported_at, dtype=np.float64).copy(),
        schedule=np.frombuffer(schedule, dtype=np.int64).copy(),
        skipped_labels=skipped,
        scenario=np.frombuffer(scenario, dtype=np.int16).copy(),
        scenario_names=tuple(scenario_code),
    )


def usable(replayed: Replayed, at: float, delay: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows a model trained at ``at`` may learn, and their class.

    A model trained at ``at`` may learn a payment made before ``at`` whose label was reported by
    ``at`` (its class), or, with no label by then, one older than ``delay`` seconds: nobody
    disputed it, and it is taken as legitimate, as a bank takes it. A label is usable only from
    its ``reported_at``.
    """
    made = replayed.event_time < at
    reported = (replayed.verdict >= 0) & (replayed.reported_at <= at)
    presumed = ~reported & (replayed.event_time <= at - delay)
    rows = np.flatnonzero(made & (reported | presumed))
    return rows, reported[rows] & (replayed.verdict[rows] == 1)


def training_rows(replayed: Replayed, rows: np.ndarray, y: np.ndarray) -> Rows:
    """``rows`` as :data:`Rows`, in arrival order."""
    return [
        (datetime.fromtimestamp(float(replayed.event_time[r]), UTC), replayed.feature_dict(r), c)
        for r, c in zip(rows.tolist(), y.tolist(), strict=True)
    ]
