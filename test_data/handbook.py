"""The Fraud Detection Handbook's simulated payments: a second, independent evaluation stream.

This follows the published description and code of Le Borgne, Siblini, Lebichot and Bontempi,
*Reproducible Machine Learning for Credit Card Fraud Detection - Practical Handbook* (Université
Libre de Bruxelles, 2022), chapter 3.2 "Transaction data simulator"
(``Chapter_3_GettingStarted/SimulatedDataset.ipynb`` of
github.com/Fraud-Detection-Handbook/fraud-detection-handbook). Its baseline features and models
(chapters 3.3 and 3.4) are in :mod:`model_state.offline.handbook_reference`.

The simulation, step by step as the handbook has it:

1. **Customers** (``n_customers``, 5000 in the handbook): a location ``(x, y)``, each uniform on
   ``[0, 100)``; ``mean_amount`` uniform on ``[5, 100)``; ``std_amount = mean_amount / 2``;
   ``mean_nb_tx_per_day`` uniform on ``[0, 4)``.
2. **Terminals** (``n_terminals``, 10000): a location ``(x, y)``, each uniform on ``[0, 100)``.
3. **Available terminals**: a customer uses the terminals at Euclidean distance ``< radius``
   (``r = 5``: about 78 terminals with the handbook's sizes).
4. **Transactions**, per customer and day: a Poisson number with mean ``mean_nb_tx_per_day``;
   each gets a time of day ``int(normal(43200, 20000))`` seconds (truncated towards zero, as
   ``int()`` does) and is *dropped* unless ``0 < time < 86400``; an amount
   ``normal(mean_amount, std_amount)``, redrawn from ``uniform(0, 2 * mean_amount)`` when
   negative, rounded to cents; a terminal drawn uniformly among the available ones (a customer
   with none makes no transactions). Transactions are sorted by time and numbered in that
   order.
5. **Fraud**, applied in this order, a later scenario overwriting the label of an earlier one:

   1. every transaction with an amount above 220 is fraud (scenario 1);
   2. on each day ``d``, 2 distinct terminals drawn uniformly are compromised: every transaction
      on them on days ``d`` to ``d + 27`` is fraud (scenario 2);
   3. on each day ``d``, 3 distinct customers drawn uniformly are compromised: of the ``n``
      transactions of the three together on days ``d`` to ``d + 13`` (frauds included),
      ``floor(n / 3)`` drawn uniformly without replacement from that one pool have their
      amount multiplied by 5 and are fraud (scenario 3). Scenario 1 is not re-applied
      afterwards, so a multiplied amount over 220 is scenario 3.

   As in the handbook's loops (``for day in range(transactions_df.TX_TIME_DAYS.max())``), no
   terminal or customer is drawn on the last simulated day.

**Parameters.** The numbers above are the handbook's and the spec's defaults; each is a field of
:class:`HandbookSpec`, so that streams with other parameters test what was designed on these:
``radius`` (5), ``fraud_amount_eur`` (the amount rule, 220), ``terminals_per_day`` (2) and
``terminal_days`` (28), ``customers_per_day`` (3) and ``customer_days`` (14), ``amount_factor``
(5; a multiplied amount is rounded to cents). ``evaluations/handbook-streams.json`` holds
parameter sets drawn across sensible ranges (``python -m test_data.handbook_draws``).

**Drift** (``drift``, a :class:`test_data.drift.DriftSpec`; none by default): a fourth scenario,
cash-out bursts, from ``drift.start_day`` on (:mod:`test_data.drift`); each burst's payments are
at the customer's own terminals (within the radius), one after the other from a random one.
The three scenarios above leave burst payments alone (scenario 4, :data:`NEW_PATTERN_SCENARIO`).

With the handbook's sizes (5000 customers, 10000 terminals, 183 days) it reports 1,754,155
transactions and 14,681 frauds (0.84 %): 973 of scenario 1, 9,077 of scenario 2, 4,631 of
scenario 3. Frauds of scenarios 2 and 3 build up over their first 28 and 14 days, so shorter
runs have a lower share; the per-day counts of scenarios 2 and 3 do not grow with the number of
customers and terminals, so scaled-down worlds have a *higher* share.

Modelling choices and deviations from the handbook
--------------------------------------------------

- **Random numbers.** The handbook seeds numpy's global generator per customer
  (``np.random.seed(customer_id)``), per day (``sample(random_state=day)``) and with fixed seeds
  0 and 1 for the profiles, so it has exactly one dataset. Here one ``seed`` drives independent
  ``numpy.random.Generator`` streams (customers, terminals, transactions, scenario 2,
  scenario 3): the same laws and the same spec give the same stream, but not the handbook's
  published rows.
- **Vectorised.** Draws are made for all customers and days at once; the scenario loops run
  once per day over index ranges. The handbook's 183 days at its default size (~1.75 million
  transactions) take about a second to simulate; building the payment structs takes longer
  (about 1.5 s per 600,000).
- **Start and clock.** ``start`` (default 2026-03-02 00:00 UTC; the handbook's is 2018-04-01)
  must carry a UTC offset. Day ``d`` spans ``[start + d * 86400 s, start + (d + 1) * 86400 s)``;
  times are whole seconds as in the handbook. Events are written in UTC.
- **Amounts.** Cents as in the handbook (``amount_minor = round(amount * 100)``), currency EUR.
  A draw that rounds to 0.00 becomes 0.01: in the contract an amount of 0 is a card
  verification, not a payment (:attr:`features.contract.Payment.is_verification`); the handbook
  keeps 0.00. This happens to about 2 transactions in 100,000.
- **Contract fields the handbook does not have.** The handbook has no merchants: each terminal
  gets its own merchant, ``hb{seed}-m{terminal:06d}``. ``mcc`` is ``"5999"`` (miscellaneous
  retail), ``channel`` ``"pos"``, ``country`` ``"FR"``, no device. Coordinates are the
  *terminal's* grid position mapped onto a box near Paris, one grid unit ~1.11 km both ways:
  ``latitude = 48 + y / 100`` and ``longitude = 2 + x / (100 cos 48.5°)``, so that distances on
  the grid keep their proportions (a customer's terminals lie within ~5.6 km of home); degrees
  are rounded to 6 decimals (~0.1 m).
- **Identifiers.** ``hb{seed}-tx{n:09d}`` (``n``: rank in time order), ``hb{seed}-c{customer:06d}``,
  ``hb{seed}-t{terminal:06d}``.
- **Labels.** The handbook has no label stream: it assumes every label is known exactly
  ``delay`` (7 days) after its transaction (chapter 3.4, "delay period").
  :meth:`HandbookStream.stream` does that: every transaction gets a label with its true class,
  reported ``label_delay`` after the payment, released just before the first later payment
  whose event time reaches it (:func:`model_state.offline.eval_stream.with_label_delay`'s rule).
  Labels due after the last payment are left out unless ``include_tail=True``. That is
  ``mode=EVERY_PAYMENT``; ``mode=FRAUDS_ONLY_MODE`` labels as banks do: only frauds, each
  reported at :attr:`HandbookStream.fraud_reported`, and nothing for a legitimate payment. A
  fraud's report comes ``spec.fraud_reports``' delay (:data:`test_data.spec.FRAUDS_ONLY`:
  lognormal, median 7 days) after the last payment of its incident (an amount over the
  threshold alone; a compromised terminal's payments per card; a compromised customer's per day
  it was drawn; a burst), but within 1 to 60 days of each payment.
- **Spec checks.** At least 3 customers and 2 terminals, and as many as are drawn a day.

Command line (``--history`` also writes the arrival-order stream)::

    python -m test_data.handbook --seed 1 --days 60 --out DIR [--customers N] [--terminals N]
        [--radius 5] [--fraud-amount 220] [--terminals-per-day 2] [--terminal-days 28]
        [--customers-per-day 3] [--customer-days 14] [--amount-factor 5]
        [--labels every|frauds] [--drift-start-day D]

writes ``DIR/payments.jsonl`` (payments in event-time order, with their ground truth ``is_fraud``
and ``scenario``) and ``DIR/labels.jsonl`` (the labels of ``--labels``, in report order), one
:mod:`test_data.samples` envelope a line whose ``value`` is the Kafka message exactly as the
topics carry it (``msgspec.json`` of the :class:`~features.contract.Payment` or
:class:`~features.contract.FraudLabel`), keyed by card id. ``python -m test_data.produce --file
DIR/payments.jsonl --file DIR/labels.jsonl`` sends files one after the other, so all payments
before any label; ``DIR/history.jsonl`` (``--history``) interleaves them in arrival order, as
:meth:`HandbookStream.stream` does, for replays where labels must arrive in time.

>>> hb = simulate_handbook(HandbookSpec(seed=3, n_customers=60, n_terminals=120, days=4))
>>> first = next(hb.payments())
>>> first.transaction_id, first.card_id.startswith("hb3-c"), first.currency, first.mcc
('hb3-tx000000000', True, 'EUR', '5999')
>>> sum(1 for e in hb.stream(include_tail=True) if isinstance(e, FraudLabel)) == len(hb)
True
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from features.contract import FraudLabel, Payment
from test_data.drift import NEW_PATTERN, DriftSpec, bursts
from test_data.samples import dump_line, from_event
from test_data.spec import FRAUDS_ONLY, LabelDelays

__all__ = [
    "EVERY_PAYMENT",
    "FRAUDS_ONLY_MODE",
    "HANDBOOK_SCENARIOS",
    "LABEL_MODES",
    "HandbookSpec",
    "HandbookStream",
    "main",
    "simulate_handbook",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Scenario names, in the handbook's numbering (scenario ``k`` is ``HANDBOOK_SCENARIOS[k - 1]``).
HANDBOOK_SCENARIOS: tuple[str, str, str] = (
    "amount_over_220",
    "compromised_terminal_28d",
    "compromised_customer_14d",
)
LEGITIMATE = 0
NEW_PATTERN_SCENARIO = len(HANDBOOK_SCENARIOS) + 1  # the drift scenario's number (4)

EVERY_PAYMENT = "every"  # every payment labelled ``label_delay`` after it (the handbook's)
FRAUDS_ONLY_MODE = "frauds"  # only frauds, each when reported (``spec.fraud_reports``)
LABEL_MODES = (EVERY_PAYMENT, FRAUDS_ONLY_MODE)

DAY_SECONDS = 86_400
GRID = 100.0
FRAUD_AMOUNT_MINOR = 22_000  # scenario 1: amount > 220.00
TERMINALS_PER_DAY = 2  # scenario 2
TERMINAL_DAYS = 28
CUSTOMERS_PER_DAY = 3  # scenario 3
CUSTOMER_DAYS = 14
CUSTOMER_SHARE_DIVISOR = 3
CUSTOMER_AMOUNT_FACTOR = 5
TIME_MEAN_SECONDS = DAY_SECONDS / 2
TIME_STD_SECONDS = 20_000.0

MCC = "5999"
CHANNEL = "pos"
COUNTRY = "FR"
CURRENCY = "EUR"
LAT0, LON0 = 48.0, 2.0
DEG_PER_UNIT_LAT = 0.01
DEG_PER_UNIT_LON = 0.01 / math.cos(math.radians(48.5))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CHUNK = 16_384
_CUSTOMER_BLOCK = 512  # customers per block when finding available terminals


@dataclass(frozen=True)
class HandbookSpec:
    """What to simulate; defaults are the handbook's, except ``start`` and ``days``."""

    seed: int
    n_customers: int = 5000
    n_terminals: int = 10000
    days: int = 183
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    radius: float = 5.0
    label_delay_days: float = 7.0
    fraud_amount_eur: float = FRAUD_AMOUNT_MINOR / 100
    terminals_per_day: int = TERMINALS_PER_DAY
    terminal_days: int = TERMINAL_DAYS
    customers_per_day: int = CUSTOMERS_PER_DAY
    customer_days: int = CUSTOMER_DAYS
    amount_factor: float = CUSTOMER_AMOUNT_FACTOR
    fraud_reports: LabelDelays = FRAUDS_ONLY
    drift: DriftSpec | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.seed < 0:
            problems.append(f"seed must be >= 0; got {self.seed}")
        if self.customers_per_day < 0 or self.terminals_per_day < 0:
            problems.append(
                "customers_per_day and terminals_per_day must be >= 0; got "
                f"{self.customers_per_day} and {self.terminals_per_day}"
            )
        if self.customer_days < 1 or self.terminal_days < 1:
            problems.append(
                "customer_days and terminal_days must be >= 1; got "
                f"{self.customer_days} and {self.terminal_days}"
            )
        if not (math.isfinite(self.fraud_amount_eur) and self.fraud_amount_eur > 0):
            problems.append(
                f"fraud_amount_eur must be a finite number > 0; got {self.fraud_amount_eur}"
            )
        if not (math.isfinite(self.amount_factor) and self.amount_factor >= 1):
            problems.append(f"amount_factor must be a finite number >= 1; got {self.amount_factor}")
        if self.n_customers < max(self.customers_per_day, 3):
            problems.append(
                f"n_customers must be >= {max(self.customers_per_day, 3)} (scenario 3 draws "
                f"{self.customers_per_day} a day); got {self.n_customers}"
            )
        if self.n_terminals < max(self.terminals_per_day, 2):
            problems.append(
                f"n_terminals must be >= {max(self.terminals_per_day, 2)} (scenario 2 draws "
                f"{self.terminals_per_day} a day); got {self.n_terminals}"
            )
        if self.days < 1:
            problems.append(f"days must be >= 1; got {self.days}")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            problems.append(f"start must carry a UTC offset; got naive {self.start.isoformat()}")
        if not (math.isfinite(self.radius) and self.radius > 0):
            problems.append(f"radius must be a finite number > 0; got {self.radius}")
        if not (math.isfinite(self.label_delay_days) and self.label_delay_days >= 0):
            problems.append(
                f"label_delay_days must be finite and >= 0; got {self.label_delay_days}"
            )
        if problems:
            raise ValueError("HandbookSpec: " + "; ".join(problems))

    @property
    def label_delay(self) -> timedelta:
        return timedelta(days=self.label_delay_days)


