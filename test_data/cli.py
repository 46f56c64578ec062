"""Command-line options that describe a simulation spec, shared by the producer and generator.

>>> parser = argparse.ArgumentParser()
>>> add_spec_arguments(parser)
>>> spec = spec_from_arguments(parser.parse_args(["--days", "2", "--cards", "50", "--seed", "7"]))
>>> spec.days, spec.cards, spec.seed, spec.fraud_rate
(2, 50, 7, 0.004)
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import date

from test_data.spec import LabelDelays, SimulationSpec

_DEFAULT = SimulationSpec()
_DELAYS = LabelDelays()


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulation options, with the spec's defaults, to ``parser``."""
    group = parser.add_argument_group("simulation")
    group.add_argument("--seed", type=int, default=_DEFAULT.seed, help="random seed (%(default)s)")
    group.add_argument(
        "--start",
        type=date.fromisoformat,
        default=_DEFAULT.start,
        help="first day, YYYY-MM-DD (%(default)s)",
    )
    group.add_argument("--days", type=int, default=_DEFAULT.days, help="days (%(default)s)")
    group.add_argument("--cards", type=int, default=_DEFAULT.cards, help="cards (%(default)s)")
    group.add_argument(
        "--merchants", type=int, default=_DEFAULT.merchants, help="merchants (%(default)s)"
    )
    group.add_argument(
        "--payments-per-day",
        type=float,
        default=_DEFAULT.payments_per_card_per_day,
        help="mean payments per card per day (%(default)s)",
    )
    group.add_argument(
        "--fraud-rate",
        type=float,
        default=_DEFAULT.fraud_rate,
        help="fraudulent share of payments (%(default)s)",
    )
    group.add_argument(
        "--fraud-label-median-days",
        type=float,
        default=_DELAYS.fraud_median_days,
        help="median delay of fraud labels in days (%(default)s)",
    )
    group.add_argument(
        "--legit-maturity-days",
        type=float,
        default=_DELAYS.legit_maturity_days,
        help="days until a legitimate payment is confirmed (%(default)s)",
    )
    group.add_argument(
        "--legit-label-fraction",
        type=float,
        default=_DELAYS.legit_fraction,
        help="share of legitimate payments that get a label (%(default)s)",
    )
    group.add_argument(
        "--late-fraction",
        type=float,
        default=_DEFAULT.late_fraction,
        help="share of payments that arrive late (%(default)s)",
    )
    group.add_argument(
        "--late-max-minutes",
        type=float,
        default=_DEFAULT.late_max_minutes,
        help="how late a late payment may be (%(default)s)",
    )
    group.add_argument(
        "--label-horizon-days",
        type=float,
        default=_DEFAULT.label_horizon_days,
        help="drop labels reported this many days after the last day (default: keep all)",
    )


def spec_from_arguments(args: argparse.Namespace) -> SimulationSpec:
    """The spec the parsed options describe; ``ValueError`` if a value is out of range."""
    delays = replace(
        _DELAYS,
        fraud_median_days=args.fraud_label_median_days,
        legit_maturity_days=args.legit_maturity_days,
        legit_fraction=args.legit_label_fraction,
    )
    return SimulationSpec(
        seed=args.seed,
        start=args.start,
        days=args.days,
        cards=args.cards,
        merchants=args.merchants,
        payments_per_card_per_day=args.payments_per_day,
        fraud_rate=args.fraud_rate,
        label_delays=delays,
        late_fraction=args.late_fraction,
        late_max_minutes=args.late_max_minutes,
        label_horizon_days=args.label_horizon_days,
    )
