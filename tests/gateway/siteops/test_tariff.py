"""The time-of-use tariff prices a charging session minute by minute in the site timezone,
and the report's charging section carries that cost."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.model import Event
from gateway.siteops.config import Tariff
from gateway.siteops.tariff import price_at, session_cost
from tests.gateway.siteops.support import local_ms
from tests.gateway.siteops.test_reports import StepClock, read, siteops
from tests.hooks.support import config
from tests.support.app import running_app

TZ = "Europe/Berlin"
TARIFF = Tariff.model_validate({
    "default_price_per_kwh": 0.30,
    "periods": [{"name": "peak", "start": "17:00", "end": "21:00", "price_per_kwh": 0.50},
                {"name": "night", "start": "22:00", "end": "06:00", "price_per_kwh": 0.10,
                 "days": ["sat", "sun"]}]})


def test_price_by_local_time_and_weekday() -> None:
    tz = ZoneInfo(TZ)
    assert price_at(TARIFF, local_ms(TZ, 2026, 6, 3, 17, 30), tz) == ("peak", 0.50)
    assert price_at(TARIFF, local_ms(TZ, 2026, 6, 3, 23), tz) == ("default", 0.30)  # Wed
    assert price_at(TARIFF, local_ms(TZ, 2026, 6, 6, 23), tz) == ("night", 0.10)  # Sat
    assert price_at(TARIFF, local_ms(TZ, 2026, 6, 7, 5, 59), tz) == ("night", 0.10)


def test_a_session_across_a_period_boundary_is_priced_in_proportion() -> None:
    # 16:00-18:00 local, 20 kWh evenly: 10 kWh at 0.30 and 10 kWh at 0.50.
    start, end = local_ms(TZ, 2026, 6, 3, 16), local_ms(TZ, 2026, 6, 3, 18)
    assert session_cost(TARIFF, 20_000, start, end, ZoneInfo(TZ)) == pytest.approx(8.0)


async def test_the_report_prices_a_charging_session(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["gateway"] = {"timezone": TZ}
    cfg["siteops"] = {"tariff": TARIFF.model_dump(mode="json"), "reports": {"definitions": [
        {"name": "daily", "period": "daily", "include": ["charging"], "html": False}]}}
    start, end = local_ms(TZ, 2026, 6, 3, 16), local_ms(TZ, 2026, 6, 3, 18)
    body = {"order_id": "o1", "charger": "cp-1", "started_ts": start, "stopped_ts": end,
            "energy_wh": 20_000.0}
    async with running_app(cfg, tmp_path, clock=StepClock(end + 60_000)) as app:
        comp = siteops(app)
        await app.store.add_events([Event("charging_order_completed", body, id="c1")])
        await comp.follow_once()  # what the siteops-events task does
        reply = await app.commands.execute("reports.run", {"name": "daily", "at": start})
        assert reply["ok"], reply
        rows = list(csv.DictReader(io.StringIO(read(Path(reply["result"]["file_path"])))))
    got = {r["metric"]: (float(r["value"]), r["unit"]) for r in rows}
    assert got == {"session o1 energy": (20.0, "kWh"), "session o1 duration": (7200.0, "s"),
                   "session o1 cost": (8.0, "currency")}