@dataclass(frozen=True, eq=False)
class HandbookStream:
    """A simulated handbook dataset: row ``i`` is transaction ``i`` in event-time order.

    ``event_time`` is POSIX seconds (float64, whole seconds), ``customer`` and ``terminal`` are
    indices into the profiles, ``amount`` is in EUR (``amount_minor / 100``), ``scenario`` is 0
    for a legitimate transaction, else the handbook's scenario number (1, 2 or 3).
    ``compromised_terminals[d]`` and ``compromised_customers[d]`` are the terminals and customers
    drawn on day ``d`` (one row per day but the last); the positions are on the 100 x 100 grid.
    """

    spec: HandbookSpec
    event_time: FloatArray
    customer: IntArray
    terminal: IntArray
    amount_minor: IntArray
    is_fraud: BoolArray
    scenario: npt.NDArray[np.int8]
    compromised_terminals: IntArray = field(repr=False)
    compromised_customers: IntArray = field(repr=False)
    fraud_reported: FloatArray = field(repr=False)  # POSIX seconds; NaN for a legitimate one
    customer_x: FloatArray = field(repr=False)
    customer_y: FloatArray = field(repr=False)
    terminal_x: FloatArray = field(repr=False)
    terminal_y: FloatArray = field(repr=False)

    def __len__(self) -> int:
        return len(self.event_time)

    @property
    def amount(self) -> FloatArray:
        return self.amount_minor / 100.0

    @property
    def day(self) -> IntArray:
        """Day of each transaction since ``spec.start`` (0-based)."""
        start = self.spec.start.timestamp()
        return ((self.event_time - start) // DAY_SECONDS).astype(np.int64)

    @property
    def scenario_names(self) -> tuple[str, ...]:
        """The scenarios this stream may hold: the handbook's three, and the drift scenario's
        when the spec has one."""
        return (*HANDBOOK_SCENARIOS, NEW_PATTERN) if self.spec.drift else HANDBOOK_SCENARIOS

    def scenario_counts(self) -> dict[str, int]:
        """Frauds per scenario name (every scenario listed, 0 included)."""
        names = self.scenario_names
        counts = np.bincount(self.scenario, minlength=len(names) + 1)
        return {name: int(counts[k + 1]) for k, name in enumerate(names)}

    def fraud_share(self) -> float:
        return float(self.is_fraud.mean()) if len(self) else 0.0

    # -- identifiers --------------------------------------------------------------------------
    def transaction_id(self, row: int) -> str:
        return f"hb{self.spec.seed}-tx{row:09d}"

    def card_id(self, customer: int) -> str:
        return f"hb{self.spec.seed}-c{customer:06d}"

    def terminal_id(self, terminal: int) -> str:
        return f"hb{self.spec.seed}-t{terminal:06d}"

    def merchant_id(self, terminal: int) -> str:
        """The handbook has no merchants: one merchant per terminal."""
        return f"hb{self.spec.seed}-m{terminal:06d}"

    def truth(self) -> dict[str, str | None]:
        """Transaction id to scenario name, ``None`` for a legitimate one, like
        :attr:`test_data.generator.Simulation.truth`."""
        names: list[str | None] = [None, *self.scenario_names]
        return {self.transaction_id(i): names[s] for i, s in enumerate(self.scenario.tolist())}

    # -- events -------------------------------------------------------------------------------
    def payments(self) -> Iterator[Payment]:
        """Every transaction as a contract payment, in event-time order."""
        for lo in range(0, len(self), _CHUNK):
            yield from self._payments(np.arange(lo, min(lo + _CHUNK, len(self)), dtype=np.int64))

    def labels(
        self, label_delay: timedelta | None = None, *, mode: str = EVERY_PAYMENT
    ) -> Iterator[FraudLabel]:
        """The labels of ``mode`` (:data:`LABEL_MODES`) in report order: every transaction's,
        ``label_delay`` after it (default: the spec's), or only the frauds', each when reported.
        """
        delay = self._delay(label_delay)
        rows, due_us = self._reports(delay, mode)
        rows = rows[np.argsort(due_us, kind="stable")]
        every = self._due_us(mode, delay)
        for lo in range(0, len(rows), _CHUNK):
            yield from self._labels(rows[lo : lo + _CHUNK], due_us_of=every)

    def stream(
        self,
        label_delay: timedelta | None = None,
        *,
        include_tail: bool = False,
        mode: str = EVERY_PAYMENT,
    ) -> Iterator[Payment | FraudLabel]:
        """Payments and labels in arrival order.

        ``mode`` :data:`EVERY_PAYMENT` (the handbook's): each transaction's label (its true
        class) is reported ``label_delay`` (default: the spec's) after its event time.
        :data:`FRAUDS_ONLY_MODE` (as banks send them): only frauds are reported, each at its
        :attr:`fraud_reported` time (``spec.fraud_reports``); a legitimate payment never gets a
        label. Either way a label is released just before the first *later* payment whose event
        time reaches its report time, as
        :func:`model_state.offline.eval_stream.with_label_delay` releases them. Labels not due by
        the last payment come after it when ``include_tail``, else never (as with
        ``with_label_delay``).
        """
        delay = self._delay(label_delay)
        order = self.arrival_order(delay, include_tail=include_tail, mode=mode)
        due_us = self._due_us(mode, delay)
        for lo in range(0, len(order), _CHUNK):
            chunk = order[lo : lo + _CHUNK]
            is_payment = chunk >= 0
            payments = iter(self._payments(chunk[is_payment]))
            labels = iter(self._labels(-1 - chunk[~is_payment], due_us_of=due_us))
            for payment in is_payment.tolist():
                yield next(payments) if payment else next(labels)

    def arrival_order(
        self, label_delay: timedelta, *, include_tail: bool = False, mode: str = EVERY_PAYMENT
    ) -> IntArray:
        """The stream as indices: ``i >= 0`` is payment ``i``, ``-1 - i`` the label of ``i``."""
        n = len(self)
        pay_us = self._payments_us()
        rows, due_us = self._reports(label_delay, mode)
        by_due = np.argsort(due_us, kind="stable")
        rows, due_us = rows[by_due], due_us[by_due]
        # label i goes just before the first payment j > i whose event time reaches it
        before = np.maximum(np.searchsorted(pay_us, due_us, side="left"), rows + 1)
        keep = before < n if not include_tail else np.ones(len(rows), dtype=bool)
        labelled, before = rows[keep], before[keep]
        # stable: labels due before the same payment keep their report order
        sort = np.argsort(before, kind="stable")
        labelled, before = labelled[sort], before[sort]
        order = np.empty(n + len(labelled), dtype=np.int64)
        payment_slot = np.arange(n) + np.searchsorted(before, np.arange(n), side="right")
        order[payment_slot] = np.arange(n)
        order[before + np.arange(len(labelled))] = -1 - labelled
        return order

    def _payments_us(self) -> IntArray:
        pay_us = self._start_us() + np.rint((self.event_time - self.event_time_origin) * 1e6)
        return pay_us.astype(np.int64)

    def _due_us(self, mode: str, label_delay: timedelta | None) -> IntArray:
        """Each transaction's report time in microseconds (a legitimate one's is never used in
        :data:`FRAUDS_ONLY_MODE`)."""
        if mode == EVERY_PAYMENT:
            return self._payments_us() + self._delay(label_delay) // _MICROSECOND
        if mode == FRAUDS_ONLY_MODE:
            reported = np.where(np.isnan(self.fraud_reported), self.event_time, self.fraud_reported)
            return self._payments_us() + np.rint((reported - self.event_time) * 1e6).astype(
                np.int64
            )
        raise ValueError(f"unknown label mode {mode!r}; choose one of {', '.join(LABEL_MODES)}")

    def _reports(self, label_delay: timedelta, mode: str) -> tuple[IntArray, IntArray]:
        """The transactions labelled in ``mode`` and their report times (microseconds)."""
        due_us = self._due_us(mode, label_delay)
        if mode == EVERY_PAYMENT:
            return np.arange(len(self), dtype=np.int64), due_us
        rows = np.flatnonzero(self.is_fraud).astype(np.int64)
        return rows, due_us[rows]

    # -- helpers ------------------------------------------------------------------------------
    @property
    def event_time_origin(self) -> float:
        return self.spec.start.timestamp()

    def _start_us(self) -> int:
        return (self.spec.start - _EPOCH) // _MICROSECOND

    def _start_utc(self) -> datetime:
        return self.spec.start.astimezone(UTC)

    def _delay(self, label_delay: timedelta | None) -> timedelta:
        delay = self.spec.label_delay if label_delay is None else label_delay
        if delay < timedelta(0):
            raise ValueError(f"HandbookStream: label_delay must be >= 0; got {delay}")
        return delay

    def _seconds(self, rows: IntArray) -> list[int]:
        return np.rint(self.event_time[rows] - self.event_time_origin).astype(np.int64).tolist()

    def _payments(self, rows: IntArray) -> list[Payment]:
        start = self._start_utc()
        terminal = self.terminal[rows]
        lat = np.round(LAT0 + self.terminal_y[terminal] * DEG_PER_UNIT_LAT, 6).tolist()
        lon = np.round(LON0 + self.terminal_x[terminal] * DEG_PER_UNIT_LON, 6).tolist()
        terminals = terminal.tolist()
        return [
            Payment(
                transaction_id=self.transaction_id(row),
                card_id=self.card_id(customer),
                merchant_id=self.merchant_id(term),
                terminal_id=self.terminal_id(term),
                amount_minor=amount,
                currency=CURRENCY,
                event_time=start + timedelta(seconds=seconds),
                mcc=MCC,
                channel=CHANNEL,
                country=COUNTRY,
                latitude=la,
                longitude=lo,
            )
            for row, customer, term, amount, seconds, la, lo in zip(
                rows.tolist(),
                self.customer[rows].tolist(),
                terminals,
                self.amount_minor[rows].tolist(),
                self._seconds(rows),
                lat,
                lon,
                strict=True,
            )
        ]

    def _labels(self, rows: IntArray, *, due_us_of: IntArray) -> list[FraudLabel]:
        start = self._start_utc()
        offset = (due_us_of[rows] - self._start_us()).tolist()
        return [
            FraudLabel(
                transaction_id=self.transaction_id(row),
                card_id=self.card_id(customer),
                is_fraud=fraud,
                reported_at=start + timedelta(microseconds=us),
            )
            for row, customer, fraud, us in zip(
                rows.tolist(),
                self.customer[rows].tolist(),
                self.is_fraud[rows].tolist(),
                offset,
                strict=True,
            )
        ]


# -- simulation -------------------------------------------------------------------------------


def _available_terminals(
    cx: FloatArray, cy: FloatArray, tx: FloatArray, ty: FloatArray, radius: float
) -> tuple[IntArray, IntArray]:
    """Each customer's terminals at distance ``< radius`` as CSR: ``(offsets, terminals)``.

    The handbook's test ``sqrt(dx**2 + dy**2) < r``, by blocks of customers; terminals ascend
    within a customer.
    """
    counts: list[IntArray] = []
    lists: list[IntArray] = []
    for lo in range(0, len(cx), _CUSTOMER_BLOCK):
        dx = cx[lo : lo + _CUSTOMER_BLOCK, None] - tx[None, :]
        dy = cy[lo : lo + _CUSTOMER_BLOCK, None] - ty[None, :]
        near = np.sqrt(dx * dx + dy * dy) < radius
        counts.append(near.sum(axis=1))
        lists.append(np.nonzero(near)[1])
    count = np.concatenate(counts).astype(np.int64)
    offsets = np.zeros(len(cx) + 1, dtype=np.int64)
    np.cumsum(count, out=offsets[1:])
    return offsets, np.concatenate(lists).astype(np.int64)


def _grouped(keys: IntArray, size: int) -> tuple[IntArray, IntArray]:
    """Rows grouped by key (stable, so in row order within a key) and each key's offsets."""
    order = np.argsort(keys, kind="stable")
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=size), out=offsets[1:])
    return order, offsets


