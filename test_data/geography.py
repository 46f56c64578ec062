"""Where payments happen: the cities of the synthetic card network, their money and their clocks.

Every place is a city with a country (ISO 3166-1), a currency (ISO 4217), an IANA time zone and
coordinates. Cardholders live in the first block of cities (three in four in the euro area);
the last four only receive travellers and fraudsters. Local time comes from :mod:`zoneinfo`, so
an event time carries the offset its place had at that instant, summer time included:

>>> city = CITY_NAMES.index("Tokyo")
>>> offsets = utc_offsets(datetime(2026, 3, 1, tzinfo=UTC), hours=2)
>>> int(offsets[city, 0]) // 3600, str(CURRENCIES[city]), str(COUNTRIES[city])
(9, 'JPY', 'JP')
>>> round(float(haversine_km(48.857, 2.352, 51.507, -0.128)))
343
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from features.contract import minor_unit_digits

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class City(NamedTuple):
    name: str
    country: str
    currency: str
    time_zone: str
    latitude: float
    longitude: float
    residents: float  # share of cardholders living here
    visitors: float  # relative pull on travellers


_CITIES: tuple[City, ...] = (
    City("Berlin", "DE", "EUR", "Europe/Berlin", 52.520, 13.405, 0.09, 2.0),
    City("Munich", "DE", "EUR", "Europe/Berlin", 48.137, 11.575, 0.07, 1.5),
    City("Hamburg", "DE", "EUR", "Europe/Berlin", 53.551, 9.994, 0.06, 1.0),
    City("Paris", "FR", "EUR", "Europe/Paris", 48.857, 2.352, 0.12, 3.0),
    City("Lyon", "FR", "EUR", "Europe/Paris", 45.764, 4.836, 0.04, 1.0),
    City("Marseille", "FR", "EUR", "Europe/Paris", 43.296, 5.370, 0.03, 1.0),
    City("Madrid", "ES", "EUR", "Europe/Madrid", 40.417, -3.704, 0.06, 2.0),
    City("Barcelona", "ES", "EUR", "Europe/Madrid", 41.385, 2.173, 0.05, 3.0),
    City("Rome", "IT", "EUR", "Europe/Rome", 41.903, 12.496, 0.05, 3.0),
    City("Milan", "IT", "EUR", "Europe/Rome", 45.464, 9.190, 0.05, 1.5),
    City("Amsterdam", "NL", "EUR", "Europe/Amsterdam", 52.370, 4.895, 0.05, 2.0),
    City("Brussels", "BE", "EUR", "Europe/Brussels", 50.850, 4.352, 0.03, 1.0),
    City("Dublin", "IE", "EUR", "Europe/Dublin", 53.350, -6.260, 0.02, 1.0),
    City("Lisbon", "PT", "EUR", "Europe/Lisbon", 38.722, -9.139, 0.03, 2.0),
    City("Vienna", "AT", "EUR", "Europe/Vienna", 48.208, 16.373, 0.03, 1.5),
    City("London", "GB", "GBP", "Europe/London", 51.507, -0.128, 0.07, 3.0),
    City("Manchester", "GB", "GBP", "Europe/London", 53.480, -2.242, 0.02, 0.5),
    City("Zurich", "CH", "CHF", "Europe/Zurich", 47.377, 8.541, 0.02, 1.0),
    City("Geneva", "CH", "CHF", "Europe/Zurich", 46.204, 6.143, 0.01, 1.0),
    City("Stockholm", "SE", "SEK", "Europe/Stockholm", 59.329, 18.069, 0.02, 1.0),
    City("Warsaw", "PL", "PLN", "Europe/Warsaw", 52.230, 21.012, 0.02, 1.0),
    City("New York", "US", "USD", "America/New_York", 40.713, -74.006, 0.03, 2.0),
    City("Los Angeles", "US", "USD", "America/Los_Angeles", 34.052, -118.244, 0.015, 1.0),
    City("Tokyo", "JP", "JPY", "Asia/Tokyo", 35.676, 139.650, 0.015, 1.0),
    City("Dubai", "AE", "AED", "Asia/Dubai", 25.205, 55.271, 0.0, 1.5),
    City("Bangkok", "TH", "THB", "Asia/Bangkok", 13.756, 100.502, 0.0, 1.0),
    City("Istanbul", "TR", "TRY", "Europe/Istanbul", 41.008, 28.978, 0.0, 1.5),
    City("Sao Paulo", "BR", "BRL", "America/Sao_Paulo", -23.550, -46.633, 0.0, 0.5),
)

# Units of each currency per euro: rough mid-2020s rates, enough for plausible amounts.
_PER_EURO: dict[str, float] = {
    "EUR": 1.0,
    "GBP": 0.86,
    "CHF": 0.94,
    "SEK": 11.4,
    "PLN": 4.3,
    "USD": 1.08,
    "JPY": 162.0,
    "AED": 3.97,
    "THB": 38.0,
    "TRY": 37.0,
    "BRL": 5.9,
}

N_CITIES = len(_CITIES)
CITY_NAMES: tuple[str, ...] = tuple(c.name for c in _CITIES)
COUNTRIES: npt.NDArray[np.str_] = np.array([c.country for c in _CITIES])
CURRENCIES: npt.NDArray[np.str_] = np.array([c.currency for c in _CITIES])
LATITUDES: FloatArray = np.array([c.latitude for c in _CITIES])
LONGITUDES: FloatArray = np.array([c.longitude for c in _CITIES])
RESIDENTS: FloatArray = np.array([c.residents for c in _CITIES]) / sum(c.residents for c in _CITIES)
VISITORS: FloatArray = np.array([c.visitors for c in _CITIES]) / sum(c.visitors for c in _CITIES)
# Minor units of the local currency per euro (cents per euro, yen per euro, ...).
MINOR_PER_EURO: FloatArray = np.array(
    [_PER_EURO[c.currency] * 10 ** minor_unit_digits(c.currency) for c in _CITIES]
)
# Step an ATM pays out in, in minor units of the local currency (10 EUR, 1,000 JPY, ...).
ATM_STEP_MINOR: IntArray = np.array(
    [10 ** minor_unit_digits(c.currency) * (1000 if c.currency == "JPY" else 10) for c in _CITIES],
    dtype=np.int64,
)


def haversine_km(
    lat1: FloatArray | float,
    lon1: FloatArray | float,
    lat2: FloatArray | float,
    lon2: FloatArray | float,
) -> FloatArray:
    """Great-circle distance in kilometres; broadcasts over numpy arrays."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.subtract(lon2, lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * 6371.0 * np.arcsin(np.sqrt(a)), dtype=np.float64)


