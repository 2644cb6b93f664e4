"""The time-of-use tariff: the price per kWh at a moment (site timezone), and the cost of a
charging session, its energy spread evenly over its duration."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from gateway.siteops.config import Tariff

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STEP_MS = 60_000


def _inside(t: time, start: time, end: time) -> bool:
    if start < end:
        return start <= t < end
    return t >= start or t < end  # across midnight; 00:00-00:00 is the whole day


def price_at(tariff: Tariff, ts_ms: int, tz: ZoneInfo) -> tuple[str, float]:
    """(period name, price per kWh) at ``ts_ms``; the first matching period wins."""
    local = datetime.fromtimestamp(ts_ms / 1000, tz)
    day, t = _DAYS[local.weekday()], local.time()
    for p in tariff.periods:
        if day in p.days and _inside(t, p.start, p.end):
            return p.name, p.price_per_kwh
    return "default", tariff.default_price_per_kwh


def session_cost(tariff: Tariff, energy_wh: float, start_ms: int, end_ms: int,
                 tz: ZoneInfo) -> float:
    """The session's energy spread evenly over [start, end), priced minute by minute."""
    if end_ms <= start_ms:
        return round(energy_wh / 1000 * price_at(tariff, start_ms, tz)[1], 4)
    total, t = 0.0, start_ms
    while t < end_ms:
        step = min(STEP_MS, end_ms - t)
        total += energy_wh * step / (end_ms - start_ms) / 1000 * price_at(tariff, t, tz)[1]
        t += step
    return round(total, 4)
