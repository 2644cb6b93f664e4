"""Built-in KPIs from the local history, merged with a plugin's custom KPIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.model import Sample
from tests.gateway.siteops.support import local_ms
from tests.gateway.siteops.test_reports import StepClock, commit
from tests.hooks.support import config
from tests.support.app import running_app

TZ = "Europe/Berlin"


async def test_site_kpis_for_today(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["gateway"] = {"timezone": TZ}
    cfg["siteops"] = {
        "history": {"energy": [{"devices": ["pv*"], "energy_point": "energy_wh"}]},
        "kpis": {"grid_meter": "grid", "pv": ["pv*"]}}
    t0 = local_ms(TZ, 2026, 6, 1, 10)
    clock = StepClock(t0 + 3_600_000)
    samples = []
    for i in range(0, 61):  # one reading a minute, 10:00..11:00 local
        ts = t0 + i * 60_000
        samples += [Sample("grid", "energy_import_wh", ts, 1000 + 2000 * i / 60),
                    Sample("grid", "energy_export_wh", ts, 500 * i / 60),
                    Sample("grid", "power_w", ts, 1000.0 if i < 15 else 3000.0),
                    Sample("pv1", "energy_wh", ts, 4000 * i / 60)]
    # Yesterday's readings do not count for today.
    samples.append(Sample("pv1", "energy_wh", t0 - 86_400_000, 0.0))
    async with running_app(cfg, tmp_path, clock=clock) as app:
        await commit(app, sorted(samples, key=lambda s: s.ts_ms))
        reply = await app.commands.execute("kpis", {"period": "today"})
        assert reply["ok"], reply
        k = reply["result"]["kpis"]
        assert k["site.energy_imported_kwh"] == pytest.approx(2.0)
        assert k["site.energy_exported_kwh"] == pytest.approx(0.5)
        assert k["site.pv_yield_kwh"] == pytest.approx(4.0)
        assert k["site.self_consumption"] == pytest.approx(3.5 / 4)
        assert k["site.self_sufficiency"] == pytest.approx(3.5 / 5.5)
        assert k["site.peak_demand_w"] == pytest.approx(3000.0)
        assert k["recorder_period"] == "today"  # the plugin's, merged
        assert set(k["site.availability_pct"]) == {"m1"}


async def test_availability_counts_from_when_the_status_was_first_known(tmp_path: Path) -> None:
    """A device first seen at noon, offline 13:00-14:00, online since: 5 of 6 observed
    hours by 18:00 (not 5 of 18 since midnight); a device never seen has no figure."""
    from tests.gateway.siteops.test_reports import siteops

    cfg = config(tmp_path)
    cfg["gateway"] = {"timezone": TZ}
    cfg["devices"] = [*cfg["devices"], {**cfg["devices"][0], "id": "m2", "enabled": False}]
    day = local_ms(TZ, 2026, 6, 1, 0)
    hour = 3_600_000
    async with running_app(cfg, tmp_path, clock=StepClock(day + 18 * hour)) as app:
        async with app.store.transaction() as tx:
            await tx.executemany("INSERT INTO siteops_log_status VALUES (?, ?, ?)", [
                ("m1", day - 2 * hour, "offline"), ("m1", day - hour, "online"),  # yesterday
                ("m1", day + 13 * hour, "offline"), ("m1", day + 14 * hour, "online")])
        rows = await siteops(app).reports.availability(day, day + 18 * hour)
        assert {r[0]: r[2] for r in rows} == {"m1": round(100 * 17 / 18, 3), "m2": None}
        async with app.store.transaction() as tx:
            await tx.execute("DELETE FROM siteops_log_status WHERE ts < ?", (day,))
            await tx.execute("INSERT INTO siteops_log_status VALUES ('m1', ?, 'online')",
                             (day + 12 * hour,))
        rows = await siteops(app).reports.availability(day, day + 18 * hour)
        assert {r[0]: r[2] for r in rows} == {"m1": round(100 * 5 / 6, 3), "m2": None}