def _rows_in_days(
    order: IntArray, offsets: IntArray, day: IntArray, key: int, first: int, last: int
) -> IntArray:
    """Rows of ``key`` (grouped by :func:`_grouped`, days ascending) on days ``first..last - 1``."""
    rows = order[offsets[key] : offsets[key + 1]]
    days = day[rows]
    return rows[np.searchsorted(days, first, "left") : np.searchsorted(days, last, "left")]


def simulate_handbook(spec: HandbookSpec) -> HandbookStream:
    """Simulate ``spec`` as the handbook's chapter 3.2 does; deterministic for ``spec.seed``.

    The fraud report times (``spec.fraud_reports``) and the drift scenario (``spec.drift``) draw
    from random streams of their own: a spec without drift gives the same payments whatever its
    report-time law, and the handbook's streams are those it gave before either existed.
    """
    streams = np.random.SeedSequence(spec.seed).spawn(7)
    customer_rng, terminal_rng, tx_rng, terminal_fraud_rng, customer_fraud_rng = (
        np.random.default_rng(s) for s in streams[:5]
    )
    report_rng, drift_rng = (np.random.default_rng(s) for s in streams[5:])
    n_c, n_t, days = spec.n_customers, spec.n_terminals, spec.days

    # 1. customer profiles: x, y, mean amount, transactions per day
    profile = customer_rng.uniform(size=(n_c, 4))
    cx, cy = profile[:, 0] * GRID, profile[:, 1] * GRID
    mean_amount = 5.0 + profile[:, 2] * 95.0
    std_amount = mean_amount / 2
    mean_nb_tx = profile[:, 3] * 4.0

    # 2. terminal profiles
    place = terminal_rng.uniform(size=(n_t, 2)) * GRID
    tx_, ty_ = place[:, 0], place[:, 1]

    # 3. terminals within the radius
    offsets, available = _available_terminals(cx, cy, tx_, ty_, spec.radius)
    n_available = np.diff(offsets)

    # 4. transactions: a Poisson count per customer and day, then one draw each
    counts = tx_rng.poisson(np.repeat(mean_nb_tx, days).reshape(n_c, days)).ravel()
    customer = np.repeat(np.repeat(np.arange(n_c, dtype=np.int64), days), counts)
    day = np.repeat(np.tile(np.arange(days, dtype=np.int64), n_c), counts)
    n = len(customer)
    time_of_day = np.trunc(tx_rng.normal(TIME_MEAN_SECONDS, TIME_STD_SECONDS, size=n))
    amount = tx_rng.normal(mean_amount[customer], std_amount[customer])
    redraw = tx_rng.uniform(0.0, 2.0 * mean_amount[customer])
    amount = np.where(amount < 0, redraw, amount)
    pick = tx_rng.uniform(size=n)
    keep = (time_of_day > 0) & (time_of_day < DAY_SECONDS) & (n_available[customer] > 0)
    customer, day, time_of_day, amount, pick = (
        a[keep] for a in (customer, day, time_of_day, amount, pick)
    )
    slot = np.minimum((pick * n_available[customer]).astype(np.int64), n_available[customer] - 1)
    terminal = available[offsets[customer] + slot]
    amount_minor = np.maximum(np.rint(amount * 100.0).astype(np.int64), 1)
    seconds = day * DAY_SECONDS + time_of_day.astype(np.int64)
    burst = np.full(len(customer), -1, dtype=np.int64)  # the drift scenario's burst, or -1
    if spec.drift is not None:
        extra = _bursts(spec.drift, days, offsets, available, drift_rng)
        customer, terminal, seconds, amount_minor, burst = (
            np.concatenate([a, b])
            for a, b in zip((customer, terminal, seconds, amount_minor, burst), extra, strict=True)
        )
    order = np.lexsort((customer, seconds))  # time order; ties by customer, then draw order
    customer, terminal, seconds, amount_minor, burst = (
        a[order] for a in (customer, terminal, seconds, amount_minor, burst)
    )
    day = seconds // DAY_SECONDS
    n = len(customer)
    normal = burst < 0

    # 5. fraud scenarios (the handbook's three on everyday payments, then the drift scenario)
    scenario = np.zeros(n, dtype=np.int8)
    is_fraud = np.zeros(n, dtype=bool)
    over = (amount_minor > round(spec.fraud_amount_eur * 100)) & normal
    is_fraud[over] = True
    scenario[over] = 1
    draw_days = int(day.max()) if n else 0  # the handbook's range(TX_TIME_DAYS.max())

    compromised_terminals = np.zeros((draw_days, spec.terminals_per_day), dtype=np.int64)
    compromised_customers = np.zeros((draw_days, spec.customers_per_day), dtype=np.int64)
    by_terminal, terminal_offsets = _grouped(np.where(normal, terminal, n_t), n_t + 1)
    for d in range(draw_days):
        compromised_terminals[d] = terminal_fraud_rng.choice(
            n_t, spec.terminals_per_day, replace=False
        )
        for t in compromised_terminals[d].tolist():
            rows = _rows_in_days(by_terminal, terminal_offsets, day, t, d, d + spec.terminal_days)
            is_fraud[rows] = True
            scenario[rows] = 2

    hit_day = np.full(n, -1, dtype=np.int64)  # the day a scenario-3 fraud's customer was drawn
    by_customer, customer_offsets = _grouped(np.where(normal, customer, n_c), n_c + 1)
    for d in range(draw_days):
        compromised_customers[d] = customer_fraud_rng.choice(
            n_c, spec.customers_per_day, replace=False
        )
        if spec.customers_per_day == 0:
            continue
        rows = np.concatenate(
            [
                _rows_in_days(by_customer, customer_offsets, day, c, d, d + spec.customer_days)
                for c in compromised_customers[d].tolist()
            ]
        )
        k = len(rows) // CUSTOMER_SHARE_DIVISOR
        if k == 0:
            continue
        hit = customer_fraud_rng.choice(rows, size=k, replace=False)
        amount_minor[hit] = np.rint(amount_minor[hit] * spec.amount_factor).astype(np.int64)
        is_fraud[hit] = True
        scenario[hit] = 3
        hit_day[hit] = d

    is_fraud[~normal] = True
    scenario[~normal] = NEW_PATTERN_SCENARIO
    event_time = spec.start.timestamp() + seconds.astype(np.float64)
    fraud_reported = _fraud_reports(
        spec.fraud_reports, event_time, scenario, customer, terminal, hit_day, burst, report_rng
    )

    return HandbookStream(
        spec=spec,
        event_time=event_time,
        customer=customer,
        terminal=terminal,
        amount_minor=amount_minor,
        is_fraud=is_fraud,
        scenario=scenario,
        compromised_terminals=compromised_terminals,
        compromised_customers=compromised_customers,
        fraud_reported=fraud_reported,
        customer_x=cx,
        customer_y=cy,
        terminal_x=tx_,
        terminal_y=ty_,
    )


