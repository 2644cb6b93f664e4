"""End to end with simulated charge points on a real websocket: boot, authorize, a charge
with meter values, the completed charging order; and a gateway restart mid-session."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.ocpp.config import OcppDeviceConfig
from drivers.testing import RecordingContext
from gateway.model import DeviceStatus, Quality, event_id
from tests.drivers.ocpp.conftest import charger, server

TAGS = [{"id_tag": "TAG-OK"}, {"id_tag": "TAG-BLOCKED", "status": "Blocked"},
        {"id_tag": "TAG-OLD", "expiry": "2001-01-01T00:00:00Z"}]


def site(**kw: Any) -> list[OcppDeviceConfig]:
    return [server(id_tags=TAGS, **kw), charger("cp-1")]


def events(ctx: RecordingContext, kind: str) -> list[Any]:
    return [e for e in ctx.events if e.type == kind]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_charge_session_ends_in_completed_order(make_gateway: Any, version: str) -> None:
    gw = await make_gateway(site())
    sim = gw.sim("cp-1", version)
    await sim.connect()
    assert await sim.boot() == "Accepted"
    await gw.ctx.wait_for(lambda c: c.status_of("cp-1") is DeviceStatus.ONLINE)
    assert await sim.authorize("TAG-OK") == "Accepted"
    assert await sim.authorize("TAG-BLOCKED") == "Blocked"
    assert await sim.authorize("TAG-OLD") == "Expired"
    assert await sim.authorize("NOPE") == "Invalid"

    sim.state[1].meter_wh = 1000.0
    tx = await sim.start(1, "TAG-OK")
    for _ in range(3):
        sim.advance(1, 600)  # 10 min at 11 kW = 1833.3 Wh each
        await sim.meter_values(1)
    await sim.stop(1, "EVDisconnected")

    created = events(gw.ctx, "charging_order_created")
    completed = events(gw.ctx, "charging_order_completed")
    assert len(created) == 1 and len(completed) == 1
    body = completed[0].body
    assert body["charger"] == "cp-1" and body["connector"] == 1
    assert body["transaction_id"] == tx and body["id_tag"] == "TAG-OK"
    assert body["meter_start_wh"] == 1000.0
    # 1.6 reports integer Wh in StopTransaction; 2.0.1 the register with one decimal
    assert body["energy_wh"] == pytest.approx(5500.0, abs=1.0)
    assert body["stop_reason"] == "EVDisconnected"
    assert body["order_id"] == created[0].body["order_id"]
    assert completed[0].id != created[0].id
    assert body["stopped_ts"] >= body["started_ts"]

    names = {s.point for s in gw.ctx.samples}
    assert {"Energy.Active.Import.Register", "Power.Active.Import", "Current.Import.L1",
            "Current.Import.L3"} <= names
    power = [s for s in gw.ctx.samples if s.point == "Power.Active.Import"]
    assert power[-1].value == 11000.0 and power[-1].quality is Quality.GOOD
    assert await gw.driver.hub.orders.open_orders() == []


async def test_transaction_ids_unique_across_restarts(make_gateway: Any) -> None:
    ctx = RecordingContext()
    gw = await make_gateway(site(), ctx)
    sim = gw.sim("cp-1")
    await sim.connect()
    await sim.boot()
    first = await sim.start(1, "TAG-OK")
    await sim.stop(1)
    await gw.stop()

    ctx2 = RecordingContext()
    ctx2._kv = ctx._kv  # the same persistent store after a restart
    gw2 = await make_gateway(site(), ctx2)
    sim2 = gw2.sim("cp-1")
    await sim2.connect()
    await sim2.boot()
    second = await sim2.start(1, "TAG-OK")
    assert int(second) > int(first)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_restart_mid_session_closes_order_with_queued_stop(
    make_gateway: Any, version: str
) -> None:
    ctx = RecordingContext()
    gw = await make_gateway(site(), ctx)
    sim = gw.sim("cp-1", version)
    await sim.connect()
    await sim.boot()
    sim.state[1].meter_wh = 500.0
    tx = await sim.start(1, "TAG-OK")
    sim.advance(1, 360)  # 1100 Wh
    await sim.meter_values(1)
    await gw.stop()  # gateway goes away mid-session; the charger's socket closes

    await ctx.wait_for(lambda c: c.status_of("cp-1") is DeviceStatus.OFFLINE)
    sim.advance(1, 360)
    await sim.stop(1, "Local")  # the charger queues it while the gateway is away
    assert sim.queue and not sim.online

    ctx2 = RecordingContext()
    ctx2._kv = ctx._kv
    gw2 = await make_gateway(site(), ctx2)
    assert [o.transaction_id for o in await gw2.driver.hub.orders.open_orders()] == [tx]
    sim.url = gw2.url
    await sim.connect()  # no new BootNotification: a reconnect, then the queued stop
    assert not sim.queue
    completed = events(ctx2, "charging_order_completed")
    assert len(completed) == 1
    assert completed[0].body["transaction_id"] == tx
    assert completed[0].body["energy_wh"] == pytest.approx(2200.0, abs=1.0)
    order_id = events(ctx, "charging_order_created")[0].body["order_id"]
    assert completed[0].body["order_id"] == order_id
    # stable id: a re-delivery after a crash carries the same id
    assert completed[0].id == event_id("charging_order_completed", order_id)
