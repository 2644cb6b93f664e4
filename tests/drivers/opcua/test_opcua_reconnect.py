"""Server restarts and a server that is down at start: offline, backoff, back online with the
subscription re-created, and the task never dies."""

from __future__ import annotations

import logging

import pytest
from asyncua import ua
from opcua_helpers import device, running, values

from drivers.opcua.simulator import InverterSimulator, free_port
from gateway.model import DeviceStatus

D = ua.VariantType.Double


def statuses(ctx: object) -> list[DeviceStatus]:
    return [s for dev, s, _ in ctx.statuses if dev == "inv-1"]  # type: ignore[attr-defined]


async def test_server_restart_mid_run(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drivers.opcua")
    port = free_port()
    sim = InverterSimulator(port=port, period=3600)
    await sim.start()
    cfg = device(
        sim.url,
        [
            {
                "name": "fast",
                "interval": 0.05,
                "points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}],
            },
            {
                "name": "slow",
                "mode": "polling",
                "interval": 0.2,
                "points": [{"name": "soc", "path": "2:Inverter/2:SoC"}],
            },
        ],
    )
    restarted: InverterSimulator | None = None
    try:
        async with running(cfg) as (driver, ctx):
            await sim.set("Power", 5.0, D)
            await ctx.wait_for(lambda c: 5.0 in values(c, "power"), 10)
            assert statuses(ctx) == [DeviceStatus.ONLINE]

            await sim.stop()
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
            assert "no connection to %s" % sim.url in caplog.text
            assert "device marked offline, reconnecting in" in caplog.text
            reason = ctx.statuses[-1][2]
            assert reason  # the status carries why

            restarted = InverterSimulator(port=port, period=3600)
            await restarted.start()
            await restarted.set("Power", 42.0, D)
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.ONLINE, 15)
            # the subscription was re-created on the new server: changes flow again
            await ctx.wait_for(lambda c: 42.0 in values(c, "power"), 10)
            await restarted.set("Power", 43.0, D)
            await ctx.wait_for(lambda c: 43.0 in values(c, "power"), 10)
            n = len(values(ctx, "soc"))
            await ctx.wait_for(lambda c: len(values(c, "soc")) > n + 1, 10)  # polling resumed too
            assert statuses(ctx)[:3] == [
                DeviceStatus.ONLINE,
                DeviceStatus.OFFLINE,
                DeviceStatus.ONLINE,
            ]
            assert driver.sessions["inv-1"].connections == 2
        connected = [r for r in caplog.records if "connected to %s" % sim.url in r.getMessage()]
        assert len(connected) == 2
        offline = [r for r in caplog.records if "device marked offline" in r.getMessage()]
        assert offline and all(r.levelno == logging.WARNING for r in offline)
    finally:
        await sim.stop()
        if restarted is not None:
            await restarted.stop()


async def test_server_down_at_start_then_appears() -> None:
    port = free_port()
    cfg = device(
        f"opc.tcp://127.0.0.1:{port}",
        [
            {"points": [{"name": "power", "node": "ns=2;s=Inverter.Power"}]},
        ],
    )
    sim = InverterSimulator(port=port, period=3600)
    try:
        async with running(cfg) as (_, ctx):
            await ctx.wait_for(lambda c: c.status_of("inv-1") is DeviceStatus.OFFLINE, 10)
            assert "refused" in ctx.statuses[-1][2].lower()
            await sim.start()
            await sim.set("Power", 7.0, D)
            await ctx.wait_for(lambda c: 7.0 in values(c, "power"), 15)
            assert ctx.status_of("inv-1") is DeviceStatus.ONLINE
    finally:
        await sim.stop()
