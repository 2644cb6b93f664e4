"""`simulate: true`: the driver runs its own simulator, as the demo site does."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from drivers.testing import RecordingContext
from gateway.model import DeviceStatus, Quality


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_simulated_meter_and_sunspec_inverter(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    cfgs = [ModbusDeviceConfig.model_validate(d) for d in [
        {"id": "demo-meter", "host": "127.0.0.1", "port": port, "unit": 1,
         "profile": "eastron-sdm630", "simulate": True, "interval": 0.2},
        {"id": "demo-inverter", "host": "127.0.0.1", "port": port, "unit": 2,
         "profile": "sunspec", "simulate": True, "interval": 0.2},
    ]]
    ctx = RecordingContext()
    drv = ModbusDriver(cfgs, ctx)
    names = [n for n, _ in drv.tasks()]
    assert names == [f"modbus-sim[127.0.0.1:{port}]", f"modbus[tcp://127.0.0.1:{port}]"]
    tasks = [asyncio.create_task(f()) for _n, f in drv.tasks()]
    try:
        await ctx.wait_for(lambda c: c.status_of("demo-meter") is DeviceStatus.ONLINE
                           and c.status_of("demo-inverter") is DeviceStatus.ONLINE, 5)
        await ctx.wait_for(lambda c: any(s.point == "103.W" for s in c.samples), 5)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await drv.close()
    assert all(s.quality is Quality.GOOD for s in ctx.samples)
    watts = [s.value for s in ctx.samples if s.point == "103.W"]
    assert all(2000 < float(w) < 6000 for w in watts)  # type: ignore[arg-type]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and r.name.startswith("drivers.modbus")]