def _bursts(
    drift: DriftSpec,
    days: int,
    offsets: IntArray,
    available: IntArray,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray]:
    """The drift scenario's payments (:mod:`test_data.drift`) as customer, terminal, second,
    amount and burst columns: each burst at as many of the customer's own terminals (those
    within the radius) as it has, in turn from a random one."""
    n_available = np.diff(offsets)
    eligible = np.flatnonzero(n_available >= 2).astype(np.int64)
    plan = bursts(drift, days=days, cards=eligible, rng=rng)
    first = rng.integers(0, 1 << 30, len(np.unique(plan.burst)))[plan.burst]
    own = n_available[plan.card]
    terminal = available[offsets[plan.card] + (first + plan.rank) % own]
    amount = np.rint(plan.amount_eur * 100.0).astype(np.int64)
    return plan.card, terminal, plan.day * DAY_SECONDS + plan.second, amount, plan.burst


def _fraud_reports(
    law: LabelDelays,
    event_time: FloatArray,
    scenario: npt.NDArray[np.int8],
    customer: IntArray,
    terminal: IntArray,
    hit_day: IntArray,
    burst: IntArray,
    rng: np.random.Generator,
) -> FloatArray:
    """When each fraud is reported (POSIX seconds, whole; NaN for a legitimate payment).

    A cardholder disputes what one incident took from the card at once, ``law``'s delay after
    the incident's last payment (but within ``fraud_min_days`` to ``fraud_max_days`` of each
    payment): an amount over the threshold alone; a compromised terminal's payments per card and
    terminal; a compromised customer's per day it was drawn; a burst together."""
    out = np.full(len(event_time), np.nan)
    fraud = np.flatnonzero(scenario > 0)
    if not len(fraud):
        return out
    s = scenario[fraud].astype(np.int64)
    key = np.select(
        [s == 1, s == 2, s == 3],
        [fraud, customer[fraud] * (int(terminal.max()) + 1) + terminal[fraud],
         customer[fraud] * (int(hit_day.max()) + 2) + hit_day[fraud] + 1],
        burst[fraud],
    )  # fmt: skip
    _, group = np.unique(np.stack([s, key]), axis=1, return_inverse=True)
    group = group.ravel()
    last = np.full(group.max() + 1, -np.inf)
    np.maximum.at(last, group, event_time[fraud])
    days = law.fraud_median_days * np.exp(rng.normal(0.0, law.fraud_sigma, len(last)))
    delay = np.clip(days, law.fraud_min_days, law.fraud_max_days) * DAY_SECONDS
    # ... but each within fraud_min_days to fraud_max_days of its own payment
    t = event_time[fraud]
    reported = np.clip(
        last[group] + delay[group],
        t + law.fraud_min_days * DAY_SECONDS,
        t + law.fraud_max_days * DAY_SECONDS,
    )
    out[fraud] = np.rint(reported)
    return out


