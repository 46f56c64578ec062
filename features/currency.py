"""Static reference rates to put every amount in one currency (EUR) before it enters a window.

The rates are approximate mid-market rates (2025), written down once and never fetched: units of
each currency per 1 EUR. They exist so that a window can add a yen payment to a dollar payment
and a model sees amounts on one scale; they are *not* for moving money. Being a constant table
keeps the features pure and reproducible: training and the live flow convert identically, and a
replay a year later gives the same values. Amounts in windows are whole euro cents (rounded half
to even), so sums are exact integers whatever the order of additions.

Every currency the contract accepts (``features.contract.CURRENCIES``) has a rate here, and a test
keeps it so. A code missing from the table (e.g. after a pycountry upgrade adds one) is converted
at 1:1 rather than failing the payment: payments are always scored.

>>> eur_cents(1250, "EUR")
1250
>>> eur_cents(10_000, "JPY")  # 10,000 yen at 160 JPY per EUR
6250
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from features.contract import minor_unit_digits

# Units of currency per 1 EUR, approximate (2025). Pegs and fixed parities are exact.
EUR_REFERENCE_RATES: Mapping[str, float] = MappingProxyType(
    {
        "AED": 4.04, "AFN": 77.0, "ALL": 98.0, "AMD": 429.0, "AOA": 1000.0, "ARS": 1300.0,
        "AUD": 1.67, "AWG": 1.97, "AZN": 1.87, "BAM": 1.95583, "BBD": 2.2, "BDT": 132.0,
        "BHD": 0.414, "BIF": 3190.0, "BMD": 1.1, "BND": 1.47, "BOB": 7.6, "BRL": 6.05,
        "BSD": 1.1, "BTN": 92.0, "BWP": 14.9, "BYN": 3.6, "BZD": 2.2, "CAD": 1.51,
        "CDF": 3135.0, "CHF": 0.94, "CLP": 1045.0, "CNY": 7.9, "COP": 4500.0, "CRC": 560.0,
        "CUP": 26.4, "CVE": 110.265, "CZK": 25.0, "DJF": 195.0, "DKK": 7.46, "DOP": 66.0,
        "DZD": 147.0, "EGP": 54.0, "ERN": 16.5, "ETB": 140.0, "EUR": 1.0, "FJD": 2.48,
        "FKP": 0.85, "GBP": 0.85, "GEL": 2.97, "GHS": 15.0, "GIP": 0.85, "GMD": 77.0,
        "GNF": 9460.0, "GTQ": 8.5, "GYD": 230.0, "HKD": 8.58, "HNL": 27.5, "HTG": 145.0,
        "HUF": 400.0, "IDR": 17600.0, "ILS": 4.07, "INR": 92.0, "IQD": 1441.0, "IRR": 46200.0,
        "ISK": 150.0, "JMD": 173.0, "JOD": 0.78, "JPY": 160.0, "KES": 142.0, "KGS": 96.0,
        "KHR": 4455.0, "KMF": 491.96775, "KPW": 990.0, "KRW": 1450.0, "KWD": 0.338,
        "KYD": 0.917, "KZT": 560.0, "LAK": 24000.0, "LBP": 98450.0, "LKR": 330.0, "LRD": 209.0,
        "LSL": 20.0, "LYD": 5.9, "MAD": 10.8, "MDL": 19.5, "MGA": 4950.0, "MKD": 61.5,
        "MMK": 2310.0, "MNT": 3740.0, "MOP": 8.85, "MRU": 43.7, "MUR": 50.6, "MVR": 16.9,
        "MWK": 1908.0, "MXN": 20.5, "MYR": 4.84, "MZN": 70.3, "NAD": 20.0, "NGN": 1705.0,
        "NIO": 40.3, "NOK": 11.7, "NPR": 148.0, "NZD": 1.8, "OMR": 0.423, "PAB": 1.1,
        "PEN": 4.1, "PGK": 4.5, "PHP": 63.0, "PKR": 308.0, "PLN": 4.3, "PYG": 8580.0,
        "QAR": 4.0, "RON": 5.0, "RSD": 117.0, "RUB": 95.0, "RWF": 1540.0, "SAR": 4.125,
        "SBD": 9.2, "SCR": 15.4, "SDG": 660.0, "SEK": 11.3, "SGD": 1.47, "SHP": 0.85,
        "SLE": 25.0, "SOS": 628.0, "SRD": 38.5, "SSP": 5000.0, "STN": 24.5, "SVC": 9.6,
        "SYP": 14300.0, "SZL": 20.0, "THB": 38.5, "TJS": 12.0, "TMT": 3.85, "TND": 3.4,
        "TOP": 2.6, "TRY": 42.0, "TTD": 7.46, "TWD": 35.0, "TZS": 2970.0, "UAH": 45.6,
        "UGX": 4070.0, "USD": 1.1, "UYU": 44.0, "UZS": 14000.0, "VES": 50.0, "VND": 27500.0,
        "VUV": 131.0, "WST": 3.0, "XAF": 655.957, "XCD": 2.97, "XCG": 1.97, "XOF": 655.957,
        "XPF": 119.332, "YER": 275.0, "ZAR": 20.3, "ZMW": 29.7, "ZWG": 29.7,
    }
)  # fmt: skip

# Euro cents per minor unit of each currency, computed once.
_CENTS_PER_MINOR: dict[str, float] = {
    code: 100.0 / (rate * 10 ** minor_unit_digits(code))
    for code, rate in EUR_REFERENCE_RATES.items()
}


def eur_cents(amount_minor: int, currency: str) -> int:
    """``amount_minor`` of ``currency`` in whole euro cents at the reference rate (see module).

    An unknown currency converts at 1 EUR per major unit, with the standard two decimals.
    """
    factor = _CENTS_PER_MINOR.get(currency)
    if factor is None:
        return amount_minor
    return round(amount_minor * factor)
