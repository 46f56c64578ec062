"""Great-circle distance between two payments' coordinates (haversine, spherical Earth).

The error of the spherical model against the WGS-84 ellipsoid is under 0.5 %, far below what
matters for "could the cardholder have travelled this fast".

>>> round(haversine_km(48.8566, 2.3522, 51.5074, -0.1278))  # Paris to London
344
>>> haversine_km(10.0, 20.0, 10.0, 20.0)
0.0
"""

from __future__ import annotations

from math import asin, cos, radians, sin, sqrt

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance in km between two points given in decimal degrees."""
    phi1, phi2 = radians(lat1), radians(lat2)
    a = sin((phi2 - phi1) / 2) ** 2 + cos(phi1) * cos(phi2) * sin(radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(a)))