CITY_DISTANCE_KM: FloatArray = haversine_km(
    LATITUDES[:, None], LONGITUDES[:, None], LATITUDES[None, :], LONGITUDES[None, :]
)


def utc_offsets(first_hour: datetime, hours: int) -> IntArray:
    """UTC offset in seconds of every city for each whole UTC hour from ``first_hour``.

    Shape ``(N_CITIES, hours)``. Every zone used here changes offset on the hour, so the offset
    at any instant is the one of the hour it falls in.
    """
    if first_hour.tzinfo is None or first_hour.utcoffset() != timedelta(0):
        raise ValueError(f"first_hour must be an aware UTC datetime; got {first_hour!r}")
    instants = [first_hour + timedelta(hours=h) for h in range(hours)]
    table = np.empty((N_CITIES, hours), dtype=np.int64)
    for i, city in enumerate(_CITIES):
        zone = ZoneInfo(city.time_zone)
        # One call per hour and zone: a year of hours for 28 zones is ~0.25 M calls, well
        # under a second; a month is 20 k.
        table[i] = [int(t.astimezone(zone).utcoffset().total_seconds()) for t in instants]  # type: ignore[union-attr]
    return table


def local_midnights(first_day: date, days: int) -> IntArray:
    """POSIX seconds of local midnight in every city on each of ``days`` days from ``first_day``.

    Shape ``(N_CITIES, days)``; a day that starts or ends summer time is 23 or 25 hours long.
    """
    table = np.empty((N_CITIES, days), dtype=np.int64)
    for i, city in enumerate(_CITIES):
        zone = ZoneInfo(city.time_zone)
        table[i] = [
            int(
                datetime.combine(
                    first_day + timedelta(days=d), datetime.min.time(), zone
                ).timestamp()
            )
            for d in range(days)
        ]
    return table


def start_of_day_utc(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
