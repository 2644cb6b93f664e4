"""The time-of-use tariff: the price per kWh at a moment (site timezone), the split of a
charging session's energy over the tariff periods it spans (its energy spread evenly over
its duration, minute by minute), and the pricing of ``charging_order_completed``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from gateway import events
from gateway.model import Event
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


@dataclass(frozen=True)
class Priced:
    """Energy (Wh) and cost per tariff period, and the total cost (rounded to 4 places)."""

    energy_by_period: dict[str, float]
    cost_by_period: dict[str, float]
    cost: float


def split(tariff: Tariff, energy_wh: float, start_ms: int, end_ms: int,
          tz: ZoneInfo) -> Priced:
    """``energy_wh`` spread evenly over [start, end), priced minute by minute."""
    wh: dict[str, float] = {}
    cost: dict[str, float] = {}

    def add(name: str, price: float, part_wh: float) -> None:
        wh[name] = wh.get(name, 0.0) + part_wh
        cost[name] = cost.get(name, 0.0) + part_wh / 1000 * price

    if end_ms <= start_ms:
        add(*price_at(tariff, start_ms, tz), energy_wh)
    else:
        t = start_ms
        while t < end_ms:
            step = min(STEP_MS, end_ms - t)
            add(*price_at(tariff, t, tz), energy_wh * step / (end_ms - start_ms))
            t += step
    return Priced({k: round(v, 3) for k, v in wh.items()},
                  {k: round(v, 4) for k, v in cost.items()}, round(sum(cost.values()), 4))


def session_cost(tariff: Tariff, energy_wh: float, start_ms: int, end_ms: int,
                 tz: ZoneInfo) -> float:
    """The session's energy spread evenly over [start, end), priced minute by minute."""
    return split(tariff, energy_wh, start_ms, end_ms, tz).cost


def price_order(tariff: Tariff, tz: ZoneInfo, ev: Event) -> Event:
    """``charging_order_completed`` with ``cost``, ``currency`` and the per-period split,
    when it has an energy reading and no cost yet; any other event unchanged. Runs on the
    way to the outbox (an event enricher), so the hooks, the cloud and the reports all see
    the same cost."""
    b = ev.body
    if (ev.type != events.CHARGING_ORDER_COMPLETED or b.get("cost") is not None
            or b.get("energy_wh") is None):
        return ev
    start = b.get("started_ts") or ev.ts_ms
    stop = b.get("stopped_ts") or ev.ts_ms
    priced = split(tariff, float(b["energy_wh"]), int(start), int(stop), tz)
    body = {**b, "cost": priced.cost, "currency": tariff.currency,
            "energy_by_period": priced.energy_by_period,
            "cost_by_period": priced.cost_by_period}
    return dataclasses.replace(ev, body=body)
