"""Built-in site KPIs from the local history, for today, yesterday, this month or this
year (site timezone), merged with the plugins' ``calculate_custom_kpis``.

- ``site.energy_imported_kwh`` / ``site.energy_exported_kwh``: the grid meter's import and
  export counters (``siteops.kpis``), last value minus first value in the period (a counter
  reset inside the period is not corrected here).
- ``site.pv_yield_kwh``, ``site.charger_energy_kwh``: the energy history (15-minute energy
  per device) of the devices in ``kpis.pv`` / ``kpis.chargers``.
- ``site.self_consumption``: (PV - export) / PV; ``site.self_sufficiency``:
  (PV - export) / (PV - export + import); None without PV.
- ``site.peak_demand_w``: the highest 15-minute average of the grid meter's power.
- ``site.availability_pct``: per device, % of the period not offline, counted from when
  the gateway first knew its status (None if never).
- ``site.charging_sessions``: sessions completed in the period.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.rules.quotas import period_of

if TYPE_CHECKING:
    from gateway.siteops.component import SiteOpsComponent

PERIODS = ("today", "yesterday", "month", "year")


def period_start(now_ms: int, period: str, comp: SiteOpsComponent) -> int:
    if period == "today":
        return period_of(now_ms, "day", comp.tz).start_ms
    if period == "month":
        return period_of(now_ms, "month", comp.tz).start_ms
    local = datetime.fromtimestamp(now_ms / 1000, comp.tz)
    return int(local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
               .timestamp() * 1000)


async def _counter_span(comp: SiteOpsComponent, device: str, point: str, start: int,
                        end: int) -> float | None:
    assert comp.history is not None
    rows = await comp.history.series(device, point, start, end, "15m")
    if not rows:
        return None
    return max(float(rows[-1]["last"]) - float(rows[0]["min"]), 0.0)


async def builtin(comp: SiteOpsComponent, period: str) -> dict[str, Any]:
    now = comp.ctx.clock.now_ms()
    if period == "yesterday":  # the finished local day
        today = period_of(now, "day", comp.tz)
        day = period_of(today.start_ms - 1, "day", comp.tz)
        return await figures(comp, day.start_ms, day.end_ms)
    return await figures(comp, period_start(now, period, comp), now + 1)


async def figures(comp: SiteOpsComponent, start: int, end: int) -> dict[str, Any]:
    """The built-in KPIs over [start, end)."""
    cfg = comp.section.kpis
    out: dict[str, Any] = {}
    hist = comp.history
    if hist is None:
        return out
    await hist.flush()
    energy = await hist.energy_total(start, end)
    ids = [d.id for d in comp.ctx.site.devices]

    def total(patterns: list[str]) -> float:
        return sum(wh for d, wh in energy.items()
                   if any(fnmatch.fnmatchcase(d, p) for p in patterns)) / 1000

    pv = total(cfg.pv) if cfg.pv else None
    imported = exported = None
    if cfg.grid_meter:
        imp = await _counter_span(comp, cfg.grid_meter, cfg.import_point, start, end)
        exp = await _counter_span(comp, cfg.grid_meter, cfg.export_point, start, end)
        imported = imp / 1000 if imp is not None else None
        exported = exp / 1000 if exp is not None else None
        power = await hist.series(cfg.grid_meter, cfg.power_point, start, end, "15m")
        out["site.peak_demand_w"] = max((r["avg"] for r in power), default=None)
    out["site.energy_imported_kwh"] = imported
    out["site.energy_exported_kwh"] = exported
    out["site.pv_yield_kwh"] = pv
    used_pv = None if pv is None else max(pv - (exported or 0.0), 0.0)
    out["site.self_consumption"] = (used_pv / pv) if pv and used_pv is not None else None
    out["site.self_sufficiency"] = (
        used_pv / (used_pv + imported) if used_pv is not None and imported is not None
        and (used_pv + imported) > 0 else None)
    out["site.charger_energy_kwh"] = total(cfg.chargers) if cfg.chargers else None
    out["site.energy_by_device_kwh"] = {d: round(energy.get(d, 0.0) / 1000, 6) for d in ids
                                        if d in energy}
    avail = await comp.reports.availability(start, max(end - 1, start + 1))
    out["site.availability_pct"] = {row[0]: row[2] for row in avail}
    (sessions,) = await comp.ctx.store.query_one(
        "SELECT COUNT(*) FROM siteops_log_charging WHERE stopped_ts >= ? AND stopped_ts < ?",
        (start, end)) or (0,)
    out["site.charging_sessions"] = sessions
    return out


async def kpis(comp: SiteOpsComponent, period: str,
               values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Built-ins (``values``, default: those of ``period`` until now) merged with each
    provider's (the plugins'); a provider key that names a built-in is a conflict and the
    built-in wins."""
    if values is None:
        values = await builtin(comp, period)
    conflicts: dict[str, list[str]] = {}
    failed: list[str] = []
    for provider in comp.kpi_providers:
        got = await provider(period)
        for key, value in got.get("kpis", {}).items():
            if key in values:
                conflicts.setdefault(key, ["siteops"]).append("plugins")
                continue
            values[key] = value
        for key, names in got.get("conflicts", {}).items():
            conflicts.setdefault(key, []).extend(names)
        failed.extend(got.get("failed", []))
    return {"period": period, "kpis": values, "conflicts": conflicts, "failed": failed}
