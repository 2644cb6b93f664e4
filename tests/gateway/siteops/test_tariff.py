"""The time-of-use tariff prices a charging session minute by minute in the site timezone,
and the report's charging section carries that cost."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.ocpp import simulator
from drivers.ocpp.security import hash_password
from drivers.ocpp.simulator import SimCharger
from gateway.model import Event
from gateway.siteops.config import Tariff
from gateway.siteops.tariff import price_at, session_cost, split
from tests.gateway.siteops.support import local_ms
from tests.gateway.siteops.test_reports import StepClock, read, siteops
from tests.hooks.support import calls, config, wait_for
from tests.support.app import running_app
from tests.support.mosquitto import free_port

PASSWORD = "correct-horse-battery-staple"

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
                   "session o1 cost": (8.0, "EUR"),
                   "session o1 energy default": (10.0, "kWh"),
                   "session o1 cost default": (3.0, "EUR"),
                   "session o1 energy peak": (10.0, "kWh"),
                   "session o1 cost peak": (5.0, "EUR")}


def test_a_session_is_split_per_tariff_period() -> None:
    start, end = local_ms(TZ, 2026, 6, 3, 16), local_ms(TZ, 2026, 6, 3, 18)
    priced = split(TARIFF, 20_000, start, end, ZoneInfo(TZ))
    assert priced.energy_by_period == {"default": 10_000.0, "peak": 10_000.0}
    assert priced.cost_by_period == {"default": pytest.approx(3.0), "peak": pytest.approx(5.0)}
    assert priced.cost == pytest.approx(8.0)


async def test_a_real_ocpp_session_across_periods_carries_its_cost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1.6 charge point on a real websocket charges 16:00-18:00 local (its own
    timestamps: the simulator's clock is set): the completed order the plugin sees carries
    the cost split over the default and peak periods, and the daily report shows it."""
    port = free_port()
    cfg = config(tmp_path)
    cfg["gateway"] = {"timezone": TZ}
    cfg["devices"] = [
        {"id": "csms", "type": "ocpp", "role": "server",
         "server": {"host": "127.0.0.1", "port": port, "id_tags": [{"id_tag": "TAG-1"}]}},
        {"id": "cp-1", "type": "ocpp", "password_hash": hash_password(PASSWORD)}]
    cfg["siteops"] = {"tariff": TARIFF.model_dump(mode="json"), "reports": {"definitions": [
        {"name": "daily", "period": "daily", "include": ["charging"], "html": False}]}}
    start, end = local_ms(TZ, 2026, 6, 3, 16), local_ms(TZ, 2026, 6, 3, 18)
    sim_now = [start]
    monkeypatch.setattr(simulator, "now_ms", lambda: sim_now[0])
    async with running_app(cfg, tmp_path) as app:
        sim = SimCharger("cp-1", "1.6", f"ws://127.0.0.1:{port}/ocpp", password=PASSWORD,
                         power_w=11_000)

        async def connected() -> bool:
            try:
                await sim.connect()
            except OSError:  # the driver's server is not listening yet
                return False
            return True

        await wait_for(connected, what="the OCPP server to accept the charge point")
        try:
            assert await sim.boot() == "Accepted"
            await sim.start(1, "TAG-1")
            sim.advance(1, 7200)  # 22 kWh
            sim_now[0] = end
            await sim.stop(1)
            done = await wait_for(lambda: calls(app, "on_charging_order_completed"))
        finally:
            await sim.disconnect()
        order = done[0]["order"]
        assert (order.energy_wh, order.currency) == (22_000.0, "EUR")
        assert dict(order.energy_by_period) == {"default": 11_000.0, "peak": 11_000.0}
        assert dict(order.cost_by_period) == {"default": pytest.approx(3.3),
                                              "peak": pytest.approx(5.5)}
        assert order.cost == pytest.approx(8.8)
        await wait_for(lambda: app.store.query_one(
            "SELECT 1 FROM siteops_log_charging WHERE order_id = ?", (order.order_id,)),
            what="the siteops log of the order")
        reply = await app.commands.execute("reports.run", {"name": "daily", "at": start})
        assert reply["ok"], reply
        rows = list(csv.DictReader(io.StringIO(read(Path(reply["result"]["file_path"])))))
    oid = order.order_id
    got = {r["metric"]: (float(r["value"]), r["unit"]) for r in rows}
    assert got == {f"session {oid} energy": (22.0, "kWh"),
                   f"session {oid} duration": (7200.0, "s"),
                   f"session {oid} cost": (8.8, "EUR"),
                   f"session {oid} energy default": (11.0, "kWh"),
                   f"session {oid} cost default": (3.3, "EUR"),
                   f"session {oid} energy peak": (11.0, "kWh"),
                   f"session {oid} cost peak": (5.5, "EUR")}

