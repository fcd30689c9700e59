"""Small statistics helpers: nearest-rank percentiles, no numpy."""

from __future__ import annotations

import math


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def pcts(values: list[float], ps: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    return {f"p{int(p)}": percentile(values, p) for p in ps}


def ms(seconds: float) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    return f"{seconds * 1000:.1f}"


def ms3(seconds: float) -> str:
    """Milliseconds to the microsecond: CPU per frame is a fraction of a millisecond."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    return f"{seconds * 1000:.3f}"


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"
