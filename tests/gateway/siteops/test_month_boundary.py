"""Month ends in the site timezone (Pacific/Auckland, UTC+13 in summer, so the local month
ends half a day before the UTC one): the monthly report of January (31 -> 1) and of February
(28 -> 1) is generated at local midnight with the energy of exactly that month, and the
KPIs of the month, of the day before and the daily energy rollups split at the same
boundaries. A fake clock crosses each boundary."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from gateway.model import Sample
from tests.gateway.siteops.support import local_ms
from tests.gateway.siteops.test_reports import StepClock, commit, read, siteops
from tests.hooks.support import config
from tests.support.app import running_app

TZ = "Pacific/Auckland"
WH_PER_HOUR = 100.0


def site(tmp_path: Path) -> dict[str, Any]:
    cfg = config(tmp_path)
    cfg["gateway"] = {"timezone": TZ}
    cfg["siteops"] = {
        "history": {"energy": [{"devices": ["meter*"], "energy_point": "energy_wh"}]},
        "kpis": {"pv": ["meter*"]},
        "reports": {"definitions": [{"name": "monthly", "period": "monthly",
                                     "include": ["energy"], "html": False}]}}
    return cfg


def csv_energy(path: Path) -> dict[str, float]:
    rows = csv.DictReader(io.StringIO(read(path)))
    return {r["subject"]: float(r["value"]) for r in rows
            if r["section"] == "energy" and r["metric"] == "energy"}


async def test_monthly_report_and_rollups_across_month_ends(tmp_path: Path) -> None:
    first = local_ms(TZ, 2026, 1, 30)  # the counter starts here, at 0 Wh
    feb1, mar1 = local_ms(TZ, 2026, 2, 1), local_ms(TZ, 2026, 3, 1)
    until = mar1 + 1_800_000  # 00:30 on 1 March
    clock = StepClock(feb1 - 3_600_000)
    async with running_app(site(tmp_path), tmp_path, clock=clock) as app:
        comp = siteops(app)
        await commit(app, [Sample("meter1", "energy_wh", ts, WH_PER_HOUR * (ts - first) / 3.6e6)
                           for ts in range(first, until + 1, 600_000)])

        async def report_of(period: str) -> dict[str, Any] | None:
            found = [r for r in await comp.reports.list() if r["period"] == period]
            assert len(found) <= 1
            return found[0] if found else None

        # 31 -> 1: one second before local midnight nothing; one second after, January.
        clock.advance((feb1 - clock.now_ms()) / 1000 - 1)
        await comp.schedule_once()
        assert await report_of("2026-01") is None
        clock.advance(2)
        await comp.schedule_once()
        jan = await report_of("2026-01")
        assert jan is not None
        assert (jan["period_start_ts"], jan["period_end_ts"]) == (local_ms(TZ, 2026, 1, 1), feb1)
        assert csv_energy(Path(jan["files"][0])) == {"meter1": 4.8, "site": 4.8}  # 48 h
        # 28 -> 1 (2026 is no leap year).
        clock.advance((mar1 - clock.now_ms()) / 1000 - 1)
        await comp.schedule_once()
        assert await report_of("2026-02") is None
        clock.advance(2)
        await comp.schedule_once()
        await comp.schedule_once()
        feb = await report_of("2026-02")
        assert feb is not None and (feb["period_start_ts"], feb["period_end_ts"]) == (feb1, mar1)
        assert csv_energy(Path(feb["files"][0])) == {"meter1": 67.2, "site": 67.2}  # 28 x 24 h
        # The KPIs at 00:30 on 1 March: the month has 30 minutes, yesterday is 28 February.
        clock.advance(1799)
        month = await app.commands.execute("kpis", {"period": "month"})
        yesterday = await app.commands.execute("kpis", {"period": "yesterday"})
        assert month["result"]["kpis"]["site.pv_yield_kwh"] == 0.05
        assert yesterday["result"]["kpis"]["site.pv_yield_kwh"] == 2.4
        # Daily rollups of the energy: local days, the last two of February and the first
        # of March (30 minutes of it).
        assert comp.history is not None
        per_day = await comp.history.energy(local_ms(TZ, 2026, 2, 27), until, ["meter1"], "1d")
        got = {r["ts"]: round(r["wh"], 6) for r in per_day["meter1"]}
        assert got == {local_ms(TZ, 2026, 2, 27): 2400.0, local_ms(TZ, 2026, 2, 28): 2400.0,
                       mar1: 50.0}
