"""What to simulate: the one frozen description of a synthetic card network and its traffic.

A :class:`SimulationSpec` is all :func:`test_data.generator.simulate` needs; the same spec (seed
included) always gives the same stream. Bad values fail at construction and quote the value:

>>> SimulationSpec(days=7, cards=500).days
7
>>> SimulationSpec(fraud_rate=0.7)
Traceback (most recent call last):
    ...
ValueError: SimulationSpec.fraud_rate must lie in [0, 0.5); got 0.7 (a realistic rate is 0.001-0.01)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta

from test_data.drift import DriftSpec

_EARLIEST = date(2000, 1, 2)
_LATEST = date(2100, 1, 1)

SCENARIOS: tuple[str, ...] = (
    "card_testing",
    "compromised_terminal",
    "account_takeover",
    "impossible_travel",
    "large_amount",
)


@dataclass(frozen=True, kw_only=True)
class ScenarioMix:
    """Share of the fraudulent payments each fraud scenario makes up; normalised to sum 1."""

    card_testing: float = 0.25
    compromised_terminal: float = 0.25
    account_takeover: float = 0.20
    impossible_travel: float = 0.15
    large_amount: float = 0.15

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"ScenarioMix.{f.name} must be >= 0; got {getattr(self, f.name)}")
        if self.total() <= 0:
            raise ValueError("ScenarioMix needs at least one scenario with a share above 0")

    def total(self) -> float:
        return sum(getattr(self, name) for name in SCENARIOS)

    def share(self, scenario: str) -> float:
        """Normalised share of ``scenario`` (one of :data:`SCENARIOS`)."""
        return float(getattr(self, scenario)) / self.total()


@dataclass(frozen=True, kw_only=True)
class LabelDelays:
    """When the bank learns the truth about a payment.

    Fraud is confirmed when the cardholder disputes it: all fraudulent payments of one incident on
    one card are reported together, ``delay`` after the last of them, where ``delay`` follows a
    lognormal law with median ``fraud_median_days`` and shape ``fraud_sigma`` (0.6: nine in ten
    within 0.37x-2.7x the median), kept within ``fraud_min_days`` to ``fraud_max_days``.
    Legitimate payments are
    confirmed when they mature, in the bank's nightly batch at 02:00 UTC after
    ``legit_maturity_days``; only a ``legit_fraction`` of them (drawn at random) get a label.
    """

    fraud_median_days: float = 7.0
    fraud_sigma: float = 0.6
    fraud_max_days: float = 90.0
    fraud_min_days: float = 0.0
    legit_maturity_days: float = 30.0
    legit_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.fraud_median_days <= self.fraud_max_days:
            raise ValueError(
                "LabelDelays.fraud_median_days must lie in (0, fraud_max_days]; got "
                f"{self.fraud_median_days} with fraud_max_days={self.fraud_max_days}"
            )
        if not 0 <= self.fraud_min_days <= self.fraud_median_days:
            raise ValueError(
                "LabelDelays.fraud_min_days must lie in [0, fraud_median_days]; got "
                f"{self.fraud_min_days} with fraud_median_days={self.fraud_median_days}"
            )
        if self.fraud_sigma < 0:
            raise ValueError(f"LabelDelays.fraud_sigma must be >= 0; got {self.fraud_sigma}")
        if self.legit_maturity_days <= 0:
            raise ValueError(
                f"LabelDelays.legit_maturity_days must be > 0; got {self.legit_maturity_days}"
            )
        if not 0 <= self.legit_fraction <= 1:
            raise ValueError(
                f"LabelDelays.legit_fraction must lie in [0, 1]; got {self.legit_fraction}"
            )


FRAUDS_ONLY = LabelDelays(
    fraud_median_days=7.0,
    fraud_sigma=0.9,
    fraud_min_days=1.0,
    fraud_max_days=60.0,
    legit_fraction=0.0,
)
"""Labels as banks send them: frauds only, none for a legitimate payment, each reported a
long-tailed 1 to 60 days after the fraud (lognormal, median 7 days, shape 0.9: 22 % later than
14 days, 5 % later than 30, 0.8 % at the 60-day cap). Disputes and chargebacks come when the
cardholder reads a statement or an alert, mostly within weeks, rarely near the schemes' limits
(120 days for most fraud reason codes); a legitimate payment is never confirmed, only not
disputed (:mod:`model_state.label_kinds`)."""


@dataclass(frozen=True, kw_only=True)
class SimulationSpec:
    """A card network and the traffic to simulate on it.

    ``start`` is the first local day (default: Monday 2 March 2026, a month that includes the US
    and EU switches to summer time; well in the past, so a broker accepts its timestamps and the
    labels that come weeks later). Cards, merchants and terminals are ``cards``, ``merchants``
    (15 % of them online shops) and on average ``terminals_per_merchant`` terminals per shop;
    every city also has a bank with a few ATMs. A card makes on average
    ``payments_per_card_per_day`` payments on a weekday (more on Fridays and Saturdays, fewer on
    Sundays). ``fraud_rate`` is the fraudulent share of all payments, split over the scenarios by
    ``scenario_mix``. A ``late_fraction`` of payments reaches Kafka up to ``late_max_minutes``
    after its event time. Labels whose report time lies more than ``label_horizon_days`` after the
    last simulated day are left out (``None``: keep every label). ``drift`` adds a new attack
    pattern from its ``start_day`` on (:mod:`test_data.drift`), outside ``fraud_rate``.
    """

    seed: int = 0
    start: date = date(2026, 3, 2)
    days: int = 30
    cards: int = 10_000
    merchants: int = 2_000
    terminals_per_merchant: float = 2.0
    payments_per_card_per_day: float = 1.5
    fraud_rate: float = 0.004
    scenario_mix: ScenarioMix = field(default_factory=ScenarioMix)
    label_delays: LabelDelays = field(default_factory=LabelDelays)
    late_fraction: float = 0.01
    late_max_minutes: float = 10.0
    label_horizon_days: float | None = None
    drift: DriftSpec | None = None

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("seed", 0 <= self.seed < 2**63, "must lie in [0, 2**63)"),
            ("days", 1 <= self.days <= 3660, "must lie in [1, 3660]"),
            ("cards", self.cards >= 1, "must be >= 1"),
            ("merchants", self.merchants >= 2, "must be >= 2 (one shop and one online shop)"),
            ("terminals_per_merchant", self.terminals_per_merchant >= 1, "must be >= 1"),
            ("payments_per_card_per_day", self.payments_per_card_per_day > 0, "must be > 0"),
            (
                "fraud_rate",
                0 <= self.fraud_rate < 0.5,
                "must lie in [0, 0.5)",
            ),
            ("late_fraction", 0 <= self.late_fraction <= 1, "must lie in [0, 1]"),
            ("late_max_minutes", self.late_max_minutes >= 0, "must be >= 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                hint = " (a realistic rate is 0.001-0.01)" if name == "fraud_rate" else ""
                raise ValueError(f"SimulationSpec.{name} {rule}; got {getattr(self, name)}{hint}")
        if self.label_horizon_days is not None and self.label_horizon_days < 0:
            raise ValueError(
                "SimulationSpec.label_horizon_days must be >= 0 or None; "
                f"got {self.label_horizon_days}"
            )
        if isinstance(self.start, datetime) or not isinstance(self.start, date):
            raise ValueError(f"SimulationSpec.start must be a datetime.date; got {self.start!r}")
        # Every event time and report time must fall in the contract's window.
        latest = (
            self.days
            + 1
            + max(self.label_delays.fraud_max_days + 30, self.label_delays.legit_maturity_days + 2)
        )
        last_start = _LATEST - timedelta(days=latest)
        if not _EARLIEST <= self.start <= last_start:
            raise ValueError(
                f"SimulationSpec.start must lie in [{_EARLIEST}, {last_start}]"
                f" so that payments and labels fall within the contract's years 2000-2099; "
                f"got {self.start}"
            )