# -- command line -----------------------------------------------------------------------------


def _write(path: Path, lines: Iterator[bytes]) -> int:
    count = 0
    with open(path, "wb") as out:
        for line in lines:
            out.write(line + b"\n")
            count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Write a handbook simulation as JSON Lines; returns the exit status."""
    default = HandbookSpec(seed=1)
    parser = argparse.ArgumentParser(
        prog="python -m test_data.handbook",
        description="Simulate the Fraud Detection Handbook's dataset as payments and labels.",
    )
    parser.add_argument("--seed", type=int, default=default.seed, help="seed (%(default)s)")
    parser.add_argument("--days", type=int, default=default.days, help="days (%(default)s)")
    parser.add_argument("--customers", type=int, default=default.n_customers)
    parser.add_argument("--terminals", type=int, default=default.n_terminals)
    parser.add_argument("--radius", type=float, default=default.radius)
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        default=default.start.date(),
        help="first day, YYYY-MM-DD, midnight UTC (%(default)s)",
    )
    parser.add_argument("--label-delay-days", type=float, default=default.label_delay_days)
    parser.add_argument(
        "--fraud-amount",
        type=float,
        default=default.fraud_amount_eur,
        help="scenario 1: every amount above this (EUR) is fraud (%(default)s)",
    )
    parser.add_argument("--terminals-per-day", type=int, default=default.terminals_per_day)
    parser.add_argument("--terminal-days", type=int, default=default.terminal_days)
    parser.add_argument("--customers-per-day", type=int, default=default.customers_per_day)
    parser.add_argument("--customer-days", type=int, default=default.customer_days)
    parser.add_argument(
        "--amount-factor",
        type=float,
        default=default.amount_factor,
        help="scenario 3 multiplies the amount by this (%(default)s)",
    )
    parser.add_argument(
        "--labels",
        choices=LABEL_MODES,
        default=EVERY_PAYMENT,
        help="every: every payment labelled --label-delay-days after it (the handbook's); "
        "frauds: only frauds, each when reported (1 to 60 days after)",
    )
    parser.add_argument(
        "--drift-start-day",
        type=int,
        default=None,
        help="add the drift scenario (test_data.drift: cash-out bursts) from this day on",
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to write into")
    parser.add_argument(
        "--history",
        action="store_true",
        help="also write history.jsonl: payments and labels in arrival order",
    )
    args = parser.parse_args(argv)
    try:
        spec = HandbookSpec(
            seed=args.seed,
            n_customers=args.customers,
            n_terminals=args.terminals,
            days=args.days,
            start=datetime.combine(args.start, datetime.min.time(), tzinfo=UTC),
            radius=args.radius,
            label_delay_days=args.label_delay_days,
            fraud_amount_eur=args.fraud_amount,
            terminals_per_day=args.terminals_per_day,
            terminal_days=args.terminal_days,
            customers_per_day=args.customers_per_day,
            customer_days=args.customer_days,
            amount_factor=args.amount_factor,
            drift=None
            if args.drift_start_day is None
            else DriftSpec(start_day=args.drift_start_day),
        )
    except ValueError as exc:
        print(f"handbook: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    hb = simulate_handbook(spec)
    simulated = time.perf_counter() - started
    names: list[str | None] = [None, *hb.scenario_names]
    scenario = hb.scenario.tolist()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        n_pay = _write(
            args.out / "payments.jsonl",
            (
                dump_line(from_event(p, names[s]))
                for p, s in zip(hb.payments(), scenario, strict=True)
            ),
        )
        n_lab = _write(
            args.out / "labels.jsonl",
            (dump_line(from_event(lb)) for lb in hb.labels(mode=args.labels)),
        )
        if args.history:
            truth = hb.truth()
            _write(
                args.out / "history.jsonl",
                (
                    dump_line(
                        from_event(e, truth[e.transaction_id])
                        if isinstance(e, Payment)
                        else from_event(e)
                    )
                    for e in hb.stream(mode=args.labels)
                ),
            )
    except OSError as exc:
        print(f"handbook: cannot write into {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {v:,}" for k, v in hb.scenario_counts().items())
    print(
        f"simulated {len(hb):,} transactions ({int(hb.is_fraud.sum()):,} fraudulent, "
        f"{hb.fraud_share():.3%}: {counts}) in {simulated:.1f} s; wrote {n_pay:,} payments and "
        f"{n_lab:,} labels to {args.out} in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
