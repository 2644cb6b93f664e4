"""Scheduled reports: a daily report at local midnight (Europe/Berlin, across the DST
night) with the right figures, parsed back from its CSV; the hook fires once with a file
that exists; a crash between writing the files and recording them still yields exactly one
report; retention deletes old files."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from pathlib import Path
from typing import Any

from gateway.clock import FakeClock
from gateway.model import Sample
from gateway.siteops import SiteOpsComponent
from gateway.siteops import reports as reports_mod
from tests.gateway.siteops.support import local_ms
from tests.hooks.support import calls, config, wait_for
from tests.support.app import running_app

TZ = "Europe/Berlin"


class StepClock(FakeClock):
    """Time moves only when the test says; sleeps are real (so the app's tasks idle)."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def exists(path: Path) -> bool:
    return path.is_file()


def read(path: Path) -> str:
    return path.read_text()


def siteops(app: Any) -> SiteOpsComponent:
    return next(c for c in app.components if isinstance(c, SiteOpsComponent))


def site(tmp_path: Path) -> dict[str, Any]:
    cfg = config(tmp_path)
    cfg["gateway"] = {"timezone": TZ}
    cfg["siteops"] = {
        "history": {"energy": [{"devices": ["meter*"], "energy_point": "energy_wh"}]},
        "reports": {"retention_days": 10, "definitions": [
            {"name": "daily", "period": "daily", "include": ["energy", "availability"]}]}}
    return cfg


async def commit(app: Any, samples: list[Sample]) -> None:
    comp = siteops(app)
    assert comp.history is not None
    target = comp.history.stats.folded_seq
    await app.pipeline.put(samples)
    await wait_for(lambda: comp.history is not None
                   and comp.history.stats.folded_seq > target
                   and not comp.history._pending)


async def test_a_daily_report_at_local_midnight_exactly_once(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    # 2026-03-29 in Berlin has 23 hours. The counter rises 100 Wh an hour from its local
    # midnight to the next: 2.3 kWh for that day.
    day, nxt = local_ms(TZ, 2026, 3, 29), local_ms(TZ, 2026, 3, 30)
    clock = StepClock(day - 60_000)
    async with running_app(site(tmp_path), tmp_path, clock=clock) as app:
        comp = siteops(app)
        await commit(app, [Sample("meter1", "energy_wh", ts, 5000 + 100 * (ts - day) / 3.6e6)
                           for ts in range(day - 3_600_000, nxt + 1, 600_000)])
        clock.advance((nxt - clock.now_ms()) / 1000 - 1)  # 23:59:59 on the 29th
        await comp.schedule_once()
        names = [r["period"] for r in await comp.reports.list()]
        assert "2026-03-29" not in names  # the day has not ended yet
        clock.advance(2)  # 00:00:01 on the 30th
        # A crash after the files were written but before they were recorded: the next
        # run writes them again and records them once.
        real = comp.reports.generate

        async def crash(*args: Any, **kwargs: Any) -> Any:
            files = [(tmp_path / "state" / "reports" / "daily-2026-03-29.csv", b"partial")]
            await asyncio.to_thread(reports_mod._write_all, files)
            raise OSError("killed")

        monkeypatch.setattr(comp.reports, "generate", crash)
        with contextlib.suppress(OSError):
            await comp.schedule_once()
        monkeypatch.setattr(comp.reports, "generate", real)
        await comp.schedule_once()
        await comp.schedule_once()
        mine = [r for r in await comp.reports.list() if r["period"] == "2026-03-29"]
        assert len(mine) == 1
        (kw,) = await wait_for(lambda: [c for c in calls(app, "on_report_generated")
                                        if c["report_task"].period == "2026-03-29"])
        path = Path(kw["file_path"])
        assert exists(path) and path.name == "daily-2026-03-29.csv"
        assert kw["report_task"].period_start_ts == day
        assert kw["report_task"].period_end_ts == nxt
        rows = list(csv.DictReader(io.StringIO(read(path))))
        energy = {r["subject"]: float(r["value"]) for r in rows if r["section"] == "energy"}
        assert energy == {"meter1": 2.3, "site": 2.3}
        html = read(path.with_suffix(".html"))
        assert "<svg" in html and "meter1" in html
        await asyncio.sleep(0.2)
        assert len([c for c in calls(app, "on_report_generated")
                    if c["report_task"].period == "2026-03-29"]) == 1
        # On demand: reports.run writes the same period again under its own id.
        again = await app.commands.execute("reports.run", {"name": "daily", "at": day + 1})
        assert again["ok"] and again["result"]["period"] == "2026-03-29"
        bad = await app.commands.execute("reports.run", {"name": "weekly"})
        assert bad["error"]["code"] == "unknown_report"
        # Retention: 10 days later the files are gone.
        clock.advance(11 * 86_400)
        await comp.reports.prune(clock.now_ms())
        assert not exists(path)
        assert [r for r in await comp.reports.list() if r["period"] == "2026-03-29"] == []
