"""Fifty realistic rules and the lists they name, for the benchmarks and the tests: velocity rules
from the feature catalogue, the model's probability, lists, BIN prefixes, amounts in minor units and
in euros, country, channel, MCC and time-of-day conditions, card testing.

:func:`example_lists` makes their lists for a stream of payments: a share of its cards, terminals
and merchants blocked, BIN prefixes of its card ids, and a million (``padding``) card ids no
payment uses, as a compromised-card feed would hold.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

from features.contract import Payment

LIST_KINDS: Final = {
    "blocked_cards": "card",
    "vip_cards": "card",
    "risky_bins": "bin",
    "high_risk_countries": "country",
    "bad_merchants": "merchant",
    "trusted_merchants": "merchant",
    "bad_terminals": "terminal",
    "bad_devices": "device",
}

RULES: Final[tuple[tuple[str, str], ...]] = (
    ("blocked-card", "decline if card_id in @blocked_cards priority 1"),
    ("vip-card", "allow if card_id in @vip_cards priority 1"),
    ("risky-bin-online", 'decline if card_id starts with @risky_bins and channel == "ecom" priority 5'),
    ("risky-country-amount", "review if country in @high_risk_countries and amount_eur > 300"),
    ("burst-1h", "decline if card_count_1h >= 10 priority 10"),
    ("velocity-1h", "review if card_count_1h >= 5 and card_amount_sum_1h > 500"),
    ("velocity-24h", "decline if card_count_24h > 40"),
    ("many-merchants", "review if card_distinct_merchants_24h >= 8"),
    ("new-merchant-big-online", 'decline if amount_eur > 5000 and card_merchant_new_30d == 1 and channel == "ecom"'),
    ("out-of-pattern", "review if amount_eur > 2000 and card_amount_to_mean_30d > 10"),
    ("fast-travel", "review if card_speed_kmh > 900"),
    ("impossible-travel", "decline if card_speed_kmh > 2000 and amount_eur > 100"),
    ("unusual-country", "review if card_country_unusual == 1 and amount_eur > 800"),
    ("model-and-velocity", "decline if fraud_probability > 0.7 and card_count_1h >= 3"),
    ("model-and-amount", "review if fraud_probability > 0.3 and amount_eur > 1500"),
    ("bad-terminal-rate", "review if terminal_fraud_rate_30d > 0.2 and amount_eur > 50"),
    ("compromised-terminal", "decline if terminal_settled_fraud_rate_7d > 0.3"),
    ("bad-merchant-rate", "review if merchant_fraud_rate_7d > 0.1 and card_merchant_new_30d == 1"),
    ("blocked-merchant", "decline if merchant_id in @bad_merchants"),
    ("blocked-terminal", "decline if terminal_id in @bad_terminals"),
    ("bad-device", "review if device_id in @bad_devices"),
    ("gambling-transfers", 'decline if mcc in ("7995", "6051", "4829") and amount_eur > 1000'),
    ("night-atm", 'review if mcc == "6011" and hour_of_day >= 1 and hour_of_day < 5 and amount_minor > 40000'),
    ("night-online", 'review if is_night == 1 and amount_eur > 1200 and channel == "ecom"'),
    ("card-testing", "decline if amount_minor == 0 and card_count_1h >= 4"),
    ("verification-burst", "review if amount_minor == 0 and card_seconds_since_prev < 30"),
    ("big-max-1h", "decline if card_amount_max_1h > 3000 and card_count_1h >= 3"),
    ("sum-24h", "review if card_amount_sum_24h > 10000"),
    ("sum-7d", "review if card_amount_sum_7d > 25000"),
    ("sum-30d-spike", "decline if card_amount_sum_30d > 80000 and card_amount_to_mean_30d > 5"),
    ("moto-amount", 'review if channel == "moto" and amount_eur > 700'),
    ("atm-count", 'review if channel == "atm" and card_count_24h >= 6'),
    ("sanctioned", 'decline if country in ("KP", "IR", "SY")'),
    ("foreign-currency", 'review if currency != "EUR" and amount_eur > 3000 and card_country_unusual == 1'),
    ("ratio-to-mean", "review if amount_eur / card_amount_mean_30d > 20 and amount_eur > 200"),
    ("rapid-contactless", 'review if card_seconds_since_prev < 5 and channel == "contactless"'),
    ("busy-bad-terminal", "decline if terminal_count_1d > 3000 and terminal_fraud_rate_7d > 0.05"),
    ("busy-merchant-amount", "review if merchant_count_1d > 5000 and amount_eur > 2500"),
    ("pos-without-location", 'review if latitude is missing and channel == "pos" and amount_eur > 4000'),
    ("weekend-night", "review if is_weekend == 1 and hour_of_day < 4 and amount_eur > 900"),
    ("count-7d", "decline if card_count_7d > 150"),
    ("mean-24h", "review if card_amount_mean_24h > 1500 and card_count_24h >= 3"),
    ("model-new-merchant", "decline if fraud_probability >= 0.85 and card_merchant_new_30d == 1 and amount_eur > 300"),
    ("settled-merchant-rate", "review if merchant_settled_fraud_rate_30d > 0.05 and amount_eur > 400"),
    ("trusted-small", "allow if merchant_id in @trusted_merchants and amount_eur < 50 priority 20"),
    ("risky-bin-amount", "review if card_id starts with @risky_bins and amount_eur > 200"),
    ("risky-country-velocity", "decline if country in @high_risk_countries and card_count_1h >= 3"),
    ("spree", "review if card_count_1h >= 3 and card_distinct_merchants_24h >= 5 and card_merchant_new_30d == 1"),
    ("settled-terminal-rate", "review if terminal_settled_fraud_rate_30d > 0.1 and card_count_24h > 5"),
    ("very-large", "decline if amount_eur > 9000"),
)  # fmt: skip


def example_lists(
    payments: Sequence[Payment], *, padding: int = 0, seed: int = 7
) -> dict[str, tuple[str, dict[str, float | None]]]:
    """name -> (kind, value -> expiry or None) for the lists :data:`RULES` name."""
    rng = random.Random(seed)
    cards = sorted({p.card_id for p in payments})
    merchants = sorted({p.merchant_id for p in payments})
    terminals = sorted({p.terminal_id for p in payments})
    devices = sorted({p.device_id for p in payments if p.device_id})
    blocked: dict[str, float | None] = {
        c: None for c in rng.sample(cards, max(1, len(cards) // 200))
    }
    blocked.update((f"x-{rng.getrandbits(64):016x}", None) for _ in range(padding))
    return {
        "blocked_cards": ("card", blocked),
        "vip_cards": ("card", {c: None for c in rng.sample(cards, max(1, len(cards) // 500))}),
        "risky_bins": ("bin", {c[:10]: None for c in rng.sample(cards, max(1, len(cards) // 300))}),
        "high_risk_countries": ("country", dict.fromkeys(["NG", "RU", "BR", "VN"])),
        "bad_merchants": ("merchant", {m: None for m in rng.sample(merchants, max(1, len(merchants) // 300))}),
        "trusted_merchants": ("merchant", {m: None for m in rng.sample(merchants, max(1, len(merchants) // 50))}),
        "bad_terminals": ("terminal", {t: None for t in rng.sample(terminals, max(1, len(terminals) // 300))}),
        "bad_devices": ("device", {d: None for d in rng.sample(devices, min(len(devices), 20))}),
    }  # fmt: skip
